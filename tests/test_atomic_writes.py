"""Every file the CLI writes appears whole or not at all (``audiodiff/atomic.py``), a full disk is one line that
names the path and keeps the earlier file, an unwritable output folder is found before the work starts, and new
files respect the umask. docs/reliability.md lists the cases.

Full disks are real: a small tmpfs mounted for the test and filled to the last page (needs root and a kernel that
lets the test mount; skipped, saying why, otherwise). A read-only folder is a tmpfs remounted read-only as root (the
permission bits do not stop root), ``chmod 555`` otherwise.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from audiodiff import atomic
from audiodiff.audio.mel import MelConfig
from audiodiff.cli import main
from audiodiff.config import DiffusionConfig, ModelConfig, recipe_from_dict
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone
from audiodiff.melgen import MelGenerator
from audiodiff.training import checkpoint as ckpt
from audiodiff.training.loop import train
from conftest import harmonic, tiny_vocoder, write_wav

RECIPE = {  # the tiny run of tests/test_reliability.py: 16 bands, hop 64, crops of 8 frames
    "mel": {"preset": "hifigan", "n_fft": 256, "win_length": 256, "hop_length": 64, "n_mels": 16},
    "model": {"residual_layers": 2, "residual_channels": 4, "dilation_cycle": 2, "embed_dim": 16},
    "data": {"valid_files": 0, "crop_frames": 8, "num_workers": 0},
    "train": {"batch_size": 2, "lr": 1e-3, "warmup_steps": 2, "max_steps": 2, "checkpoint_every": 2,
              "keep_checkpoints": 3, "log_every": 1, "valid_every": 10**6},
}
NO_SPACE = "No space left on device; free disk space or fix the folder's permissions"


# --- helpers ----------------------------------------------------------------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def one_error_line(code: int, err: str) -> str:
    err = err.rsplit("\r", 1)[-1]  # after eval's progress bar, which it clears
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err[len("error: "):-1]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (relative name: bytes, None for folders)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def fill(folder: Path, leave: int = 0) -> None:
    """Write zeros into ``folder/filler`` until the file system is full, then free ``leave`` bytes (whole pages): a
    write larger than that then fails part-way, as when a disk fills up during it."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as err:
        assert err.errno == errno.ENOSPC
        os.ftruncate(fd, os.fstat(fd).st_size - leave)
    finally:
        os.close(fd)


@pytest.fixture
def tmpfs():
    """``mount(path, size)``: a fresh tmpfs at ``path``; ``read_only(path)`` remounts it read-only. Unmounted at
    teardown. Skips unless the test runs as root and mounting works."""
    mounted = []

    def mount(path: Path, size: str = "1m") -> Path:
        if os.geteuid() != 0:
            pytest.skip("a real full file system needs a tmpfs mount, and mounting needs root")
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(path)
        return path

    def read_only(path: Path) -> Path:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        return path

    mount.read_only = read_only
    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)]).returncode:
            subprocess.run(["umount", "-l", str(path)], check=True)


