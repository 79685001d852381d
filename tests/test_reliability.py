"""Reliability: kills and signals during training, failing checkpoint writes, non-finite steps, bad training data,
bad inference input and untrusted files. docs/reliability.md lists every case with its test and number of trials.

All on CPU with tiny models (2 residual layers, 4 channels, a 16-band mel with hop 64, crops of 8 frames, batch 2).
Subprocesses run the real ``python -m audiodiff`` command line; a ``sitecustomize`` hook on their PYTHONPATH slows
each training step and each checkpoint fsync (timing only, never values) so that a kill can land inside them.
Training randomness is a pure function of (seed, step, rank), so every checkpoint of an interrupted run must be
bitwise equal to the checkpoint of the same step of one uninterrupted run (``reference``): tolerance 0.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audiodiff import atomic
from audiodiff.audio.mel import mel_config
from audiodiff.cli import main
from audiodiff.config import DiffusionConfig, ModelConfig, recipe_from_dict
from audiodiff.data import AudioCrops
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone
from audiodiff.training import checkpoint as ckpt
from audiodiff.training import loop
from audiodiff.training.loop import train
from audiodiff.vocoder import Vocoder

SR = 22050
MAX_STEPS, EVERY = 12, 2
STEP_DELAY, FSYNC_DELAY = 0.1, 0.4  # seconds added by the subprocess hook
RECIPE = {
    "mel": {"preset": "hifigan", "n_fft": 256, "win_length": 256, "hop_length": 64, "n_mels": 16},
    "model": {"residual_layers": 2, "residual_channels": 4, "dilation_cycle": 2, "embed_dim": 16},
    "data": {"valid_files": 0, "crop_frames": 8, "num_workers": 0},
    "train": {"batch_size": 2, "lr": 1e-3, "warmup_steps": 2, "max_steps": MAX_STEPS, "checkpoint_every": EVERY,
              "keep_checkpoints": 3, "log_every": 1, "valid_every": 10**6, "max_bad_steps": 3},
}
HOOK = '''
import os, time
_step, _fsync = float(os.environ.get("RELIABILITY_STEP_DELAY", 0)), float(os.environ.get("RELIABILITY_FSYNC_DELAY", 0))
if _step or _fsync:
    import audiodiff.training.loop as loop
    _train_step, _os_fsync = loop.train_step, os.fsync
    def slow_step(*args, **kwargs):
        time.sleep(_step)
        return _train_step(*args, **kwargs)
    def slow_fsync(fd):
        _os_fsync(fd)
        time.sleep(_fsync)
    loop.train_step, os.fsync = slow_step, slow_fsync
'''


# --- helpers ----------------------------------------------------------------------------------------------------
def harmonic(seconds: float, f0: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 5)).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


def make_recipe(data, **train_overrides) -> dict:
    raw = json.loads(json.dumps(RECIPE))
    raw["data"]["path"] = str(data)
    raw["train"].update(train_overrides)
    return raw


def write_recipe(path: Path, data, **train_overrides) -> Path:
    path.write_text(yaml.safe_dump(make_recipe(data, **train_overrides)))
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``audiodiff ARGS`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_error_line(code: int, err: str, expected: str | None = None) -> None:
    assert code == 1
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    if expected is not None:
        assert err == f"error: {expected}\n"


def assert_equal_state(got, want, where: str = "state") -> None:
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and got.shape == want.shape, where
        assert torch.equal(got, want), f"{where} differs (max {float((got - want).abs().max())})"
    elif isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for k in want:
            assert_equal_state(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_equal_state(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def assert_matches_reference(state: dict, reference: dict) -> None:
    """Everything a resume restores (the recipe and wall-clock time aside) is bitwise equal to the reference."""
    want = reference[state["step"]]
    for key in ("step", "model", "ema", "optimizer", "scheduler", "scaler"):
        assert_equal_state(state[key], want[key], key)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def temporaries(run_dir: Path) -> list[str]:
    folder = run_dir / "checkpoints"
    return sorted(p.name for p in folder.glob(".tmp-*")) if folder.is_dir() else []


class Training:
    """``python -m audiodiff train`` in its own process group; stderr lines are collected as they arrive."""

    def __init__(self, recipe: Path, run_dir: Path, hook: Path, step_delay=0.0, fsync_delay=0.0):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
                   RELIABILITY_STEP_DELAY=str(step_delay), RELIABILITY_FSYNC_DELAY=str(fsync_delay))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "audiodiff", "train", str(recipe), "--run-dir", str(run_dir), "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def steps(self) -> list[int]:
        return [int(ln.split()[1]) for ln in list(self.lines) if ln.startswith("step ") and "loss" in ln]

    def wait_for(self, condition, timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"exited early ({self.proc.returncode}): {self.lines[-3:]}"
            assert time.monotonic() < end, "timed out"
            time.sleep(0.002)

    def signal_group(self, signum: int) -> None:
        os.killpg(self.proc.pid, signum)

    def finish(self, timeout: float = 120.0) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self.reader.join()
        return code, self.proc.stdout.read()

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True


# --- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for i, f0 in enumerate((110.0, 165.0, 220.0)):
        sf.write(folder / f"good{i}.wav", harmonic(1.0, f0), SR)
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> dict[int, dict]:
    """The state after every step 1..12 of one uninterrupted in-process run (a checkpoint every step)."""
    run_dir = tmp_path_factory.mktemp("reference")
    train(recipe_from_dict(make_recipe(corpus, checkpoint_every=1, keep_checkpoints=100)), run_dir, progress=False)
    return {state["step"]: state for state in map(load, ckpt.list_checkpoints(run_dir))}


@pytest.fixture(scope="module")
def hook(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hook")
    (folder / "sitecustomize.py").write_text(HOOK)
    return folder


@pytest.fixture
def spawn(hook):
    """Start ``Training`` processes; any still running when the test ends (it failed) are killed."""
    started = []

    def start(recipe: Path, run_dir: Path, step_delay=0.0, fsync_delay=0.0) -> Training:
        started.append(Training(recipe, run_dir, hook, step_delay, fsync_delay))
        return started[-1]

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.signal_group(signal.SIGKILL)
            run.finish()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An exported vocoder with a 16-band mel (hop 256) and random weights."""
    torch.manual_seed(0)
    mel, model = mel_config("hifigan", n_mels=16), ModelConfig(residual_layers=2, residual_channels=4,
                                                               dilation_cycle=2, embed_dim=16)
    path = tmp_path_factory.mktemp("model") / "tiny"
    return Vocoder(build_backbone(model, mel), mel, model, DiffusionConfig()).save_pretrained(path)


