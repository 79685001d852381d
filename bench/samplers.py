"""Sampler x steps on a trained vocoder: reference distance (copy-synthesis of a test folder) and speed.

    python bench/samplers.py --model DIR --data speech-22k/test [--limit 8] [--out samplers.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe, write_json  # noqa: E402

from audiodiff.audio.io import load_audio  # noqa: E402
from audiodiff.data.files import find_audio_files  # noqa: E402
from audiodiff.errors import AudiodiffError  # noqa: E402
from audiodiff.eval.metrics import reference_distance  # noqa: E402
from audiodiff.vocoder import Vocoder  # noqa: E402

SAMPLERS = ("fast", "ddpm", "ddim", "dpmpp", "pc", "heun")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, nargs="+", default=[2, 4, 6, 12, 50])
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--out")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    voc = Vocoder.from_pretrained(args.model, device=device)
    refs = [load_audio(p, voc.sample_rate)[0] for p in find_audio_files(args.data)[: args.limit]]
    mels = [voc.mel(r).cpu().numpy() for r in refs]
    seconds = sum(len(r) for r in refs) / voc.sample_rate
    rows = []
    for sampler in args.samplers:
        for steps in args.steps:
            try:
                voc(mels[0], sampler=sampler, steps=steps, seed=0)  # warm-up
            except AudiodiffError as err:
                print(f"{sampler:6} {steps:3}: n/a ({err})", flush=True)
                continue
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            ests = [voc(m, sampler=sampler, steps=steps, seed=0) for m in mels]
            if device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            dist = float(np.mean([reference_distance(r, e) for r, e in zip(refs, ests)]))
            rows.append({"sampler": sampler, "steps": steps, "reference_distance": dist,
                         "x_real_time": seconds / dt})
            print(f"{sampler:6} {steps:3}: distance {dist:.4f}  {seconds / dt:8.1f}x real time", flush=True)
    if args.out:
        write_json({**describe(), "data": args.data, "files": len(refs), "rows": rows}, args.out)


if __name__ == "__main__":
    main()