def make_generator(path: Path) -> Path:
    """A tiny class-conditional U-Net mel generator (8 kHz, 16 bands, 12-frame tiles) saved at ``path``."""
    torch.manual_seed(0)
    mel = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16, fmax=4000.0)
    model = ModelConfig(arch="unet2d", channels=8, channel_mults=(1, 2), blocks_per_level=1, embed_dim=16,
                        num_classes=3, image_frames=12)
    diffusion = DiffusionConfig(schedule="cosine", steps=100, sampler="ddim", sample_steps=2)
    return MelGenerator(build_backbone(model, mel), mel, model, diffusion).save_pretrained(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """What the commands read: a tiny vocoder, a mel, a folder with one tone, a recipe, a run with a checkpoint
    (step 2) and a mel generator."""
    root = tmp_path_factory.mktemp("inputs")
    data = root / "tones"
    write_wav(data / "tone.wav", harmonic(0.5))
    mel = root / "mel.npy"
    np.save(mel, np.random.default_rng(0).normal(-5, 1, (80, 8)).astype(np.float32))
    raw = yaml.safe_load(yaml.safe_dump(RECIPE))
    raw["data"]["path"] = str(data)
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    run = root / "run"
    train(recipe_from_dict(raw), run, progress=False)
    return {"model": tiny_vocoder().save_pretrained(root / "model"), "mel": mel, "data": data, "recipe": recipe,
            "run": run, "generator": make_generator(root / "generator"), "wav": data / "tone.wav"}


def command(name: str, folder: Path, inp: dict) -> tuple[list, Path, str]:
    """``(argv, the file or directory the command writes, its noun in errors)`` with the output in ``folder``."""
    return {
        "synth": (["synth", inp["mel"], folder / "out.wav", "--model", inp["model"], "--device", "cpu"],
                  folder / "out.wav", "audio file"),
        "mel": (["mel", inp["wav"], folder / "out.npy"], folder / "out.npy", "mel"),
        "eval": (["eval", inp["model"], inp["data"], "--fast", "--limit", 1, "--device", "cpu", "--out",
                  folder / "report.json"], folder / "report.json", "eval report"),
        "generate": (["generate", inp["generator"], folder, "--n", 1, "--steps", 2, "--vocoder", "griffinlim",
                      "--device", "cpu"], folder / "sample_000.wav", "audio file"),
        "export": (["export", inp["run"], folder / "model"], folder / "model", "model directory"),
        "tune-schedule": (["tune-schedule", folder, "--data", inp["data"], "--steps", 2, "--clips", 1, "--seconds",
                           0.2, "--passes", 1, "--device", "cpu"], folder / "config.json", "model config"),
        "train": (["train", inp["recipe"], "--run-dir", folder, "--no-progress"], folder / "config.yaml",
                  "run config"),
    }[name]


# What each command does first that is work (loading a model, reading audio, reading the run's data): an
# unwritable output must be reported before it.
WORK = {"synth": ("audiodiff.vocoder", "Vocoder.from_pretrained"), "mel": ("audiodiff.audio.io", "load_audio"),
        "eval": ("audiodiff.vocoder", "Vocoder.from_pretrained"),
        "generate": ("audiodiff.melgen", "MelGenerator.from_pretrained"),
        "export": ("audiodiff.training.export", "load_latest"),  # a module that the package's export() shadows
        "tune-schedule": ("audiodiff.eval.schedule_search", "load_clips"),
        "train": ("audiodiff.training.data", "split_files")}
COMMANDS = list(WORK)


class WorkStarted(BaseException):
    """Raised by the first piece of work; a BaseException, so that the CLI does not turn it into an error line."""


def stop_at_work(monkeypatch, name: str, output: Path) -> dict:
    """Make the command's first piece of work record whether the output's folder existed, then stop."""
    seen = {}

    def work(*args, **kwargs):
        seen["folder existed"] = output.parent.is_dir()
        raise WorkStarted

    module, attr = WORK[name]
    owner = importlib.import_module(module)
    for part in attr.split(".")[:-1]:
        owner = getattr(owner, part)
    monkeypatch.setattr(owner, attr.split(".")[-1], work)
    return seen


def previous_output(name: str, folder: Path, output: Path, inp: dict) -> None:
    """An earlier result at ``output``: a copy of a model for export and tune-schedule, the recipe for train."""
    if name == "export":
        shutil.copytree(inp["model"], output)
    elif name == "tune-schedule":
        for f in inp["model"].iterdir():
            shutil.copy(f, folder / f.name)
    elif name == "train":
        shutil.copy(inp["recipe"], output)
        # training/lock.py rewrites RUN/.lock with its holder's description before config.yaml is reached, and on a
        # full disk fails there with a bare OSError (reported to its owner); one page for it, so that this test
        # reaches the config.yaml write.
        (folder / ".lock").write_text(" " * 4096)
    else:
        output.write_bytes(b"an earlier result")


# --- 2. a checkpoint on a full disk ------------------------------------------------------------------------------
def test_checkpoint_on_a_full_disk_is_one_line_and_resumes(tmp_path, inputs, tmpfs, capsys):
    """The checkpoints folder is a 1 MB tmpfs: steps 2 and 4 are saved, then the disk is filled and step 6 fails.
    Where the space runs out decides what torch's zip writer did with the ENOSPC (raised it, or reported "unexpected
    pos"), so the write of step 6 is also tried with every number of free pages that cannot hold it."""
    run_dir = tmp_path / "run"
    folder = tmpfs(run_dir / "checkpoints")
    args = ["train", inputs["recipe"], "--run-dir", run_dir, "--no-progress"]
    assert run_cli(capsys, *args, "--set", "train.max_steps=4")[0] == 0
    size = (folder / "ckpt-00000004.pt").stat().st_size
    message = (f"could not write checkpoint {folder / 'ckpt-00000006.pt'}: {NO_SPACE}, then resume (earlier "
               f"checkpoints are intact)")
    fill(folder, leave=size // 2 // 4096 * 4096)
    before = snapshot(folder)
    code, _, err = run_cli(capsys, *args, "--set", "train.max_steps=6")
    assert one_error_line(code, err) == message
    assert snapshot(folder) == before  # no temporary left, steps 2 and 4 untouched
    state = ckpt.load_checkpoint(folder / "ckpt-00000004.pt")
    for pages in range(size // 4096):
        (folder / "filler").unlink()
        fill(folder, leave=pages * 4096)
        before = snapshot(folder)
        with pytest.raises(AudiodiffError) as info:
            ckpt.save_checkpoint(state, run_dir, 6)
        assert str(info.value) == message
        assert snapshot(folder) == before
    (folder / "filler").unlink()  # space freed: the same command resumes from step 4
    assert run_cli(capsys, *args, "--set", "train.max_steps=6")[0] == 0
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == [f"ckpt-{s:08d}.pt" for s in (2, 4, 6)]
    assert ckpt.load_checkpoint(folder / "ckpt-00000006.pt")["step"] == 6


# --- 3. every CLI output on a full disk ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", COMMANDS)
def test_full_disk_keeps_the_earlier_output(name, tmp_path, inputs, tmpfs, capsys):
    folder = tmpfs(tmp_path / "out")
    argv, output, what = command(name, folder, inputs)
    previous_output(name, folder, output, inputs)
    fill(folder)
    before = snapshot(folder)
    code, _, err = run_cli(capsys, *argv)
    assert one_error_line(code, err) == (f"could not write {what} {output}: {NO_SPACE}, then try again (the "
                                         f"earlier one is unchanged)")
    after = snapshot(folder)
    if name == "train":  # the lock empties its file when the run ends
        after[".lock"] = before[".lock"]
    assert after == before  # the earlier result unchanged; no temporary file or folder left


def test_synth_to_a_full_disk_leaves_no_partial_file(tmp_path, inputs, tmpfs, capsys):
    """Without an earlier file nothing is left (not a truncated wav whose header looks valid)."""
    folder = tmpfs(tmp_path / "out")
    fill(folder, leave=4096)  # one page; the wav takes 4,140 bytes
    code, _, err = run_cli(capsys, "synth", inputs["mel"], folder / "out.wav", "--model", inputs["model"],
                           "--device", "cpu")
    assert one_error_line(code, err) == (f"could not write audio file {folder / 'out.wav'}: {NO_SPACE}, then try "
                                         f"again (nothing was written)")
    assert sorted(p.name for p in folder.iterdir()) == ["filler"]


# --- 3. unwritable output folders are found before the work -------------------------------------------------------
@pytest.mark.parametrize("name", COMMANDS)
def test_read_only_output_folder_is_refused_before_the_work(name, tmp_path, inputs, tmpfs, monkeypatch, capsys):
    if os.geteuid() == 0:  # modes do not stop root: a read-only file system does
        folder = tmpfs(tmp_path / "out")
    else:
        folder = tmp_path / "out"
        folder.mkdir()
    argv, output, what = command(name, folder, inputs)
    if name == "tune-schedule":
        previous_output(name, folder, output, inputs)
    if os.geteuid() == 0:
        tmpfs.read_only(folder)
        cause = "Read-only file system"
    else:
        folder.chmod(0o555)
        cause = "Permission denied"
    stop_at_work(monkeypatch, name, output)
    try:
        code, _, err = run_cli(capsys, *argv)
    finally:
        if os.geteuid() != 0:
            folder.chmod(0o755)
    if name == "train":  # the run directory's lock (training/lock.py) is taken first, and finds it
        assert str(folder) in one_error_line(code, err) and f"({cause})" in err
        return
    assert one_error_line(code, err) == (f"cannot write {what} {output}: the folder {folder} is not writable "
                                         f"({cause}); choose another folder or make it writable")


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "tune-schedule"])  # its folder is the model's
def test_output_under_a_file_is_refused_before_the_work(name, tmp_path, inputs, monkeypatch, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    argv, output, what = command(name, blocker / "out", inputs)
    stop_at_work(monkeypatch, name, output)
    code, _, err = run_cli(capsys, *argv)
    if name == "train":  # the run directory's lock (training/lock.py) is taken first, and finds it
        assert str(output.parent) in one_error_line(code, err) and "(Not a directory)" in err
    else:
        assert one_error_line(code, err) == f"cannot write {what} {output}: {blocker} is a file, not a folder; " \
                                            f"choose another path"
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "tune-schedule"])
def test_missing_output_folders_are_created_before_the_work(name, tmp_path, inputs, monkeypatch):
    argv, output, _ = command(name, tmp_path / "new" / "deeper", inputs)
    seen = stop_at_work(monkeypatch, name, output)
    with pytest.raises(WorkStarted):
        main([str(a) for a in argv])
    assert seen["folder existed"]  # created first, so that a folder that cannot be made stops the command at once


