"""Pool `audiodiff eval --out` reports of the same model and data run with different seeds.

    python bench/seeds.py OUT/m16_6_r32_seed*.json [--markdown]

The sampler's noise and Griffin-Lim's initial phase both depend on the seed, and a metric such as F0 RMSE turns on
a few frames of a few files (docs/quality.md), so one seed can win or lose by chance. For each metric this prints
the mean over the seeds of the per-seed means, with the lowest and highest per-seed mean, for the model and for
the baseline when the reports have one. Reports of different data or settings are refused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

SAME = ("data", "sampler", "steps", "refine", "refine_momentum", "precision")  # must match for seeds to be pooled


def pool(reports: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``{"audiodiff" | baseline name: {metric: {"mean", "min", "max", "seeds"}}}`` over the reports."""
    first = reports[0]
    for rep in reports[1:]:
        differs = [k for k in SAME if rep.get(k) != first.get(k)]
        if differs:
            raise SystemExit(f"error: the reports differ in {', '.join(differs)}; pool only seeds of one setting")
    sources = {"audiodiff": [r["summary"] for r in reports]}
    if all("baseline" in r for r in reports):
        sources[first["baseline"]["name"]] = [r["baseline"]["summary"] for r in reports]
    out = {}
    for name, summaries in sources.items():
        metrics = [k for k in summaries[0] if all(k in s for s in summaries)]
        out[name] = {k: _stats([s[k]["mean"] for s in summaries]) for k in metrics}
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "seeds": len(values)}


def _cell(stats: dict | None) -> str:
    return "" if stats is None else f"{stats['mean']:.4g} ({stats['min']:.4g}-{stats['max']:.4g})"


def format_table(pooled: dict, markdown: bool = False) -> str:
    names = list(pooled)
    metrics = list(pooled[names[0]])
    rows = [[k] + [_cell(pooled[n].get(k)) for n in names] for k in metrics]
    head = ["metric"] + [f"{n}: mean of {pooled[n][metrics[0]]['seeds']} seeds (range)" for n in names]
    if markdown:
        return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + rows)
    width = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width)) for r in [head] + rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", type=Path, help="JSON reports written by `audiodiff eval --out`")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    missing = [str(p) for p in args.reports if not p.is_file()]
    if missing:
        sys.exit(f"error: no such report: {', '.join(missing)}; give the JSON files that `audiodiff eval --out` wrote")
    print(format_table(pool([json.loads(p.read_text()) for p in args.reports]), args.markdown))


if __name__ == "__main__":
    main()
