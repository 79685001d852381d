"""Plot validation distance against wall-clock training time from a run's TensorBoard logs.

    python bench/plot_training_curve.py RUN_DIR/logs docs/training_curve.png [--point MIN DIST LABEL ...]

Minutes are the run's own training time: within each resumed segment the event wall-clock, segments joined
end to end (the time between device sessions is not counted). ``--point`` adds test-set measurements.
"""

from __future__ import annotations

import argparse
import glob

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def curve(log_dir: str, tag: str = "valid/distance"):
    """``[(minutes, step, value)]`` for ``tag``, joining resumed segments by their training-loss events."""
    points, offset = [], 0.0
    for path in sorted(glob.glob(f"{log_dir}/events*")):
        acc = EventAccumulator(path)
        acc.Reload()
        if "train/loss" not in acc.Tags()["scalars"]:
            continue
        loss = acc.Scalars("train/loss")
        start = loss[0].wall_time
        # the first logged step of the segment took (its step count / rate) before its event: estimate from
        # the segment's own rate so that joined segments do not overlap.
        if len(loss) > 1:
            rate = (loss[-1].step - loss[0].step) / max(1e-9, loss[-1].wall_time - start)
            prev_step = points[-1][1] if points else 0
            offset += max(0.0, (loss[0].step - prev_step) / rate) / 60 if points else loss[0].step / rate / 60
        if tag in acc.Tags()["scalars"]:
            points += [(offset + (e.wall_time - start) / 60, e.step, e.value) for e in acc.Scalars(tag)]
        offset += (loss[-1].wall_time - start) / 60
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log_dir")
    ap.add_argument("png")
    ap.add_argument("--point", nargs=3, action="append", default=[], metavar=("MIN", "DIST", "LABEL"))
    args = ap.parse_args()
    pts = curve(args.log_dir)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label="audiodiff, 1 validation clip (6 steps)")
    for minutes, dist, label in args.point:
        ax.plot(float(minutes), float(dist), "s" if "audiodiff" in label else "x", markersize=9, label=label)
    ax.set_xlabel("training time (minutes, H100)")
    ax.set_ylabel("reference distance (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.png)
    for p in pts:
        print(f"{p[0]:6.1f} min  step {p[1]:6d}  {p[2]:.4f}")


if __name__ == "__main__":
    main()