# --- 1. kill and resume -----------------------------------------------------------------------------------------
def test_uninterrupted_runs_are_bitwise_identical(tmp_path, corpus, reference):
    torch.manual_seed(12345)  # the caller's global RNG must not matter: initial weights come from train.seed
    last = train(recipe_from_dict(make_recipe(corpus)), tmp_path / "run", progress=False)
    assert sorted(reference) == list(range(1, MAX_STEPS + 1))
    assert_matches_reference(load(last), reference)


def test_sigkill_chain_resumes_to_identical_weights(tmp_path, corpus, reference, spawn):
    """Five SIGKILLs at seeded random moments, each followed by a resume with the same command, then a final run."""
    rng = random.Random(20240611)
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus), tmp_path / "run"
    for mode in ("step", "write", "step", "setup", "write"):
        paths = ckpt.list_checkpoints(run_dir)
        start = load(paths[-1])["step"] if paths else 0
        run = spawn(recipe, run_dir, STEP_DELAY, FSYNC_DELAY)
        if mode == "step":  # a random moment inside a random later step
            target = rng.randint(start + 1, MAX_STEPS - 1)
            run.wait_for(lambda: target in run.steps())
            time.sleep(rng.uniform(0, STEP_DELAY))
        elif mode == "write":  # while the next checkpoint is being written (before its rename)
            stale = set(temporaries(run_dir))
            run.wait_for(lambda: set(temporaries(run_dir)) - stale)
        else:  # after resuming, before or during the first step
            run.wait_for(lambda: any(ln.startswith("training on") for ln in run.lines))
            time.sleep(rng.uniform(0, STEP_DELAY))
        run.signal_group(signal.SIGKILL)
        code, _ = run.finish()
        assert code == -signal.SIGKILL
        if start:
            assert f"resumed from {paths[-1]} at step {start}" in run.lines
        logged = run.steps()
        assert logged == list(range(start + 1, start + 1 + len(logged)))  # the step counter continues
        if mode == "write":
            assert set(temporaries(run_dir)) - stale, "the kill should have landed inside a checkpoint write"
        saved = 0
        for latest in ckpt.list_checkpoints(run_dir)[-1:]:
            state = load(latest)  # the newest checkpoint always loads with weights_only=True
            assert latest.name == f"ckpt-{state['step']:08d}.pt"
            assert_matches_reference(state, reference)
            saved = state["step"]
        done = logged[-1] if logged else start
        assert done - EVERY <= saved <= done  # at most one checkpoint interval of work lost

    run = spawn(recipe, run_dir)
    code, out = run.finish()
    assert code == 0, run.lines[-3:]
    final = run_dir / "checkpoints" / f"ckpt-{MAX_STEPS:08d}.pt"
    assert out == f"done: checkpoint {final}; export it with `audiodiff export {run_dir} OUT_DIR`\n"
    assert_matches_reference(load(final), reference)
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == [f"ckpt-{s:08d}.pt" for s in (8, 10, 12)]
    assert temporaries(run_dir) == []  # the stale .tmp- files of killed writes are gone


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_saves_checkpoint_and_exits_130(tmp_path, corpus, reference, spawn, signum):
    """Ctrl-C or a scheduler's SIGTERM, sent to the whole process group (the data-loader worker included)."""
    recipe = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=1000)
    recipe.write_text(recipe.read_text().replace("num_workers: 0", "num_workers: 1"))
    run_dir = tmp_path / "run"
    run = spawn(recipe, run_dir, STEP_DELAY)
    run.wait_for(lambda: 3 in run.steps())
    run.signal_group(signum)
    code, out = run.finish()
    step = run.steps()[-1]
    saved = run_dir / "checkpoints" / f"ckpt-{step:08d}.pt"
    assert code == 130 and out == ""
    assert run.lines[-1] == (f"interrupted: stopped by signal {int(signum)} at step {step}; checkpoint {saved}; "
                             f"run the same command to resume")
    assert_matches_reference(load(saved), reference)  # model, EMA, optimizer, scheduler and scaler state
    deadline = time.monotonic() + 10
    while run.group_alive():  # the data worker, which ignores the signal, is shut down with the loader
        assert time.monotonic() < deadline, "a data-loader worker outlived the run"
        time.sleep(0.05)


