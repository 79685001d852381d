"""The training data loader alone: batches/s of the speech recipe (batch 16, 62-frame crops), to show that it
is not the bottleneck of a training step.

    python bench/loader_speed.py --data speech-22k/train [--workers 4] [--batches 500] [--out loader.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_markdown, describe, write_json  # noqa: E402

from audiodiff.config import load_recipe  # noqa: E402
from audiodiff.data import AudioCrops, split_files  # noqa: E402
from audiodiff.training.distributed import Dist  # noqa: E402
from audiodiff.training.loop import make_loader  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--batches", type=int, default=500)
    ap.add_argument("--out")
    ap.add_argument("--md", help="append the rows as a markdown table to this file (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes/speech.yaml")
    files, _ = split_files(args.data, None, 0)
    ds = AudioCrops(files, recipe.mel, recipe.data.crop_frames)
    loader = make_loader(ds, recipe.train.batch_size, 0, Dist(), args.workers, steps=args.batches + 20)
    it = iter(loader)
    for _ in range(20):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    rate = args.batches / (time.perf_counter() - t0)
    row = {**describe(), "bench": "loader", "workers": args.workers, "batches_per_s": rate,
           "audio_s_per_s": rate * recipe.train.batch_size * recipe.data.crop_frames * recipe.mel.hop_length
           / recipe.mel.sample_rate}
    print(row)
    if args.md:
        columns = ["device", "torch", "commit", "workers", "batches_per_s", "audio_s_per_s"]
        append_markdown(args.md, "loader_speed.py " + " ".join(sys.argv[1:]), columns, [row])
    if args.out:
        write_json(row, args.out)


if __name__ == "__main__":
    main()
