"""Copy-synthesis quality on a test folder: the reference distance (docs/benchmarks.md) for one model or for
every checkpoint of a run (time-to-quality), plus the Griffin-Lim floor.

    python bench/quality.py --model DIR --data speech-22k/test [--steps 6 50] [--refine 0] [--out q.json]
    python bench/quality.py --run RUN_DIR --data speech-22k/valid --steps 6 --out curve.json --png curve.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe, write_json  # noqa: E402

from audiodiff.eval.copysynth import evaluate  # noqa: E402
from audiodiff.training.checkpoint import list_checkpoints, load_checkpoint  # noqa: E402
from audiodiff.training.export import export  # noqa: E402
from audiodiff.vocoder import Vocoder  # noqa: E402


def score(voc, data, steps, baseline=None, limit=16):
    rep = evaluate(voc, data, steps=steps, sampler="fast" if steps <= 8 else "ddpm", limit=limit, full=False,
                   baseline=baseline, progress=False)
    out = {"steps": steps, **{k: v["mean"] for k, v in rep["summary"].items()}}
    if baseline:
        out["griffinlim"] = {k: v["mean"] for k, v in rep["baseline"]["summary"].items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--run")
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, nargs="+", default=[6, 50])
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--refine", type=int, help="mel-consistency iterations (0: the network's raw output, as the "
                    "reference DiffWave's rows of docs/benchmarks.md) [default: the Vocoder's]")
    ap.add_argument("--weights", choices=["ema", "model"], default="ema",
                    help="with --run: the EMA of the weights (what export writes) or the trained weights themselves")
    ap.add_argument("--out")
    ap.add_argument("--png", help="with --run: plot distance against training minutes into this PNG")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = {**describe(), "data": args.data, "refine": args.refine, "rows": []}
    if args.model:
        voc = Vocoder.from_pretrained(args.model, device=device, refine=args.refine)
        for i, steps in enumerate(args.steps):
            row = score(voc, args.data, steps, "griffinlim" if i == 0 else None, args.limit)
            result["rows"].append(row)
            print(row, flush=True)
    else:
        for path in list_checkpoints(Path(args.run)):
            minutes = float(load_checkpoint(path)["elapsed"]) / 60
            with tempfile.TemporaryDirectory() as tmp:
                voc = Vocoder.from_pretrained(export(args.run, tmp, checkpoint=path, weights=args.weights), device=device,
                                              refine=args.refine)
                for steps in args.steps:
                    row = {"checkpoint": path.name, "minutes": minutes, **score(voc, args.data, steps,
                                                                                 limit=args.limit)}
                    result["rows"].append(row)
                    print(row, flush=True)
    if args.out:
        write_json(result, args.out)
    if args.png and args.run:
        plot(result["rows"], args.png)


def plot(rows, png) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for steps in sorted({r["steps"] for r in rows}):
        pts = [(r["minutes"], r["reference_distance"]) for r in rows if r["steps"] == steps]
        ax.plot(*zip(*pts), "o-", label=f"{steps} steps")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("reference distance (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)


if __name__ == "__main__":
    main()
