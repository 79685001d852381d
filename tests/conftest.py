"""Shared fixtures: where the real recordings are, the bundled demo corpus, tiny generated audio and tiny models.

Real recordings are never copied into the repository: tests reach them through ``AUDIODIFF_TEST_DATA``
(default ``../shared/data`` relative to the repository root) and skip, or fall back to ``data/demo``, when absent.
Every model here is tiny (2 residual layers, 4 channels) so the suite stays fast on a shared 2-core CPU.

Threads: ``AUDIODIFF_TEST_THREADS=N pytest`` runs the suite with N intra-op threads (unset: an ``OMP_NUM_THREADS``
already in the environment, else 1). The BLAS picks other kernels for other thread counts (and batch shapes), so
float results that two code paths compute differently, e.g. batched and unbatched, differ in their last bits: those
comparisons carry tolerances derived from float32 rounding (``rel_l2`` below) and are marked ``numerics``
(``AUDIODIFF_TEST_THREADS=4 pytest -m numerics`` checks them with 4 threads); ``make test`` runs the whole suite
with 1 thread and again with 2 (see the Makefile).
"""

from __future__ import annotations

import os
from pathlib import Path

# Intra-op threads (see the docstring), one by default. Idle OpenMP threads sleep instead of spinning: on a small CPU
# shared with other jobs (or the suite's own subprocesses) spinning threads make tiny models many times slower than
# one thread; only the waiting changes, not the arithmetic. Set before numpy and torch load; subprocesses (CLI,
# torchrun) inherit both.
THREADS = os.environ.get("AUDIODIFF_TEST_THREADS") or os.environ.get("OMP_NUM_THREADS") or "1"
if not THREADS.isdigit() or int(THREADS) < 1:
    raise RuntimeError(f"AUDIODIFF_TEST_THREADS (or OMP_NUM_THREADS) is {THREADS!r}; expected a whole number >= 1")
os.environ["OMP_NUM_THREADS"] = THREADS
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(THREADS))

# Without CUDA the fused-kernel tests run in Triton's interpreter, which Triton switches on only if the variable is
# set when it is first imported; anything that imports torch._dynamo imports triton, so it is set before any test
# module is collected (otherwise a test module importing it first would turn tests/test_kernels.py into a silent
# skip).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "data" / "demo"
SR = 22050
EPS32 = float(torch.finfo(torch.float32).eps)  # 1.19e-7: float32's machine epsilon, the unit of its rounding


def rel_l2(actual, expected) -> float:
    """``||actual - expected|| / ||expected||`` of numpy arrays or tensors: the error of a whole signal, which an
    element-wise rtol would judge at its zero crossings and a bare atol without regard to its scale."""
    actual, expected = (torch.as_tensor(v).detach().double() for v in (actual, expected))
    return float((actual - expected).norm() / expected.norm())


PEAK_HOOK = """
import atexit, os
_out = os.environ.get("PEAK_RSS_FILE")
if _out:
    def _write_peak():  # VmHWM: this process's own peak since its exec (ru_maxrss would start from the parent's)
        with open("/proc/self/status") as status:
            kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
        with open(_out, "w") as f:
            f.write(kb)
    atexit.register(_write_peak)
"""