def test_truncated_newest_checkpoint_falls_back_to_previous(tmp_path, corpus, reference, caplog):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    for step in (4, 6):
        torch.save(reference[step], ckpt.checkpoint_path(run_dir, step))
    newest = ckpt.checkpoint_path(run_dir, 6)
    newest.write_bytes(newest.read_bytes()[:5000])
    caplog.set_level(logging.INFO, logger="audiodiff")
    last = train(recipe_from_dict(make_recipe(corpus, max_steps=8)), run_dir, progress=False)
    assert any(r.getMessage().startswith(f"skipping {newest} is not a loadable audiodiff checkpoint")
               for r in caplog.records)
    assert f"resumed from {ckpt.checkpoint_path(run_dir, 4)} at step 4" in caplog.messages
    assert_matches_reference(load(last), reference)
    assert_matches_reference(load(newest), reference)  # rewritten whole


def test_kill_while_writing_config_keeps_previous_config(tmp_path, corpus, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recipe = recipe_from_dict(make_recipe(corpus))
    text = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
    (run_dir / "config.yaml").write_text(text)

    class Killed(BaseException):
        pass

    def dies_mid_write(_recipe, path):
        Path(path).write_text(text[: len(text) // 2])
        raise Killed

    monkeypatch.setattr(loop, "save_recipe", dies_mid_write)
    with pytest.raises(Killed):
        train(recipe, run_dir, progress=False)
    assert (run_dir / "config.yaml").read_text() == text


# --- 2. write failures ------------------------------------------------------------------------------------------
def fail_third_checkpoint(monkeypatch, how: str) -> None:
    """Checkpoints 2 and 4 are written; the one at step 6 fails as ``how`` says."""
    calls = {"n": 0}
    real_create, real_replace = atomic._create_temp, os.replace

    def create_temp(target):
        calls["n"] += target.parent.name == "checkpoints"
        fd, path = real_create(target)
        if calls["n"] == 3 and how == "disk full":  # the kernel's own ENOSPC: the temporary is a link to /dev/full
            os.close(fd)
            os.unlink(path)
            os.symlink("/dev/full", path)
            fd = os.open(path, os.O_WRONLY)
        if calls["n"] == 3 and how == "read-only":
            os.close(fd)
            os.unlink(path)
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path.parent))
        return fd, path

    def replace(src, dst, *args, **kwargs):
        if how == "rename fails" and str(dst).endswith(".pt") and calls["n"] == 3:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic, "_create_temp", create_temp)
    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize("how", ["disk full", "read-only", "rename fails"])
