"""Inference input that must be refused with one clear line, not turned into silent garbage or a traceback: mels
of another convention, non-finite audio and weights, zero counts, files that are not mels, bad devices, seeds and
keywords, Ctrl-C during start-up, memory bounded by ``max_batch``, and unreadable files in ``eval``. Every refusal
is one ``AudiodiffError`` line; the CLI prints it as ``error: ...`` and exits 1 (click's range errors exit 2)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.io import load_audio
from audiodiff.audio.mel import MelSpectrogram, mel_config
from audiodiff.audio.mel_range import check_mel_range, mel_range
from audiodiff.cli import main
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.errors import AudiodiffError
from audiodiff.eval import schedule_search as ss
from audiodiff.eval.copysynth import evaluate
from audiodiff.factory import build_backbone
from audiodiff.melgen import MelGenerator
from audiodiff.training import distributed
from audiodiff.vocoder import Vocoder

from conftest import REPO, SR, harmonic, peak_rss_env, tiny_vocoder, write_wav

HIFIGAN, DIFFWAVE = MelSpectrogram(mel_config("hifigan")), MelSpectrogram(mel_config("diffwave"))
SKIP = "to vocode it anyway pass check_mel_range=False (synth: --no-mel-check)"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``audiodiff ARGS`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def assert_one_error_line(code: int, err: str, *fragments: str) -> str:
    assert code == 1, (code, err)
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.fixture(scope="module")
def speech(demo_files) -> torch.Tensor:
    return torch.from_numpy(load_audio(demo_files[0], SR)[0])


@pytest.fixture(scope="module")
def voc() -> Vocoder:
    return tiny_vocoder()


# --- 7. mels of another convention ------------------------------------------------------------------------------
def test_mel_range_bounds_come_from_the_front_end():
    """The floor is the clamp, the ceiling a bound that no audio in [-1, 1] exceeds: checked against full-scale
    sines over the whole band, +-1 noise, a chirp and a click; the loudest, a sine, comes within 0.75 of it."""
    rng = mel_range(HIFIGAN)
    assert rng.floor == math.log(1e-5) and rng.ceiling == pytest.approx(2.966, abs=1e-3)
    assert rng.noise == pytest.approx(-0.158, abs=1e-3)
    t = torch.arange(4 * 1024) / SR
    sines = torch.stack([torch.sin(2 * math.pi * f * t + p) for f in torch.linspace(20, 11000, 400) for p in (0, 1)])
    noise = torch.randint(0, 2, (4, SR), generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    chirp = torch.sin(2 * math.pi * (20 + 4000 * t) * t)
    click = torch.zeros(SR).index_fill_(0, torch.arange(0, SR, 512), 1.0)
    loudest = max(float(HIFIGAN(x).max()) for x in (sines, noise, chirp, click))
    assert rng.ceiling - 0.75 < loudest <= rng.ceiling
    assert float(HIFIGAN(torch.zeros(SR)).min()) == pytest.approx(rng.floor)  # digital silence sits on the floor
    assert mel_range(DIFFWAVE).floor == 0 and mel_range(DIFFWAVE).ceiling == 1


def test_real_mels_of_the_model_convention_pass(demo_files):
    """Every demo file as recorded, at full scale, 60 dB quieter, clipped, padded with digital silence; silence
    alone; +-1 noise; and the same through the diffwave preset: nothing is refused."""
    ranges = {id(HIFIGAN): mel_range(HIFIGAN), id(DIFFWAVE): mel_range(DIFFWAVE)}
    silence = torch.zeros(SR)
    noise = torch.randint(0, 2, (SR,), generator=torch.Generator().manual_seed(1)).float() * 2 - 1
    for path in demo_files:
        x = torch.from_numpy(load_audio(path, SR)[0])
        for audio in (x, x / x.abs().max(), x * 1e-3, (x * 30).clamp(-1, 1), torch.cat([silence, x, silence])):
            for fn in (HIFIGAN, DIFFWAVE):
                check_mel_range(fn(audio), ranges[id(fn)])
    for fn in (HIFIGAN, DIFFWAVE):
        check_mel_range(fn(silence), ranges[id(fn)])
        check_mel_range(fn(noise), ranges[id(fn)])


OTHER_PRESETS = ("espnet", "coqui", "nemo")  # log10 with statistics-free floor, normalised dB, ln with added guard


def test_every_presets_mels_pass_their_own_range_and_the_others_do_not(demo_files):
    """A model trained on another front end accepts that front end's mels of real speech, silence and +-1 noise,
    and refuses hifigan mels where their values cannot be its own (ESPnet's and Coqui's), in one line naming the
    conversion."""
    x = torch.from_numpy(load_audio(demo_files[0], SR)[0])
    noise = torch.randint(0, 2, (SR,), generator=torch.Generator().manual_seed(1)).float() * 2 - 1
    for name in OTHER_PRESETS:
        fn = MelSpectrogram.from_preset(name, sample_rate=SR)
        rng = mel_range(fn)
        for audio in (x, x * 1e-3, (x * 30).clamp(-1, 1), torch.zeros(SR), noise):
            check_mel_range(fn(audio), rng)
    for name in ("espnet", "coqui"):
        with pytest.raises(AudiodiffError, match=r"below what silence gives.*--mel-preset"):
            check_mel_range(HIFIGAN(x), mel_range(MelSpectrogram.from_preset(name, sample_rate=SR)))


def test_vocoder_accepts_silence_and_speech(voc, speech):
    for mel in (HIFIGAN(torch.zeros(4096)), HIFIGAN(speech[:8192]), torch.full((80, 6), -5.0)):
        assert np.isfinite(voc(mel.numpy(), steps=1, seed=0)).all()


def _db(mel):
    return 20 * torch.log10(mel.exp())


WRONG_MELS = {  # name: (mel from the demo file's audio, likely convention named in the message)
    "dB": (lambda a: _db(HIFIGAN(a)), "mel values reach -100, below the floor ln(1e-5) = -11.51: it looks like a dB "
                                      "mel"),
    "dB re max": (lambda a: (_db(HIFIGAN(a)) - _db(HIFIGAN(a)).max()).clamp(min=-80), "it looks like a dB mel"),
    "diffwave [0, 1]": (lambda a: DIFFWAVE(a)[:80], "no band ever near silence: it looks like a [0, 1] mel (the "
                                                    "diffwave preset)"),
    "log10": (lambda a: HIFIGAN(a) / math.log(10), "mel values are clamped at -5 (26% of them), not at the floor "
                                                   "ln(1e-5) = -11.51: it looks like a log10 mel floored at 1e-05"),
    "linear": (lambda a: HIFIGAN(a).exp(), "it looks like a linear magnitude mel"),
    "all +20": (lambda a: torch.full((80, 40), 20.0), "mel values are all at least 20 (up to 20), no band ever near "
                                                      "silence: it looks like a linear magnitude mel"),
    "all 1e6": (lambda a: torch.full((80, 40), 1e6), "it looks like a linear magnitude mel"),
    "all -100": (lambda a: torch.full((80, 40), -100.0), "mel values reach -100, below the floor ln(1e-5) = -11.51: "
                                                         "it looks like a dB mel"),
}


@pytest.mark.parametrize("case", sorted(WRONG_MELS))
def test_vocoder_refuses_a_mel_of_another_convention(voc, speech, case):
    make, named = WRONG_MELS[case]
    mel = make(torch.cat([torch.zeros(8192), speech[:SR]])).float()  # speech after digital silence
    with pytest.raises(AudiodiffError) as err:
        voc(mel, steps=1, seed=0)
    message = str(err.value)
    assert "\n" not in message and named in message and message.endswith(SKIP)
    assert "this model expects natural-log mels (the hifigan convention" in message


def test_check_mel_range_false_vocodes_any_finite_mel(voc, speech):
    unchecked = Vocoder(voc.net, voc.mel_config, voc.model_config, voc.diffusion_config, check_mel_range=False)
    assert np.isfinite(unchecked(_db(HIFIGAN(speech[:8192])).numpy(), steps=1, seed=0)).all()


def test_diffwave_model_refuses_a_hifigan_mel(speech):
    voc = Vocoder(tiny_vocoder().net, mel_config("diffwave"), ModelConfig(residual_layers=2, residual_channels=4,
                                                                         embed_dim=16), DiffusionConfig())
    assert np.isfinite(voc(DIFFWAVE(speech[:8192]).numpy(), steps=1, seed=0)).all()
    with pytest.raises(AudiodiffError, match=r"it looks like a natural-log mel \(the hifigan preset\); this model "
                                             r"expects \[0, 1\] mels"):
        voc(HIFIGAN(speech[:8192]).numpy(), steps=1, seed=0)


def test_synth_refuses_a_db_mel_and_no_mel_check_vocodes_it(tmp_path, tiny_model_dir, speech, capsys):
    np.save(tmp_path / "db.npy", _db(HIFIGAN(speech[:8192])).numpy())
    args = ("synth", tmp_path / "db.npy", tmp_path / "out.wav", "--model", tiny_model_dir, "--device", "cpu",
            "--steps", 1, "--refine", 0)
    code, out, err = run_cli(capsys, *args)
    assert_one_error_line(code, err, "it looks like a dB mel", "np.maximum(mel / 8.686, -11.513)", "--no-mel-check")
    assert out == "" and not (tmp_path / "out.wav").exists()
    code, out, err = run_cli(capsys, *args, "--no-mel-check")
    assert code == 0 and sf.info(str(tmp_path / "out.wav")).frames == 32 * 256


def test_mel_refuses_nonfinite_audio(tmp_path, capsys):
    audio = harmonic(0.5)
    audio[100] = np.nan
    path = write_wav(tmp_path / "nan.wav", audio, subtype="FLOAT")
    code, _, err = run_cli(capsys, "mel", path, tmp_path / "out.npy")
    assert_one_error_line(code, err)
    assert err == (f"error: {path}: audio contains NaN or infinite samples; expected finite samples in [-1, 1] "
                   f"(re-export it, e.g. as 16-bit PCM)\n")
    assert not (tmp_path / "out.npy").exists()
    with pytest.raises(AudiodiffError, match="audio contains NaN or infinite samples"):
        tiny_vocoder().mel(audio)


def test_nan_weights_are_refused_naming_the_model(tmp_path, tiny_model_dir, demo_mel, capsys):
    voc = Vocoder.from_pretrained(tiny_model_dir, device="cpu")
    with torch.no_grad():
        voc.net.output_proj.weight[0, 0, 0] = float("nan")
    model = voc.save_pretrained(tmp_path / "nan-model")
    np.save(tmp_path / "mel.npy", demo_mel[:, :8])
    code, _, err = run_cli(capsys, "synth", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model,
                           "--device", "cpu", "--steps", 1)
    assert err == (f"error: model {model} produced NaN or infinite audio: 1 of its weight tensors hold NaN or "
                   f"infinite values (first: output_proj.weight); export it again from a good checkpoint\n")
    assert code == 1 and not (tmp_path / "out.wav").exists()


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory) -> Path:
    mel = mel_config("hifigan", n_mels=16, n_fft=256, win_length=256, hop_length=64)
    model = ModelConfig(arch="unet2d", channels=4, channel_mults=(1,), blocks_per_level=1, embed_dim=8,
                        image_frames=8)
    torch.manual_seed(0)
    gen = MelGenerator(build_backbone(model, mel), mel, model, DiffusionConfig(sampler="ddim", sample_steps=2))
    return gen.save_pretrained(tmp_path_factory.mktemp("gen") / "gen")


ZERO_COUNTS = [("generate", "GEN", "OUT", "--n", 0), ("generate", "GEN", "OUT", "--frames", 0),
               ("generate", "GEN", "OUT", "--steps", 0), ("eval", "VOC", "DATA", "--limit", -1),
               ("synth", "MEL", "OUT.wav", "--steps", 0), ("synth", "MEL", "OUT.wav", "--max-batch", 0),
               ("tune-schedule", "VOC", "--data", "DATA", "--clips", 0),
               ("tune-schedule", "VOC", "--data", "DATA", "--passes", 0),
               ("tune-schedule", "VOC", "--data", "DATA", "--steps", 0)]


@pytest.mark.parametrize("args", ZERO_COUNTS, ids=lambda a: f"{a[0]} {a[-2]} {a[-1]}")
def test_zero_and_negative_counts_are_usage_errors(tmp_path, tiny_model_dir, generator_dir, tone_dir, demo_mel,
                                                  capsys, args):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "voc"))
    config = (model / "config.json").read_text()
    np.save(tmp_path / "mel.npy", demo_mel[:, :8])
    paths = {"GEN": generator_dir, "VOC": model, "DATA": tone_dir, "MEL": tmp_path / "mel.npy",
             "OUT": tmp_path / "out", "OUT.wav": tmp_path / "out.wav"}
    code, out, err = run_cli(capsys, *(paths.get(a, a) for a in args), "--device", "cpu")
    assert code == 2 and "Invalid value for" in err and "Traceback" not in err
    assert (model / "config.json").read_text() == config  # tune-schedule stored nothing
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.wav").exists()


def test_library_functions_refuse_zero_counts(voc, generator_dir, tone_dir, demo_mel):
    gen = MelGenerator.from_pretrained(generator_dir, device="cpu")
    for kwargs in ({"batch": 0}, {"frames": 0}, {"steps": 0}, {"seed": -1}):
        with pytest.raises(AudiodiffError, match="must be a whole number"):
            gen(**kwargs)
    with pytest.raises(AudiodiffError, match=r"limit must be a whole number >= 0 \(0 or None: every file\), got -1"):
        evaluate(voc, tone_dir, limit=-1)
    with pytest.raises(AudiodiffError, match="clips must be a whole number >= 1, got 0"):
        ss.load_clips(voc, tone_dir, clips=0)
    for kwargs, what in (({"passes": 0}, "passes"), ({"steps": 0}, "steps")):
        with pytest.raises(AudiodiffError, match=f"{what} must be a whole number >= 1, got 0"):
            ss.search(voc, [harmonic(0.2)], **{"steps": 2, "passes": 1, **kwargs}, log=lambda *_: None)
    with pytest.raises(AudiodiffError, match="no clips to score"):
        ss.score(voc, [], [0.1, 0.5])
    with pytest.raises(AudiodiffError, match="steps must be a whole number >= 1, got 0"):
        voc(demo_mel[:, :4], steps=0)
    with pytest.raises(AudiodiffError, match="steps must be a whole number >= 1, got 0"):
        tiny_vocoder(steps=0)


def _not_mels(folder: Path) -> dict[str, tuple[Path, str]]:
    tone = harmonic(0.2)
    sf.write(folder / "speech.wav", tone, SR)
    sf.write(folder / "speech.flac", tone, SR)
    sf.write(folder / "speech.ogg", tone, SR)
    (folder / "speech.mp3").write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(200))  # an ID3v2 header
    (folder / "mel.txt").write_text(" ".join(["-5.0"] * 80) + "\n")
    np.savez(folder / "mel.npz", mel=np.zeros((80, 4), np.float32))
    how = "make its mel with `audiodiff mel {p} MEL.npy` (or pass --model MODEL to use a model's mel settings), then " \
          "synth MEL.npy"
    return {
        "wav": (folder / "speech.wav", "{p} is a WAV audio file, not a mel; " + how),
        "flac": (folder / "speech.flac", "{p} is a FLAC audio file, not a mel; " + how),
        "ogg": (folder / "speech.ogg", "{p} is an Ogg audio file, not a mel; " + how),
        "mp3": (folder / "speech.mp3", "{p} is an MP3 audio file, not a mel; " + how),
        "text": (folder / "mel.txt", "{p} is a text file, not a .npy mel; save mels with np.save (a text array "
                                     "loads with np.loadtxt)"),
        "npz": (folder / "mel.npz", "{p} is a zip archive (np.savez?), not one .npy array; save the mel with np.save"),
    }


@pytest.mark.parametrize("case", ["wav", "flac", "ogg", "mp3", "text", "npz"])
def test_synth_says_what_a_file_that_is_not_a_mel_is(tmp_path, tiny_model_dir, capsys, case):
    path, message = _not_mels(tmp_path)[case]
    code, out, err = run_cli(capsys, "synth", path, tmp_path / "out.wav", "--model", tiny_model_dir, "--device",
                             "cpu")
    assert_one_error_line(code, err)
    assert err == f"error: {message.format(p=path)}\n" and "pickle" not in err
    assert not (tmp_path / "out.wav").exists()


def test_big_endian_npy_is_vocoded_like_native(tmp_path, tiny_model_dir, demo_mel, capsys):
    np.save(tmp_path / "native.npy", demo_mel[:, :16].astype("<f4"))
    np.save(tmp_path / "big.npy", demo_mel[:, :16].astype(">f4"))
    assert np.load(tmp_path / "big.npy").dtype.byteorder == ">"
    for name in ("native", "big"):
        code, _, err = run_cli(capsys, "synth", tmp_path / f"{name}.npy", tmp_path / f"{name}.wav", "--model",
                               tiny_model_dir, "--device", "cpu", "--steps", 1, "--refine", 2)
        assert code == 0, err
    assert np.array_equal(sf.read(tmp_path / "native.wav")[0], sf.read(tmp_path / "big.wav")[0])


# --- 8. the Python API ------------------------------------------------------------------------------------------
BAD_DEVICES = {
    "gpu": "unknown device 'gpu'; expected 'cpu', 'cuda' or 'cuda:N' (N a GPU index)",
    "cuda:x": "unknown device 'cuda:x'; expected 'cpu', 'cuda' or 'cuda:N' (N a GPU index)",
    "meta": "unknown device 'meta'; expected 'cpu', 'cuda' or 'cuda:N' (N a GPU index)",
    "cuda": "device 'cuda': no CUDA GPU is available here (torch.cuda.is_available() is False); use device 'cpu'",
    "cuda:99": "device 'cuda:99': this machine has {n} CUDA GPU(s), cuda:0 to cuda:{last}; pass one of those",
}


@pytest.mark.parametrize("device", sorted(BAD_DEVICES))
def test_bad_devices_are_one_line_everywhere(tiny_model_dir, generator_dir, device):
    n = torch.cuda.device_count()
    if (device == "cuda" and n) or (device == "cuda:99" and not n):
        pytest.skip("the message depends on whether this machine has a GPU")
    message = BAD_DEVICES[device].format(n=n, last=n - 1)
    for load in (lambda: Vocoder.from_pretrained(tiny_model_dir, device=device),
                 lambda: MelGenerator.from_pretrained(generator_dir, device=device),
                 lambda: tiny_vocoder().to(device), lambda: distributed.setup(device)):
        with pytest.raises(AudiodiffError) as err:
            load()
        assert str(err.value) == message


def test_mel_on_another_device_is_refused(voc):
    with pytest.raises(AudiodiffError, match=r"^mel is a meta tensor \(80, 10\), which holds no values; pass a "
                                             r"tensor with data$"):
        voc(torch.empty(80, 10, device="meta"))
    if torch.cuda.is_available():
        with pytest.raises(AudiodiffError, match=r"^mel is on cuda:0 but this model is on cpu; pass mel.to\('cpu'\)"):
            voc(torch.full((80, 4), -5.0, device="cuda"))


@pytest.mark.parametrize("seed", ["abc", 2**70, -1, 1.5, True])
def test_bad_seeds_are_refused(voc, generator_dir, seed):
    message = f"seed must be a whole number in [0, 2**63 - 1], got {seed!r}; pass e.g. seed=0"
    for call in (lambda: voc(torch.full((80, 4), -5.0), seed=seed),
                 lambda: MelGenerator.from_pretrained(generator_dir, device="cpu")(seed=seed)):
        with pytest.raises(AudiodiffError) as err:
            call()
        assert str(err.value) == message


def test_unknown_keywords_are_refused_with_a_suggestion(tiny_model_dir, voc):
    with pytest.raises(AudiodiffError) as err:
        Vocoder.from_pretrained(tiny_model_dir, device="cpu", stepz=4)
    assert str(err.value).startswith("Vocoder.from_pretrained: unknown option 'stepz' (did you mean 'steps'?); "
                                     "valid options: sampler, steps, ")
    with pytest.raises(AudiodiffError) as err:
        voc(torch.full((80, 4), -5.0), seeed=1)
    assert str(err.value) == ("Vocoder(mel, ...): unknown option 'seeed' (did you mean 'seed'?); valid options: "
                              "steps, sampler, generator, seed, betas, refine")


HOOK = '''
import os, sys, time
_target, _marker = os.environ.get("SLOW_IMPORT"), os.environ.get("SLOW_IMPORT_MARKER")
if _target:
    class _SlowImport:  # sleeps when the target module is first imported, so that a test can press Ctrl-C there
        def find_spec(self, name, path=None, target=None):
            if name == _target:
                sys.meta_path.remove(self)
                open(_marker, "w").close()
                time.sleep(60)
            return None
    sys.meta_path.insert(0, _SlowImport())
'''


@pytest.mark.parametrize("module", ["torch", "safetensors"], ids=["importing torch", "loading the model"])
def test_ctrl_c_during_start_up_prints_one_line(tmp_path, tiny_model_dir, demo_mel, module):
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    np.save(tmp_path / "mel.npy", demo_mel[:, :8])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "hook"), str(REPO)]), SLOW_IMPORT=module,
               SLOW_IMPORT_MARKER=str(tmp_path / "marker"))
    # A terminal's Ctrl-C reaches a process whose SIGINT has the default disposition; an ignored SIGINT (which a
    # pytest process may hold after other tests) would be inherited through exec, and Python would keep ignoring it.
    proc = subprocess.Popen([sys.executable, "-m", "audiodiff", "synth", tmp_path / "mel.npy", tmp_path / "out.wav",
                             "--model", tiny_model_dir, "--device", "cpu"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        end = time.monotonic() + 60
        while not (tmp_path / "marker").exists():
            assert proc.poll() is None and time.monotonic() < end, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, out, err.strip()) == (130, "", "interrupted"), err
    assert not (tmp_path / "out.wav").exists()


# --- 9. memory of long mels -------------------------------------------------------------------------------------
def test_max_batch_defaults_by_device_and_is_checked(voc):
    assert voc.device.type == "cpu" and voc.max_batch == 2
    assert tiny_vocoder(max_batch=5).max_batch == 5
    for bad in (0, -1, 2.5, "4", True):
        with pytest.raises(AudiodiffError, match=f"max_batch must be a whole number >= 1, got {bad!r}"):
            tiny_vocoder(max_batch=bad)


def _synth_peak_rss(tmp_path: Path, model: Path, frames: int, max_batch: int) -> int:
    """Peak resident bytes of a real ``audiodiff synth`` process on a constant mel of ``frames``, as the process
    itself reads it (``peak_rss_env``)."""
    env, peak = peak_rss_env(tmp_path, {**os.environ, "PYTHONPATH": str(REPO)})
    np.save(tmp_path / "mel.npy", np.full((1, frames), -5.0, np.float32))
    proc = subprocess.run([sys.executable, "-m", "audiodiff", "synth", str(tmp_path / "mel.npy"),
                           str(tmp_path / "out.wav"), "--model", str(model), "--device", "cpu", "--refine", "0",
                           "--max-batch", str(max_batch)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=env, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(tmp_path / "out.wav")).frames == frames * 256
    return int(peak.read_text()) * 1024


def test_peak_memory_grows_with_max_batch_not_with_mel_length(tmp_path):
    """A one-layer, four-channel, one-band model (as in test_reliability), 1 DDIM step, no refinement. Each chunk of
    1024 frames (262,144 samples) holds at least its noise, its upsampled mel and its first layer's 8 channels
    (10 float32 values a sample, 10 MB) while it runs, so 8 chunks at once need at least 7 x 10 MB more than one;
    a 10-minute mel needs only its output (6.7 min more of it, 35 MB as float32, in a few copies) more than a
    3.3-minute one. Measured on 2 CPU cores: +176 MB for max_batch 8, -4 MB for the longer mel."""
    torch.manual_seed(0)
    mel, model = mel_config("hifigan", n_mels=1), ModelConfig(residual_layers=1, residual_channels=4,
                                                              dilation_cycle=1, embed_dim=4)
    voc_dir = Vocoder(build_backbone(model, mel), mel, model, DiffusionConfig(sampler="ddim", sample_steps=1)) \
        .save_pretrained(tmp_path / "model")
    short, long = int(10 / 3 * 60 * SR) // 256, int(10 * 60 * SR) // 256  # 16 and 50 chunks
    one = _synth_peak_rss(tmp_path, voc_dir, short, max_batch=1)
    eight = _synth_peak_rss(tmp_path, voc_dir, short, max_batch=8)
    longer = _synth_peak_rss(tmp_path, voc_dir, long, max_batch=1)
    assert eight - one > 7 * 1024 * 256 * 10 * 4
    assert longer - one < 6 * (long - short) * 256 * 4 + 64 * 2**20


# --- 10. eval ---------------------------------------------------------------------------------------------------
def test_eval_skips_unreadable_files_and_lists_them(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "data"
    write_wav(data / "a.wav", harmonic(0.3))
    write_wav(data / "c.wav", harmonic(0.3, 330.0))
    (data / "b.wav").write_bytes(np.random.default_rng(0).bytes(2000))
    (data / "d.wav").write_bytes(b"")
    code, out, err = run_cli(capsys, "eval", tiny_model_dir, data, "--fast", "--steps", 1, "--refine", 0,
                             "--device", "cpu", "--out", tmp_path / "report.json")
    assert code == 0, err
    assert out.splitlines()[-2] == (f"skipped 2 of 4 files: {data / 'b.wav'} (not readable audio (Format not "
                                    f"recognised.)); {data / 'd.wav'} (empty file)")
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["file"] for r in report["files"]] == [str(data / "a.wav"), str(data / "c.wav")]
    assert report["skipped"] == [{"file": str(data / "b.wav"), "reason": "not readable audio (Format not recognised.)"},
                                 {"file": str(data / "d.wav"), "reason": "empty file"}]
    assert report["summary"]["mrstft"]["n"] == 2


def test_eval_errors_name_its_own_arguments(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "eval", tiny_model_dir, tmp_path / "empty", "--device", "cpu")
    assert_one_error_line(code, err, "no audio files", "give a folder of recordings or a file list (.txt) to "
                                                       "evaluate on")
    assert "--data" not in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"")
    code, _, err = run_cli(capsys, "eval", tiny_model_dir, tmp_path / "bad", "--device", "cpu")
    bad = tmp_path / "bad"
    assert code == 1 and err.splitlines()[-1] == (f"error: none of the 1 files in {bad} can be read; first: "
                                                  f"{bad / 'x.wav'} (empty file); expected wav, flac, ogg or mp3 "
                                                  f"recordings")
