"""The run directory: one trainer at a time (an OS lock that a killed trainer never leaves behind), and resuming with
changed settings, each either applied (and recorded) or refused before anything is written. Set-up and helpers are
those of tests/test_reliability.py; docs/reliability.md lists the cases.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from audiodiff.config import recipe_from_dict
from audiodiff.errors import AudiodiffError
from audiodiff.training import checkpoint as ckpt
from audiodiff.training import loop
from audiodiff.training.loop import train
from audiodiff.training.state import lr_factor

from test_reliability import (  # noqa: F401 (corpus, hook, reference, spawn: fixtures)
    MAX_STEPS, STEP_DELAY, assert_matches_reference, assert_one_error_line, corpus, hook, load, make_recipe,
    reference, run_cli, spawn, temporaries, write_recipe,
)

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def snapshot(run_dir: Path) -> dict:
    """Every file of the run directory but the lock, with its bytes and modification time."""
    return {str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


# --- one trainer per run directory ------------------------------------------------------------------------------
def test_second_trainer_is_refused_naming_the_first(tmp_path, corpus, reference, spawn):
    recipe = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=1000, keep_checkpoints=1000)
    run_dir = tmp_path / "run"
    first = spawn(recipe, run_dir, STEP_DELAY)
    first.wait_for(lambda: 3 in first.steps())
    config = (run_dir / "config.yaml").read_bytes(), (run_dir / "config.yaml").stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-m", "audiodiff", "train", str(recipe), "--run-dir", str(run_dir),
                             "--no-progress"], capture_output=True, text=True, timeout=120)
    assert first.proc.poll() is None, "the first trainer should still be running"
    assert second.returncode == 1 and second.stdout == ""
    command = f"audiodiff train {recipe} --run-dir {run_dir} --no-progress"
    assert re.fullmatch(rf"error: {re.escape(str(run_dir))} is in use by another audiodiff train \(pid "
                        rf"{first.proc.pid}, started {STAMP}: {re.escape(command)}\); wait for it to finish or pass "
                        rf"another --run-dir\n", second.stderr), second.stderr
    first.signal_group(signal.SIGINT)
    code, _ = first.finish()
    assert code == 130
    assert ((run_dir / "config.yaml").read_bytes(), (run_dir / "config.yaml").stat().st_mtime_ns) == config
    steps = [load(p)["step"] for p in ckpt.list_checkpoints(run_dir)]  # every checkpoint of the first is whole
    assert steps[:6] == [2, 4, 6, 8, 10, 12] and steps[-1] == first.steps()[-1]
    for path in ckpt.list_checkpoints(run_dir)[:6]:
        assert_matches_reference(load(path), reference)
    assert temporaries(run_dir) == []
    assert (run_dir / ".lock").read_text() == ""  # released, description cleared


def test_killed_trainer_leaves_no_stale_lock(tmp_path, corpus, reference, spawn):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus), tmp_path / "run"
    first = spawn(recipe, run_dir, STEP_DELAY)
    first.wait_for(lambda: 3 in first.steps())
    first.signal_group(signal.SIGKILL)
    assert first.finish()[0] == -signal.SIGKILL
    assert f'"pid": {first.proc.pid}' in (run_dir / ".lock").read_text()  # the file stays; its lock went
    again = spawn(recipe, run_dir)
    code, out = again.finish()
    assert code == 0, again.lines[-3:]
    assert any(ln.startswith(f"resumed from {run_dir / 'checkpoints'}") for ln in again.lines)
    assert_matches_reference(load(run_dir / "checkpoints" / f"ckpt-{MAX_STEPS:08d}.pt"), reference)


HOLDER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from audiodiff.training.lock import run_lock

    with run_lock(Path(sys.argv[1])):
        child = os.fork()  # inherits the descriptor, as a data-loader worker does
        if child == 0:
            time.sleep(120)
            os._exit(0)
        print(child, flush=True)
        time.sleep(120)
""")