def test_checkpoint_write_failure_is_one_line_and_keeps_previous(tmp_path, corpus, reference, monkeypatch, capsys,
                                                                 how):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus), tmp_path / "run"
    folder = run_dir / "checkpoints"
    if how == "disk full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    if how == "read-only" and os.geteuid() != 0:  # a real read-only folder; root ignores modes, so simulate
        train(recipe_from_dict(make_recipe(corpus, max_steps=4)), run_dir, progress=False)
        folder.chmod(0o555)
    else:
        fail_third_checkpoint(monkeypatch, how)
    try:
        code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")
    finally:
        if folder.exists():
            folder.chmod(0o755)
    reason = {"disk full": "No space left on device", "read-only": "Permission denied",
              "rename fails": "Input/output error"}[how]
    assert_one_error_line(code, err, f"could not write checkpoint {folder / 'ckpt-00000006.pt'}: {reason}; free "
                                     f"disk space or fix the folder's permissions, then resume (earlier "
                                     f"checkpoints are intact)")
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]  # no .tmp- left
    assert_matches_reference(load(folder / "ckpt-00000004.pt"), reference)


# --- 3. numerical faults ----------------------------------------------------------------------------------------
class NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient overflows."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def poison(monkeypatch, calls: set[int], kind: str) -> None:
    """Make the training steps numbered ``calls`` (1-based, as called) produce a non-finite loss or gradient."""
    real, count = loop.train_step, {"n": 0}

    def train_step(*args, **kwargs):
        count["n"] += 1
        loss = real(*args, **kwargs)
        if count["n"] not in calls:
            return loss
        return NanGradient.apply(loss) if kind == "gradient" else loss * float(kind)

    monkeypatch.setattr(loop, "train_step", train_step)


@pytest.mark.parametrize("kind", ["nan", "inf", "gradient"])
def test_nonfinite_steps_are_skipped_with_a_warning(tmp_path, corpus, reference, monkeypatch, caplog, kind):
    poison(monkeypatch, {5, 6}, kind)
    last = train(recipe_from_dict(make_recipe(corpus, max_steps=8)), tmp_path / "run", progress=False)
    what, value = ("gradient", "nan") if kind == "gradient" else ("loss", kind)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"step {s}: non-finite {what} ({value}); step skipped" for s in (4, 5)]
    state = load(last)
    assert state["step"] == 8 and state["ema"]["updates"] == 6  # two of eight updates skipped
    assert all(int(s["step"]) == 6 for s in state["optimizer"]["state"].values())
    assert all(torch.isfinite(v).all() for v in [*state["model"].values(), *state["ema"]["model"].values()])
    assert_matches_reference(load(tmp_path / "run" / "checkpoints" / "ckpt-00000004.pt"), reference)


def test_stop_signal_during_a_skipped_step_stops_at_once(tmp_path, corpus, monkeypatch):
    real, calls = loop.train_step, {"n": 0}

    def train_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] != 5:
            return real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives during the step at index 4, whose loss is NaN
        return real(*args, **kwargs) * float("nan")

    monkeypatch.setattr(loop, "train_step", train_step)
    run_dir = tmp_path / "run"
    with pytest.raises(loop.Interrupted) as stopped:
        train(recipe_from_dict(make_recipe(corpus)), run_dir, progress=False)
    saved = ckpt.checkpoint_path(run_dir, 5)
    assert str(stopped.value) == (f"stopped by signal {int(signal.SIGINT)} at step 5; checkpoint {saved}; run the "
                                  f"same command to resume")
    assert load(saved)["ema"]["updates"] == 4  # the skipped step made no update


