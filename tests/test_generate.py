"""`audiodiff generate`: a U-Net's mels become wav and PNG files, deterministically under a seed, and a vocoder
with other mel settings is refused with a message that says what to do; unconditional and class-conditional
waveform models (``WaveGenerator``) write their own audio."""

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.mel import MelConfig
from audiodiff.cli import main
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone
from audiodiff.melgen import MelGenerator
from audiodiff.vocoder import Vocoder

MEL = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16, fmax=4000.0)


@pytest.fixture()
def generator_dir(tmp_path):
    torch.manual_seed(0)
    model = ModelConfig(arch="unet2d", channels=8, channel_mults=(1, 2), blocks_per_level=1, embed_dim=16,
                        num_classes=3, image_frames=12)
    net = build_backbone(model, MEL)
    with torch.no_grad():  # zero-initialised branches would make every sample the prior's mean
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.2)
    diffusion = DiffusionConfig(schedule="cosine", steps=100, sampler="ddim", sample_steps=3)
    return MelGenerator(net, MEL, model, diffusion).save_pretrained(tmp_path / "gen")


def run(*args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return exit_info.value.code


def test_generate_writes_wavs_and_pngs_deterministically(generator_dir, tmp_path, capsys):
    for out in ("a", "b"):
        assert run("generate", generator_dir, tmp_path / out, "--n", 2, "--class", 1, "--guidance", 2,
                   "--steps", 2, "--device", "cpu", "--seed", 5) == 0
    assert "wrote 2 wav and png files" in capsys.readouterr().out
    for i in range(2):
        wav_a, sr = sf.read(tmp_path / "a" / f"sample_{i:03d}.wav")
        wav_b, _ = sf.read(tmp_path / "b" / f"sample_{i:03d}.wav")
        assert sr == 8000 and len(wav_a) == 12 * 64 and np.array_equal(wav_a, wav_b)
        assert (tmp_path / "a" / f"sample_{i:03d}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first, _ = sf.read(tmp_path / "a" / "sample_000.wav")
    second, _ = sf.read(tmp_path / "a" / "sample_001.wav")
    assert not np.array_equal(first, second)  # two samples, two noises


def test_vocoder_with_other_mel_settings_is_refused(generator_dir, tmp_path, capsys):
    mel = MelConfig()  # 22.05 kHz hifigan, not the generator's 8 kHz mel
    model = ModelConfig(residual_layers=1, residual_channels=2, dilation_cycle=1, embed_dim=8)
    Vocoder(build_backbone(model, mel), mel, model, DiffusionConfig()).save_pretrained(tmp_path / "voc")
    assert run("generate", generator_dir, tmp_path / "o", "--n", 1, "--vocoder", tmp_path / "voc",
               "--device", "cpu") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: vocoder ") and "use --vocoder griffinlim" in err and err.count("\n") == 1


def test_class_names_and_the_paired_vocoder_are_used(generator_dir, tmp_path, capsys):
    gen = MelGenerator.from_pretrained(generator_dir, device="cpu")
    gen.classes = ["brass", "organ", "piano"]
    gen.save_pretrained(generator_dir)
    model = ModelConfig(residual_layers=1, residual_channels=2, dilation_cycle=1, embed_dim=8)
    torch.manual_seed(0)
    Vocoder(build_backbone(model, MEL), MEL, model, DiffusionConfig()).save_pretrained(generator_dir / "vocoder")
    args = ("--n", 1, "--guidance", 2, "--steps", 2, "--device", "cpu", "--seed", 3)
    assert run("generate", generator_dir, tmp_path / "name", "--class", "organ", *args) == 0
    assert run("generate", generator_dir, tmp_path / "index", "--class", 1, *args) == 0
    assert "no paired vocoder" not in capsys.readouterr().out
    named, _ = sf.read(tmp_path / "name" / "sample_000.wav")
    assert np.array_equal(named, sf.read(tmp_path / "index" / "sample_000.wav")[0])
    assert run("generate", generator_dir, tmp_path / "gl", "--class", 1, "--vocoder", "griffinlim", *args) == 0
    assert not np.array_equal(named, sf.read(tmp_path / "gl" / "sample_000.wav")[0])  # the paired vocoder ran
    assert run("generate", generator_dir, tmp_path / "bad", "--class", "harp", *args) == 1
    assert "unknown class 'harp'; this generator's classes: brass, organ, piano" in capsys.readouterr().err


# --- waveform models: unconditional and class-conditional DiffWave -----------------------------------------------

def _waveform_model(tmp_path, num_classes: int, classes=None):
    """A tiny DiffWave without mel input; its zero-initialised output layer gets weights, so samples differ."""
    from audiodiff.wavegen import WaveGenerator

    torch.manual_seed(0)
    model = ModelConfig(residual_layers=2, residual_channels=4, dilation_cycle=2, embed_dim=16, conditional=False,
                        num_classes=num_classes)
    net = build_backbone(model, MEL)
    with torch.no_grad():
        net.output_proj.weight.normal_(0, 0.5)
    diffusion = DiffusionConfig(sampler="ddim", sample_steps=3)
    return WaveGenerator(net, MEL, model, diffusion, classes).save_pretrained(tmp_path / f"wave{num_classes}")


def test_an_unconditional_waveform_model_generates_audio(tmp_path, capsys):
    model = _waveform_model(tmp_path, 0)
    for out in ("a", "b"):
        assert run("generate", model, tmp_path / out, "--n", 2, "--frames", 5, "--device", "cpu", "--seed", 4) == 0
    assert "wrote 2 wav and png files" in capsys.readouterr().out
    first, sr = sf.read(tmp_path / "a" / "sample_000.wav")
    assert sr == 8000 and len(first) == 5 * 64 and np.abs(first).max() > 1e-3
    assert np.array_equal(first, sf.read(tmp_path / "b" / "sample_000.wav")[0])  # same seed, same audio
    assert not np.array_equal(first, sf.read(tmp_path / "a" / "sample_001.wav")[0])  # two samples, two noises
    assert (tmp_path / "a" / "sample_001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run("generate", model, tmp_path / "c", "--class", 1, "--device", "cpu") == 1
    assert "this generator is unconditional: pass no labels" in capsys.readouterr().err
    assert run("generate", model, tmp_path / "d", "--vocoder", "griffinlim", "--device", "cpu") == 1
    assert "waveform model, which needs no vocoder; drop --vocoder" in capsys.readouterr().err


def test_a_class_conditional_waveform_model_takes_labels_and_guidance(tmp_path, capsys):
    from audiodiff.wavegen import DEFAULT_FRAMES, WaveGenerator

    model = _waveform_model(tmp_path, 3, classes=["hi", "mid", "low"])
    gen = WaveGenerator.from_pretrained(model, device="cpu")
    assert gen.classes == ["hi", "mid", "low"] and gen.label("low") == 2
    plain = gen([0, 2], seed=1)
    assert plain.shape == (2, DEFAULT_FRAMES * 64) and plain.abs().max() <= 1
    assert torch.equal(gen([0, 2], seed=1), plain)
    again = WaveGenerator.from_pretrained(gen.save_pretrained(tmp_path / "again"), device="cpu")
    assert again.classes == gen.classes and torch.equal(again([0, 2], seed=1), plain)  # the round trip
    assert not torch.equal(gen([1, 2], seed=1)[0], plain[0])  # the label reaches the network
    assert not torch.equal(gen([0, 2], seed=1, guidance=3.0), plain)  # and guidance does
    args = ("--n", 1, "--frames", 4, "--guidance", 2, "--device", "cpu", "--seed", 3)
    assert run("generate", model, tmp_path / "name", "--class", "mid", *args) == 0
    assert run("generate", model, tmp_path / "index", "--class", 1, *args) == 0
    named = sf.read(tmp_path / "name" / "sample_000.wav")[0]
    assert np.array_equal(named, sf.read(tmp_path / "index" / "sample_000.wav")[0])
    expected = gen([1], frames=4, guidance=2.0, seed=3)[0].numpy()
    assert np.abs(named - expected).max() <= 1 / 2**15  # the generator's samples, as 16-bit PCM (1.0: 32767)


def test_a_mel_vocoder_is_not_a_generator(tmp_path, capsys):
    from audiodiff.wavegen import WaveGenerator

    model = ModelConfig(residual_layers=1, residual_channels=2, dilation_cycle=1, embed_dim=8)
    path = Vocoder(build_backbone(model, MEL), MEL, model, DiffusionConfig()).save_pretrained(tmp_path / "voc")
    assert run("generate", path, tmp_path / "o", "--device", "cpu") == 1
    err = capsys.readouterr().err
    assert err == ("error: this model is mel-conditioned (model.conditional: true): it turns mels into audio; use "
                   "Vocoder (audiodiff synth) for it\n")
    with pytest.raises(AudiodiffError, match="WaveGenerator needs model.arch diffwave, got 'unet2d'"):
        WaveGenerator(None, MEL, ModelConfig(arch="unet2d"), DiffusionConfig())


def test_a_model_without_mel_input_is_refused_as_a_vocoder():
    # Vocoding with a model that never saw a mel would give audio unrelated to the mel, silently.
    from audiodiff.audio.mel import MelConfig
    from audiodiff.config import DiffusionConfig, ModelConfig
    from audiodiff.errors import AudiodiffError
    from audiodiff.factory import build_backbone
    from audiodiff.vocoder import Vocoder

    model = ModelConfig(residual_layers=2, residual_channels=4, dilation_cycle=2, embed_dim=16, conditional=False)
    with pytest.raises(AudiodiffError) as err:
        Vocoder(build_backbone(model, MelConfig()), MelConfig(), model, DiffusionConfig())
    assert str(err.value) == ("this is a waveform model without mel input (model.conditional: false), not a vocoder: "
                              "it makes its own output from class labels or noise; use WaveGenerator (audiodiff "
                              "generate) for it")
