"""Two training processes (torchrun, gloo on the CPU) on lazily read crops: the ranks draw disjoint slices of every
step's items, which are the items a single process would draw; rank 0 alone writes the manifest, the config and the
one checkpoint per step saved; rank 1 prints nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from audiodiff.audio.mel import mel_config
from audiodiff.data import AudioCrops, read_manifest

from conftest import REPO

SCRIPT = textwrap.dedent("""
    # `audiodiff train` through the CLI, each rank recording the items it draws (index and crop).
    import os, sys
    import torch
    from audiodiff import cli
    from audiodiff.data import AudioCrops

    drawn, original = {}, AudioCrops.__getitem__

    def getitem(self, index):
        item = original(self, index)
        if self.seed == 0:  # the training set (validation crops use seed + 1)
            drawn[index] = item["segment"]
        return item

    AudioCrops.__getitem__ = getitem
    try:
        cli.main(sys.argv[2:])
    except SystemExit as exit:
        assert exit.code in (0, None), exit.code
    torch.save(drawn, os.path.join(sys.argv[1], f"drawn{os.environ['RANK']}.pt"))
""")
BATCH, STEPS = 4, 3


def test_two_ranks_draw_disjoint_crops_and_write_one_checkpoint(tone_dir, tmp_path):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"residual_layers": 2, "residual_channels": 4, "embed_dim": 16},
        "data": {"crop_frames": 8, "num_workers": 0, "valid_files": 0, "preload": False},
        "train": {"batch_size": BATCH, "max_steps": STEPS, "checkpoint_every": 100, "log_every": 1}}))
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    run, logs = tmp_path / "run", tmp_path / "logs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--log-dir", str(logs), "--redirects", "3", str(script), str(tmp_path),
           "train", str(recipe), "--data", str(tone_dir), "--run-dir", str(run), "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    outputs = {p.parent.name + "/" + p.name: p.read_text() for p in logs.rglob("*.log")}
    assert proc.returncode == 0, proc.stderr[-3000:] + str(outputs)[-3000:]
    assert "resume" not in outputs["0/stderr.log"] and "step 3" in outputs["0/stderr.log"]  # rank 0 logs
    assert outputs["1/stdout.log"] == "" and outputs["1/stderr.log"] == "", outputs  # rank 1 is silent

    drawn = [torch.load(tmp_path / f"drawn{r}.pt") for r in (0, 1)]
    assert not drawn[0].keys() & drawn[1].keys()  # disjoint ...
    assert sorted(drawn[0].keys() | drawn[1].keys()) == list(range(BATCH * STEPS))  # ... and the whole batches
    assert sorted(drawn[1]) == [i for s in range(STEPS) for i in range(s * BATCH + BATCH // 2, (s + 1) * BATCH)]
    # Each is the item one process draws from the run's manifest, which rank 0 alone wrote.
    single = AudioCrops(read_manifest(run / "manifest.tsv"), mel_config("hifigan"), 8, seed=0, preload=False)
    assert single.num_files == 4
    for rank in (0, 1):
        assert all(torch.equal(crop, single[i]["segment"]) for i, crop in drawn[rank].items())
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"ckpt-{STEPS:08d}.pt"]
    written = sorted(p.name for p in run.iterdir() if p.name != ".lock")  # .lock: held while a trainer runs
    assert written == ["checkpoints", "config.yaml", "logs", "manifest.tsv"]
