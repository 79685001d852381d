"""Memory bounded whatever the corpus size: 5 training steps on a 50-hour manifest (eight generated 10 s files
listed 18,000 times: 15.9 GB as float32) in a fresh process with two loader workers: each process's peak RSS under
2 GB, and all of them together within 256 MiB of the same run on 80 s of audio."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import yaml

from audiodiff.data import read_manifest, scan, write_manifest

from conftest import REPO, SR, harmonic, peak_rss_env, write_wav

HOURS, LIMIT = 50, 2 * 2**30

SCRIPT = textwrap.dedent("""
    import logging, resource, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    from audiodiff.config import load_recipe
    from audiodiff.training import train
    last = train(load_recipe(sys.argv[1]), sys.argv[2], device="cpu", progress=False)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest reaped loader worker
    print(f"RESULT {last.name} {workers}")
""")


def _peak_rss(manifest, folder) -> tuple[int, int]:
    """Bytes: the peak RSS of the main process and of the largest loader worker, while training 5 steps on
    ``manifest`` (``data.preload: auto``) in a fresh process."""
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"residual_layers": 2, "residual_channels": 4, "embed_dim": 16},
        "data": {"manifest": str(manifest), "crop_frames": 62, "num_workers": 2, "valid_files": 0},
        "train": {"batch_size": 4, "max_steps": 5, "checkpoint_every": 5, "log_every": 1}}))
    env, peak = peak_rss_env(folder, {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(recipe), str(folder / "run")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    listed = read_manifest(manifest)
    assert f"data: {listed.seconds / 3600:.1f} h in {len(listed)} files" in proc.stdout
    name, workers = proc.stdout.split("RESULT ")[-1].split()
    assert name == "ckpt-00000005.pt"
    return int(peak.read_text()) * 1024, int(workers) * 1024  # both in KiB


def test_fifty_hours_train_in_bounded_memory(tmp_path):
    files = [write_wav(tmp_path / "audio" / f"f{i}.wav", harmonic(10.0, 100.0 + 30 * i, seed=i)) for i in range(8)]
    once = scan(files)
    rows = int(np.ceil(HOURS * 3600 / once.seconds))
    fifty = write_manifest(once.select(np.tile(np.arange(len(once)), rows)), tmp_path / "fifty-hours.tsv")
    listed = read_manifest(fifty)
    assert listed.seconds >= HOURS * 3600 and 4 * listed.samples_at(SR).sum() > 7 * LIMIT  # preloading: 15.9 GB
    small = _peak_rss(write_manifest(once, tmp_path / "small" / "once.tsv"), tmp_path / "small")  # 80 s, preloaded
    large = _peak_rss(fifty, tmp_path)
    assert max(large) < LIMIT, f"peak RSS (main, worker) {large[0] / 2**30:.2f}, {large[1] / 2**30:.2f} GiB"
    # Most of that is torch and the processes themselves (about 0.9 and 0.4 GiB): the corpus adds its manifest,
    # about 100 bytes a row, to each process. All three at their peaks at once, counting shared pages thrice:
    more = (large[0] + 2 * large[1]) - (small[0] + 2 * small[1])
    assert more < 256 * 2**20, f"{HOURS} h took {more / 2**20:.0f} MiB more than 80 s"