def peak_rss_env(folder: Path, env: dict) -> tuple[dict, Path]:
    """``env`` for a Python child process that writes its own peak resident KiB to the returned file as it exits
    (a ``sitecustomize`` hook, ``PEAK_RSS_FILE``). Read inside the child from ``/proc/self/status`` (VmHWM, reset by
    exec), not from ``wait4`` or ``ru_maxrss``: Linux carries a process's peak through fork and exec, so a child of a
    2 GB pytest process would report at least 2 GB whatever it uses."""
    (folder / "peak-hook").mkdir(parents=True, exist_ok=True)
    (folder / "peak-hook" / "sitecustomize.py").write_text(PEAK_HOOK)
    path = [str(folder / "peak-hook")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    return {**env, "PYTHONPATH": os.pathsep.join(path), "PEAK_RSS_FILE": str(folder / "peak.txt")}, folder / "peak.txt"


def states_equal(a: dict, b: dict) -> bool:
    """Two state dicts with the same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def torchrun_train(tmp_path: Path, recipe: dict, script: str, data: Path, timeout: int) -> tuple[dict, dict]:
    """``audiodiff train`` of ``recipe`` on ``data`` in two gloo processes on the CPU under torchrun, through
    ``script`` (which runs the CLI and saves ``rank{r}.pt`` in its first argument); returns both ranks' saves.
    Skips where torch.distributed with gloo is not available."""
    import subprocess
    import sys

    import torch.distributed as dist
    import yaml

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "ddp_script.py").write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(tmp_path / "ddp_script.py"), str(tmp_path), "train", str(tmp_path / "tiny.yaml"), "--data", str(data),
           "--run-dir", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")


def assert_log_mel_close(mel, ref, log: str = "ln") -> None:
    """``mel``, a float32 log-mel ``[bands, frames]``, equals ``ref`` (float64, or float32 along another path: other
    batch or frame counts) up to float32 rounding; ``log`` is the front end's compression, "ln" or "diffwave".

    A band's log error is ``scale`` (1 for ln, 20 / ln(10) / 100 on the diffwave scale) times its relative error. A
    float32 STFT rounds each bin by ~eps of the frame's loudest band, so a band ``ratio`` times quieter than that one
    is off by ~eps * ratio relative: measured at most 31 eps * ratio (ln) and 52 (diffwave, mostly the log's own
    rounding) against float64 on three LJSpeech and three demo recordings, with 1 and 2 threads. Allowed: the log's
    rounding (5-10 ulps) plus 300 eps * ratio, capped at 1e-3 for the quietest bands (measured at most 1.9e-4): a
    wrong window, mel scale, norm, floor or frame moves values by more than 1e-2."""
    scale, floor = {"ln": (1.0, 1e-5), "diffwave": (0.2 / np.log(10), 1e-6)}[log]
    mel, ref = (torch.as_tensor(v).detach().cpu().double().numpy() for v in (mel, ref))
    ratio = np.exp((ref.max(axis=0) - ref) / scale)  # [bands, frames]: the frame's loudest band / this band
    tol = np.minimum(floor + 300 * EPS32 * scale * ratio, 1e-3)
    worst = float(np.max(np.abs(mel - ref) / tol))
    assert worst <= 1, f"log-mel off by {worst:.2f} times its float32 tolerance"


def shared_data_dir() -> Path:
    """``$AUDIODIFF_TEST_DATA`` (relative paths against the repository root), default ``../shared/data``."""
    raw = os.environ.get("AUDIODIFF_TEST_DATA", "../shared/data")
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (REPO / path).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real recordings not found at {path}; set AUDIODIFF_TEST_DATA")
    return path


@pytest.fixture(scope="session")
def demo_files() -> list[Path]:
    files = sorted(DEMO_DIR.glob("*.flac"))
    assert files, f"the bundled demo corpus is missing from {DEMO_DIR}"
    return files


@pytest.fixture(scope="session")
def speech_file(demo_files) -> Path:
    """The first real 22.05 kHz test recording, or a demo file when the shared data is absent."""
    real = sorted((shared_data_dir() / "speech-22k" / "test").glob("*.flac"))
    return real[0] if real else demo_files[0]


def harmonic(seconds: float = 1.0, f0: float = 220.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Five harmonics of ``f0`` plus a little noise, peak about 0.5: a cheap stand-in for voiced audio."""
    t = np.arange(int(round(sr * seconds))) / sr
    x = sum(0.25 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6))
    return (x + 0.01 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sr, subtype=subtype)
    return path


@pytest.fixture
def tone_dir(tmp_path) -> Path:
    """Four 1 s harmonic tones at 22.05 kHz (different pitches) in ``tmp_path / "tones"``."""
    folder = tmp_path / "tones"
    for i, f0 in enumerate((110.0, 165.0, 220.0, 330.0)):
        write_wav(folder / f"tone{i}.wav", harmonic(1.0, f0, seed=i))
    return folder


def tiny_net(n_mels: int = 80, hop_length: int = 256, layers: int = 2, channels: int = 4, seed: int = 0,
             num_classes: int = 0, randomize_output: bool = True):
    """A tiny DiffWave with a seeded init. Its output projection starts at zero (so every output would be 0);
    ``randomize_output`` gives it random weights so that tests can tell models apart. With 4 channels the final
    ReLU can be dead everywhere for an unlucky init (the skip projection's 4 biases all negative); a zero skip
    bias keeps about half of it alive whatever the seed."""
    from audiodiff.models import DiffWave

    torch.manual_seed(seed)
    net = DiffWave(n_mels=n_mels, hop_length=hop_length, residual_layers=layers, residual_channels=channels,
                   dilation_cycle=10, embed_dim=16, num_classes=num_classes)
    with torch.no_grad():
        net.skip_proj.bias.zero_()
    if randomize_output:
        with torch.no_grad():
            net.output_proj.weight.normal_(0, 0.5)
            net.output_proj.bias.normal_(0, 0.1)
    return net


def tiny_vocoder(layers: int = 2, channels: int = 4, seed: int = 0, **kwargs):
    """A ``Vocoder`` around ``tiny_net`` with the hifigan mel and the default diffusion settings."""
    from audiodiff.audio.mel import MelConfig
    from audiodiff.config import DiffusionConfig, ModelConfig
    from audiodiff.vocoder import Vocoder

    net = tiny_net(layers=layers, channels=channels, seed=seed)
    model = ModelConfig(residual_layers=layers, residual_channels=channels, embed_dim=16)
    return Vocoder(net, MelConfig(), model, DiffusionConfig(), **kwargs)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An exported model directory (config.json + model.safetensors) of a tiny random vocoder."""
    return tiny_vocoder().save_pretrained(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def demo_mel(demo_files) -> np.ndarray:
    """The hifigan log-mel [80, 172] of the first 2 s of a demo file."""
    from audiodiff.audio.io import load_audio
    from audiodiff.audio.mel import MelSpectrogram

    audio, _ = load_audio(demo_files[0], SR)
    return MelSpectrogram.from_preset("hifigan")(torch.from_numpy(audio[: 2 * SR])).numpy()