def test_lock_goes_with_its_process_not_with_forked_children(tmp_path):
    from audiodiff.training.lock import run_lock

    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        child = int(holder.stdout.readline())
        with pytest.raises(AudiodiffError, match=rf"is in use by another audiodiff train \(pid {holder.pid}, "):
            with run_lock(run_dir):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        os.kill(child, 0)  # the forked child still runs, and still has the lock file open
        with run_lock(run_dir) as path:
            assert f'"pid": {os.getpid()}' in path.read_text()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(30)


# --- resuming with changed settings -----------------------------------------------------------------------------
def record_optimizer_settings(monkeypatch) -> list[tuple[float, float]]:
    """The (lr, weight_decay) each training step's optimizer update uses."""
    used, real = [], loop.backward

    def backward(loss, net, opt, *args):
        used.append((opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]))
        return real(loss, net, opt, *args)

    monkeypatch.setattr(loop, "backward", backward)
    return used


def test_resume_applies_and_records_a_changed_learning_rate(tmp_path, corpus, reference, monkeypatch, capsys,
                                                            caplog):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=4), tmp_path / "run"
    assert run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")[0] == 0
    used = record_optimizer_settings(monkeypatch)
    caplog.set_level(logging.INFO, logger="audiodiff")
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress", "--set", "train.lr=0.5",
                           "--set", "train.weight_decay=0.01", "--set", "train.max_steps=6")
    assert code == 0, err
    assert used == [(0.5, 0.01), (0.5, 0.01)]  # steps 5 and 6, after the warm-up
    assert [m for m in caplog.messages if m.startswith("resume: ")] == [
        "resume: train.lr 0.001 -> 0.5", "resume: train.weight_decay 0.0 -> 0.01", "resume: train.max_steps 4 -> 6"]
    state = load(run_dir / "checkpoints" / "ckpt-00000006.pt")
    group = state["optimizer"]["param_groups"][0]
    assert (group["lr"], group["initial_lr"], group["weight_decay"]) == (0.5, 0.5, 0.01)
    assert state["scheduler"]["base_lrs"] == [0.5]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    for record in (state["recipe"]["train"], saved):
        assert (record["lr"], record["weight_decay"], record["max_steps"]) == (0.5, 0.01, 6)
    assert_matches_reference(load(run_dir / "checkpoints" / "ckpt-00000004.pt"), reference)  # untouched


def test_resume_recomputes_a_cosine_curve_for_new_max_steps(tmp_path, corpus, monkeypatch):
    run_dir = tmp_path / "run"
    train(recipe_from_dict(make_recipe(corpus, max_steps=4, lr_decay="cosine")), run_dir, progress=False)
    used = record_optimizer_settings(monkeypatch)
    longer = recipe_from_dict(make_recipe(corpus, max_steps=6, lr_decay="cosine"))
    train(longer, run_dir, progress=False)
    # The first run's curve reached 0 at its step 4; the resumed steps follow the curve that ends at step 6.
    expected = [1e-3 * lr_factor(s, longer.train) for s in (4, 5)]
    assert [lr for lr, _ in used] == pytest.approx(expected, rel=1e-12)
    assert expected[0] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))


def test_resume_switches_to_fp16_with_a_fresh_grad_scaler(tmp_path, corpus, caplog):
    run_dir = tmp_path / "run"
    train(recipe_from_dict(make_recipe(corpus, max_steps=2)), run_dir, progress=False)
    caplog.set_level(logging.INFO, logger="audiodiff")
    last = train(recipe_from_dict(make_recipe(corpus, max_steps=4, precision="fp16")), run_dir, progress=False)
    assert "resume: train.precision auto -> fp16" in caplog.messages
    state = load(last)
    assert state["step"] == 4 and state["scaler"]["scale"] > 0 and state["recipe"]["train"]["precision"] == "fp16"


@pytest.mark.parametrize("override, old", [("train.seed=5", "0"), ("train.init=pretrained", "null"),
                                           ("data.labels=prefix", "null")])