def test_synth_output_that_is_a_folder_is_refused_before_the_work(tmp_path, inputs, monkeypatch, capsys):
    (tmp_path / "out.wav").mkdir()
    stop_at_work(monkeypatch, "synth", tmp_path / "out.wav")
    code, _, err = run_cli(capsys, "synth", inputs["mel"], tmp_path / "out.wav", "--model", inputs["model"])
    assert one_error_line(code, err) == f"cannot write audio file {tmp_path / 'out.wav'}: it is a folder; give a " \
                                        f"file path"


# --- 3. model directories ------------------------------------------------------------------------------------------
def test_export_over_an_earlier_export_replaces_it_whole(tmp_path, inputs, capsys):
    out = tmp_path / "exported"
    shutil.copytree(inputs["generator"], out / "vocoder")  # a stale paired model, and a stale tuned schedule
    shutil.copy(inputs["model"] / "model.safetensors", out / "model.safetensors")
    (out / "config.json").write_text('{"format": "audiodiff-vocoder", "tuned_schedules": {"2": [0.1, 0.5]}}')
    assert run_cli(capsys, "export", inputs["run"], out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert not json.loads((out / "config.json").read_text()).get("tuned_schedules")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no temporary or old folder left beside it


def test_export_into_a_folder_of_other_files_is_refused(tmp_path, inputs, capsys):
    out = tmp_path / "my-models"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "export", inputs["run"], out)
    assert one_error_line(code, err) == (f"cannot write model directory {out}: the folder exists and holds "
                                         f"'notes.txt', which is not part of a model directory; give a new folder, "
                                         f"or move its contents away")
    assert snapshot(out) == {"notes.txt": b"keep me"}