@pytest.mark.parametrize("kind", ["nan", "gradient"])
def test_nonfinite_streak_stops_naming_last_good_checkpoint(tmp_path, corpus, reference, monkeypatch, capsys,
                                                            kind):
    poison(monkeypatch, set(range(5, 100)), kind)
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus), tmp_path / "run"
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")
    good = run_dir / "checkpoints" / "ckpt-00000004.pt"
    assert_one_error_line(code, err, f"training diverged: 3 non-finite steps in a row at step 6; the last good "
                                     f"checkpoint is {good}; lower train.lr or check the data")
    assert ckpt.list_checkpoints(run_dir)[-1] == good
    assert_matches_reference(load(good), reference)


# --- 4. bad training data ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory, corpus) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    for p in corpus.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    sf.write(folder / "truncated.wav", harmonic(1.0, 300), SR, subtype="PCM_16")
    data = (folder / "truncated.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 4])
    sf.write(folder / "truncated.flac", harmonic(1.0, 300), SR)
    data = (folder / "truncated.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(data[: len(data) // 3])
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "no-samples.wav", np.zeros(0, np.float32), SR)
    (folder / "text.wav").write_text("this is not audio\n" * 100)
    sf.write(folder / "rate16k.wav", harmonic(1.0, 200, rate=16000), 16000)
    sf.write(folder / "stereo.wav", harmonic(1.0, 250, channels=2), SR)
    sf.write(folder / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(folder / "clipping.wav", np.clip(4 * harmonic(1.0, 150), -1, 1), SR)
    sf.write(folder / "short.wav", harmonic(0.01, 200), SR)
    nonfinite = harmonic(1.0, 200)
    nonfinite[100] = np.nan
    sf.write(folder / "nonfinite.wav", nonfinite, SR, subtype="FLOAT")
    return folder


BAD_REASONS = {
    "empty.wav": "empty file",
    "no-samples.wav": "no samples",
    "nonfinite.wav": "non-finite samples",
    "short.wav": "shorter than a crop (0.01 s < 0.02 s)",
    "silent.wav": "silent",
    "truncated.wav": "truncated: the header declares 44100 bytes of audio, the file holds 10992",
}


def test_bad_files_are_skipped_once_and_convertible_ones_kept(bad_corpus, caplog):
    recipe = recipe_from_dict(make_recipe(bad_corpus))
    files = sorted(bad_corpus.iterdir())
    data = AudioCrops(files, recipe.mel, recipe.data.crop_frames)
    reasons = {Path(p).name: r for p, r in data.skipped}
    assert set(reasons) == set(BAD_REASONS) | {"text.wav", "truncated.flac"}
    assert {k: v for k, v in reasons.items() if k in BAD_REASONS} == BAD_REASONS
    assert reasons["text.wav"] == "not readable audio (Format not recognised.)"
    assert reasons["truncated.flac"] == ("not a readable audio file (Error : flac decoder lost sync.); expected wav, "
                                         "flac, ogg or mp3")  # its header is whole: only decoding finds the cut
    assert sorted(Path(p).name for p in data.files) == [
        "clipping.wav", "good0.wav", "good1.wav", "good2.wav", "rate16k.wav", "stereo.wav"]
    left, right = recipe.mel.pad
    kept = {Path(p).name: a[left: len(a) - right] for p, a in zip(data.files, data.audio)}
    assert len(kept["rate16k.wav"]) == SR  # resampled to 22050 Hz
    # The mean of the channels; a PCM_16 file keeps each within one int16 step (1 / 32768), so their mean too.
    np.testing.assert_allclose(kept["stereo.wav"], 0.75 * harmonic(1.0, 250), atol=1 / 32768 + 1e-7)
    assert data.clipping == [str(bad_corpus / "clipping.wav")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0].startswith(f"skipped 8 of {len(files)} files: ")
    assert warnings[1] == (f"kept 1 file(s) that clip (over 0.1% of samples at full scale): "
                           f"{bad_corpus / 'clipping.wav'}")
    for name in [*reasons, "clipping.wav"]:  # each reported once, by name
        assert sum(m.count(str(bad_corpus / name)) for m in caplog.messages) == 1, name


def test_training_proceeds_on_the_good_files(tmp_path, bad_corpus, caplog):
    caplog.set_level(logging.INFO, logger="audiodiff")
    last = train(recipe_from_dict(make_recipe(bad_corpus, max_steps=2)), tmp_path / "run", progress=False)
    assert load(last)["step"] == 2
    assert any(m.startswith("training on 6 files") for m in caplog.messages)
    for name in [*BAD_REASONS, "text.wav", "truncated.flac", "clipping.wav"]:
        assert sum(m.count(str(bad_corpus / name)) for m in caplog.messages) == 1, name


# --- 5. bad inference input -------------------------------------------------------------------------------------
def frames(n, bands=16, dtype=np.float32, fill=-5.0):
    return np.full((bands, n), fill, dtype)


BAD_MELS = {
    "wrong-bands": (frames(40, bands=20), "mel has 20 bands; this model expects 16 (shape [16, frames]); make the "
                                          "mel with the model's preset"),
    "transposed": (frames(40).T, "mel looks transposed: shape (40, 16) is [frames, bands]; expected [16, "
                                 "frames]; pass mel.T"),
    "rank-1": (np.zeros(16, np.float32), "mel has 1 dimensions (16,); expected [16, frames] or [batch, 16, "
                                         "frames]"),
    "rank-4": (np.zeros((1, 1, 16, 4), np.float32), "mel has 4 dimensions (1, 1, 16, 4); expected [16, frames] "
                                                    "or [batch, 16, frames]"),
    "nan": (frames(40, fill=np.nan), "mel contains NaN or infinite values; check the acoustic model's output"),
    "inf": (frames(40, fill=-np.inf), "mel contains NaN or infinite values; check the acoustic model's output"),
    "int": (frames(40, dtype=np.int64), "mel has dtype int64; expected float log-mel values (convert with "
                                        "mel.astype(np.float32))"),
    "empty": (frames(0), "mel has 0 frames; expected at least one frame"),
    "batch": (np.stack([frames(4), frames(4)]), "synth writes one file: give a single mel [n_mels, frames], not a "
                                                "batch"),
}


@pytest.mark.parametrize("case", sorted(BAD_MELS))
def test_synth_rejects_bad_mel_with_one_line(tmp_path, tiny_model, capsys, case):
    mel, message = BAD_MELS[case]
    np.save(tmp_path / "mel.npy", mel)
    code, _, err = run_cli(capsys, "synth", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", tiny_model,
                           "--device", "cpu")
    assert_one_error_line(code, err, message)
    assert not (tmp_path / "out.wav").exists()


def bad_wav(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "no-samples":
        sf.write(path, np.zeros(0, np.float32), SR)
    elif case == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif case == "text":
        path.write_text("hello\n")
    elif case == "too-short":
        sf.write(path, np.zeros(10, np.float32), SR)
    return path


BAD_WAV_MESSAGES = {
    "missing": "{p}: no such file; check the path",
    "no-samples": "{p}: the file holds no samples; expected at least one audio frame",
    "too-short": "audio of 10 samples is too short for the mel front end; need more than 384 samples",
    "empty": "{p}: the file is empty (0 bytes); expected wav, flac, ogg or mp3 audio",
    "corrupt": "{p}: not a readable audio file (Error opening '{p}': Format not recognised.); expected wav, flac, "
               "ogg or mp3",
    "text": "{p}: not a readable audio file (Error opening '{p}': Format not recognised.); expected wav, flac, "
            "ogg or mp3",
}


@pytest.mark.parametrize("case", sorted(BAD_WAV_MESSAGES))
def test_mel_rejects_bad_audio_with_one_line(tmp_path, capsys, case):
    path = bad_wav(tmp_path, case)
    code, _, err = run_cli(capsys, "mel", path, tmp_path / "out.npy")
    assert_one_error_line(code, err, BAD_WAV_MESSAGES[case].format(p=path))
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("command", ["synth", "mel"])
def test_cli_process_prints_only_the_error_line(tmp_path, tiny_model, command):
    """The same contract in a real process: exit 1, one stderr line, no traceback, no warnings."""
    if command == "synth":
        np.save(tmp_path / "mel.npy", frames(40).T)
        args = ["synth", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", tiny_model, "--device", "cpu"]
        expected = BAD_MELS["transposed"][1]
    else:
        args = ["mel", bad_wav(tmp_path, "corrupt"), tmp_path / "out.npy"]
        expected = BAD_WAV_MESSAGES["corrupt"].format(p=args[1])
    proc = subprocess.run([sys.executable, "-m", "audiodiff", *map(str, args)], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", f"error: {expected}\n")


# --- 6. untrusted files -----------------------------------------------------------------------------------------
class Payload:
    """A pickle that creates ``marker`` when unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 2, "model": Payload(marker)}, path)
    return path


@pytest.mark.parametrize("given", ["newest", "--checkpoint"])
def test_export_refuses_pickle_checkpoint(tmp_path, capsys, caplog, given):
    marker, run_dir = tmp_path / "marker", tmp_path / "run"
    evil = malicious_checkpoint(ckpt.checkpoint_path(run_dir, 2), marker)
    extra = ["--checkpoint", evil] if given == "--checkpoint" else []
    code, _, err = run_cli(capsys, "export", run_dir, tmp_path / "out", *extra)
    assert_one_error_line(code, err)
    refused = (f"{evil} is not a loadable audiodiff checkpoint (it holds pickled code or objects, never loaded: "
               f"Unsupported global: GLOBAL io.open was not an allowed global by default); only checkpoints "
               f"written by audiodiff train are accepted")
    if given == "newest":
        assert_one_error_line(code, err, f"none of the 1 checkpoint(s) in {evil.parent} loads (newest: {refused}); "
                                         f"put back a good checkpoint, or move these away to start over")
        assert caplog.messages == [f"skipping {refused}"]
    else:
        assert_one_error_line(code, err, refused)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_resume_refuses_pickle_checkpoint_instead_of_starting_over(tmp_path, corpus):
    marker, run_dir = tmp_path / "marker", tmp_path / "run"
    evil = malicious_checkpoint(ckpt.checkpoint_path(run_dir, 2), marker)
    with pytest.raises(AudiodiffError, match=r"^none of the 1 checkpoint\(s\) in .* loads"):
        train(recipe_from_dict(make_recipe(corpus)), run_dir, progress=False)
    assert not marker.exists() and ckpt.list_checkpoints(run_dir) == [evil]


def test_model_loading_never_unpickles(tiny_model, monkeypatch):
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("model loading must not unpickle")

    for module, name in [(torch, "load"), (pickle, "load"), (pickle, "loads"), (np, "load")]:
        monkeypatch.setattr(module, name, forbidden)
    assert Vocoder.from_pretrained(tiny_model, device="cpu").n_mels == 16


TAMPERED = {
    "truncated weights": ("model.safetensors", lambda b: b[: len(b) // 2]),
    "garbage weights": ("model.safetensors", lambda b: os.urandom(len(b))),
    "wrong format": ("config.json", lambda b: b.replace(b'"audiodiff-vocoder"', b'"other-vocoder"')),
    "not json": ("config.json", lambda b: b"\x80not json"),
    "missing section": ("config.json", lambda b: json.dumps({"format": "audiodiff-vocoder"}).encode()),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_model_is_refused(tmp_path, tiny_model, capsys, case):
    model = tmp_path / "model"
    model.mkdir()
    for p in tiny_model.iterdir():
        (model / p.name).write_bytes(p.read_bytes())
    name, tamper = TAMPERED[case]
    (model / name).write_bytes(tamper((model / name).read_bytes()))
    np.save(tmp_path / "mel.npy", frames(8))
    code, _, err = run_cli(capsys, "synth", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model,
                           "--device", "cpu")
    assert_one_error_line(code, err)
    if name == "model.safetensors":
        assert err.startswith(f"error: {model / name}: weights do not load into the model its config describes (")
        assert err.endswith("); re-export the model\n")
    else:
        assert err.startswith(f"error: {model / name}: not a valid audiodiff model config (")
    if case == "wrong format":
        assert err.endswith("(format is 'other-vocoder', not 'audiodiff-vocoder')\n")


def test_config_with_wrong_types_is_refused_clearly(tmp_path, tiny_model, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for p in tiny_model.iterdir():
        (model / p.name).write_bytes(p.read_bytes())
    cfg = json.loads((model / "config.json").read_text())
    cfg["model"]["residual_layers"] = "many"
    (model / "config.json").write_text(json.dumps(cfg))
    np.save(tmp_path / "mel.npy", frames(8))
    code, _, err = run_cli(capsys, "synth", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model,
                           "--device", "cpu")
    assert err.startswith(f"error: {model / 'config.json'}: not a valid audiodiff model config (")


PYTHON_TAG = "!!python/object/apply:builtins.open [{marker}, w]"


@pytest.mark.parametrize("where", ["recipe", "run config.yaml"])
def test_yaml_python_tags_are_refused_not_executed(tmp_path, corpus, capsys, where):
    marker, run_dir = tmp_path / "marker", tmp_path / "run"
    recipe = write_recipe(tmp_path / "tiny.yaml", corpus)
    evil = recipe if where == "recipe" else run_dir / "config.yaml"
    run_dir.mkdir()
    evil.write_text(f"train:\n  seed: {PYTHON_TAG.format(marker=marker)}\n")
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")
    tag = "tag:yaml.org,2002:python/object/apply:builtins.open"
    detail = f"could not determine a constructor for the tag '{tag}'"
    assert_one_error_line(code, err, f"recipe {recipe} is not valid YAML: {detail}" if where == "recipe" else
                          f"{evil} is not a readable recipe ({detail}); restore it, or delete it to resume with "
                          f"this recipe's settings")
    assert not marker.exists()


def test_empty_run_config_is_refused_clearly(tmp_path, corpus, capsys):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus), tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("")
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")
    assert_one_error_line(code, err, f"{run_dir / 'config.yaml'} is not a readable recipe (empty); restore it, or "
                                     f"delete it to resume with this recipe's settings")


def test_set_override_python_tag_is_not_executed(tmp_path, corpus, capsys):
    marker = tmp_path / "marker"
    recipe = write_recipe(tmp_path / "tiny.yaml", corpus)
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", tmp_path / "run", "--set",
                           f"train.seed={PYTHON_TAG.format(marker=marker)}")
    assert_one_error_line(code, err)
    assert "python/object/apply:builtins.open" in err and not marker.exists()


def test_npy_pickle_is_refused(tmp_path, tiny_model, capsys):
    marker = tmp_path / "marker"
    np.save(tmp_path / "mel.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    code, _, err = run_cli(capsys, "synth", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", tiny_model)
    assert_one_error_line(code, err, f"{tmp_path / 'mel.npy'}: not a numpy .npy array (Object arrays cannot be "
                                     f"loaded when allow_pickle=False); save mels with np.save")
    assert not marker.exists()


@pytest.mark.parametrize("case", ["mel same-path", "mel symlink", "synth same-path", "synth symlink"])
def test_output_never_overwrites_input(tmp_path, tiny_model, capsys, case):
    command, link = case.split()
    if command == "mel":
        source = tmp_path / "in.wav"
        sf.write(source, harmonic(0.2, 200), SR)
    else:
        source = tmp_path / "in.npy"
        np.save(source, frames(8))
    target = source if link == "same-path" else tmp_path / ("alias.npy" if command == "mel" else "alias.wav")
    if link == "symlink":
        target.symlink_to(source)
    before = source.read_bytes()
    extra = ["--model", tiny_model] if command == "synth" else []
    code, _, err = run_cli(capsys, command, source, target, *extra)
    assert_one_error_line(code, err, f"output {target} is the input file; choose another output path"
                          if command == "mel" else f"output {target} would overwrite the input; give a .wav path")
    assert source.read_bytes() == before


def test_mel_output_hard_link_to_input_is_refused(tmp_path, capsys):
    source = tmp_path / "in.wav"
    sf.write(source, harmonic(0.2, 200), SR)
    before = source.read_bytes()
    os.link(source, tmp_path / "alias.npy")
    code, _, err = run_cli(capsys, "mel", source, tmp_path / "alias.npy")
    assert code == 1 and source.read_bytes() == before
