"""The training data loader alone: batches/s of the speech recipe (batch 16, 62-frame crops), preloaded or read
lazily from disk, to show that it stays ahead of a training step (a compiled bf16 step at batch 16 takes ~24 of
them a second on an H100: docs/benchmarks.md).

    python bench/loader_speed.py --data speech-22k/train [--preload false] [--workers 4] [--batches 500]
    python bench/loader_speed.py --data corpus/manifest.tsv --preload false --workers 14   # a 16-core GPU host

``--data`` is a folder, a file list or a manifest (``audiodiff data manifest``). ``--repeat K`` lists each file K
times (a larger corpus with the same files: more rows to draw from, the same disk reads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_markdown, describe, write_json  # noqa: E402

from audiodiff.config import load_recipe  # noqa: E402
from audiodiff.data import AudioCrops, is_manifest, read_manifest, scan, split_files  # noqa: E402
from audiodiff.training.data import make_loader  # noqa: E402
from audiodiff.training.distributed import Dist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--preload", choices=["true", "false"], default="false")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--batches", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--speed-perturb", type=float, default=0.0)
    ap.add_argument("--out")
    ap.add_argument("--md", help="append the rows as a markdown table to this file (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes/speech.yaml")
    listed = read_manifest(args.data) if is_manifest(args.data) else scan(split_files(args.data, None, 0)[0])
    if args.repeat > 1:
        listed = listed.select(np.tile(np.arange(len(listed)), args.repeat))
    ds = AudioCrops(listed, recipe.mel, recipe.data.crop_frames, preload=args.preload == "true",
                    speed_perturb=args.speed_perturb)
    loader = make_loader(ds, recipe.train.batch_size, 0, Dist(), args.workers, steps=args.batches + 20)
    it = iter(loader)
    for _ in range(20):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    rate = args.batches / (time.perf_counter() - t0)
    row = {**describe(), "bench": "loader", "cpus": os.cpu_count(), "preload": args.preload, "workers": args.workers,
           "files": len(listed), "hours": round(listed.seconds / 3600, 2), "speed_perturb": args.speed_perturb,
           "batches_per_s": rate, "audio_s_per_s": rate * recipe.train.batch_size * recipe.data.crop_frames
           * recipe.mel.hop_length / recipe.mel.sample_rate}
    print(row)
    if args.md:
        columns = ["device", "cpus", "commit", "preload", "workers", "hours", "batches_per_s", "audio_s_per_s"]
        append_markdown(args.md, "loader_speed.py " + " ".join(sys.argv[1:]), columns, [row])
    if args.out:
        write_json(row, args.out)


if __name__ == "__main__":
    main()