def test_resume_refuses_a_fixed_setting_and_writes_nothing(tmp_path, corpus, capsys, override, old):
    from audiodiff.training.resume import REFUSED

    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=2), tmp_path / "run"
    assert run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")[0] == 0
    before = snapshot(run_dir)
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress", "--set", override)
    key, new = override.split("=")
    assert_one_error_line(code, err, f"{key} is {old} in the run being resumed "
                                     f"({run_dir / 'checkpoints' / 'ckpt-00000002.pt'}) and cannot change to {new}: "
                                     f"{REFUSED[key]}; set it back to {old}, or pass another --run-dir to start a "
                                     f"new run")
    assert snapshot(run_dir) == before


def test_resume_refuses_other_model_settings_even_without_config_yaml(tmp_path, corpus, capsys):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=2), tmp_path / "run"
    assert run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")[0] == 0
    (run_dir / "config.yaml").unlink()  # the checkpoint still knows what it was trained with
    before = snapshot(run_dir)
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress",
                           "--set", "model.residual_channels=8")
    assert_one_error_line(code, err, f"{run_dir} holds a run with different model settings (model.residual_channels "
                                     f"4 -> 8, checkpoint ckpt-00000002.pt); use a new --run-dir or the same recipe")
    assert snapshot(run_dir) == before


def test_a_run_without_a_checkpoint_is_compared_with_its_config_yaml(tmp_path, corpus, capsys):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=2), tmp_path / "run"
    run_dir.mkdir()  # a run stopped before its first checkpoint: config.yaml is its only record
    resolved = recipe_from_dict(yaml.safe_load(recipe.read_text())).to_dict()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved))
    before = snapshot(run_dir)
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress",
                           "--set", "model.residual_channels=8", "--set", "train.lr=0.5")
    assert_one_error_line(code, err, f"{run_dir} holds a run with different model settings (model.residual_channels "
                                     f"4 -> 8, config.yaml); use a new --run-dir or the same recipe")
    assert snapshot(run_dir) == before
    code, _, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress", "--set", "train.lr=0.5")
    assert code == 0, err  # train and data settings: nothing was trained with the old ones
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["lr"] == 0.5


def test_a_checkpoint_not_config_yaml_is_what_a_run_resumes_from(tmp_path, corpus, capsys):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=2), tmp_path / "run"
    assert run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")[0] == 0
    (run_dir / "config.yaml").write_text("")  # a damaged record: the checkpoint's recipe is the source of truth
    code, out, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress", "--set",
                             "train.max_steps=3")
    assert code == 0, err
    assert [p.name for p in ckpt.list_checkpoints(run_dir)][-1] == "ckpt-00000003.pt"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["max_steps"] == 3  # rewritten whole


def test_run_already_at_max_steps_is_done(tmp_path, corpus, capsys):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=2), tmp_path / "run"
    assert run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")[0] == 0
    before = load(run_dir / "checkpoints" / "ckpt-00000002.pt")
    for extra in ((), ("--set", "train.max_steps=1")):
        code, out, _ = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress", *extra)
        assert code == 0 and out.startswith(f"done: checkpoint {run_dir / 'checkpoints' / 'ckpt-00000002.pt'};")
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["ckpt-00000002.pt"]
    assert_matches_reference(load(run_dir / "checkpoints" / "ckpt-00000002.pt"), {2: before})


def test_every_train_and_data_setting_has_a_resume_policy():
    from audiodiff.config import DataConfig, FewStepConfig, TrainConfig
    from audiodiff.training.resume import APPLIED, REFUSED

    keys = {f"train.{f.name}" for f in dataclasses.fields(TrainConfig)} | \
        {f"data.{f.name}" for f in dataclasses.fields(DataConfig)} | \
        {f"fewstep.{f.name}" for f in dataclasses.fields(FewStepConfig)}  # fields, not ClassVars such as RULES
    assert set(APPLIED) | set(REFUSED) == keys and not set(APPLIED) & set(REFUSED)