def test_model_directory_write_that_fails_midway_keeps_the_earlier_one(tmp_path, inputs, monkeypatch):
    """A failure after model.safetensors is written (the config write raises): the earlier export is untouched."""
    out = tmp_path / "model"
    shutil.copytree(inputs["model"], out)
    before = snapshot(out)

    class Interrupted(BaseException):  # not an OSError: an interruption, which must still clean up
        pass

    def fails(*args, **kwargs):
        raise Interrupted

    monkeypatch.setattr(Path, "write_text", fails)
    with pytest.raises(Interrupted):
        tiny_vocoder(seed=1).save_pretrained(out)  # other weights than the earlier model's
    monkeypatch.undo()
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# --- 10a. permissions follow the umask ------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_respect_the_umask(umask, tmp_path, inputs, capsys):
    old = os.umask(umask)
    try:
        assert run_cli(capsys, "export", inputs["run"], tmp_path / "model")[0] == 0
        assert run_cli(capsys, "synth", inputs["mel"], tmp_path / "out.wav", "--model", inputs["model"],
                       "--device", "cpu")[0] == 0
        saved = ckpt.save_checkpoint({"step": 1}, tmp_path / "run", 1)
    finally:
        os.umask(old)
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    for path in (saved, tmp_path / "model" / "model.safetensors", tmp_path / "model" / "config.json",
                 tmp_path / "out.wav"):
        assert oct(path.stat().st_mode & 0o777) == oct(file_mode), path
    assert oct((tmp_path / "model").stat().st_mode & 0o777) == oct(dir_mode)


# --- the module itself ---------------------------------------------------------------------------------------------
def test_atomic_write_failure_keeps_the_earlier_file_and_names_it(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    path.write_bytes(b"earlier")

    def broken(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(atomic.os, "replace", broken)
    with pytest.raises(AudiodiffError) as info:
        atomic.write_bytes(path, b"new", "result")
    monkeypatch.undo()
    assert str(info.value) == (f"could not write result {path}: Input/output error; free disk space or fix the "
                               f"folder's permissions, then try again (the earlier one is unchanged)")
    assert snapshot(tmp_path) == {"out.bin": b"earlier"}
    atomic.write_bytes(path, b"new")
    assert snapshot(tmp_path) == {"out.bin": b"new"}
