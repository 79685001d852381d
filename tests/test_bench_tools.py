"""The bench helpers that interpret evaluations: bench/seeds.py pools eval reports of several seeds (means of the
per-seed means, their range, refusal of reports run with other settings); bench/f0_frames.py scores F0 on the
frames it says; bench/refine_variants.py reads its variants and compares F0 per file with Griffin-Lim; every bench
script imports."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from f0_frames import score, summarise  # noqa: E402
from refine_variants import f0_summary, parse_variant  # noqa: E402
from seeds import format_table, pool  # noqa: E402


def report(f0: float, gl_f0: float, steps: int = 6, momentum: float = 0.9) -> dict:
    summary = {"f0_rmse_cents": {"mean": f0, "ci95": 1.0, "n": 20}, "stoi": {"mean": 0.97, "ci95": 0.01, "n": 20}}
    baseline = {"f0_rmse_cents": {"mean": gl_f0, "ci95": 1.0, "n": 20}}
    return {"data": "test", "sampler": "fast", "steps": steps, "refine": 32, "refine_momentum": momentum,
            "precision": "auto", "summary": summary, "baseline": {"name": "griffinlim", "summary": baseline}}


def test_pools_the_per_seed_means_of_model_and_baseline():
    pooled = pool([report(30.0, 40.0), report(45.0, 44.0), report(33.0, 39.0)])
    assert pooled["audiodiff"]["f0_rmse_cents"] == {"mean": 36.0, "min": 30.0, "max": 45.0, "seeds": 3}
    # Means of small integers are exact in float64.
    assert pooled["griffinlim"]["f0_rmse_cents"] == {"mean": 41.0, "min": 39.0, "max": 44.0, "seeds": 3}
    assert "stoi" in pooled["audiodiff"] and "stoi" not in pooled["griffinlim"]
    table = format_table(pooled, markdown=True)
    assert "| f0_rmse_cents | 36 (30-45) | 41 (39-44) |" in table


def test_refuses_reports_of_different_settings():
    with pytest.raises(SystemExit, match="differ in steps"):
        pool([report(30.0, 40.0), report(30.0, 40.0, steps=50)])
    with pytest.raises(SystemExit, match="differ in refine_momentum"):
        pool([report(30.0, 40.0), report(30.0, 40.0, momentum=0.0)])


def test_f0_frames_drops_pinned_reference_frames_and_matches_frames_across_systems():
    nan = float("nan")
    # Frames 0-3 speech at 200 Hz; frame 4 hum that pYIN pins at the 65 Hz floor; frame 5 unvoiced.
    ref = (np.array([200.0, 200, 200, 200, 65, nan]), np.array([1, 1, 1, 1, 1, 0], bool))
    cents = lambda c: 200.0 * 2 ** (c / 1200)  # noqa: E731
    ours = (np.array([cents(10), cents(10), cents(10), cents(10), 80, nan]), np.array([1, 1, 1, 1, 1, 0], bool))
    base = (np.array([200.0, cents(20), nan, nan, 65, nan]), np.array([1, 1, 0, 0, 1, 0], bool))  # loses voicing
    s = score(ref, ours, base)
    hum = 1200 * np.log2(80 / 65)
    # Hand-computed float64 statistics of a few values: a few eps64 off; approx's 1e-6 relative is ample.
    assert s["as_defined"]["ours"] == pytest.approx(np.sqrt((4 * 10 ** 2 + hum ** 2) / 5))
    assert s["as_defined"]["base"] == pytest.approx(np.sqrt(20 ** 2 / 3))  # frames 0, 1 and the hum
    assert s["in_range"]["ours"] == pytest.approx(10.0) and s["in_range"]["frames_ours"] == 4
    assert s["in_range"]["base"] == pytest.approx(np.sqrt(20 ** 2 / 2)) and s["in_range"]["frames_base"] == 2
    assert s["matched"]["frames_ours"] == s["matched"]["frames_base"] == 2  # frames 0 and 1 only
    assert s["matched"]["ours"] == pytest.approx(10.0)
    summary = summarise([s, s])
    assert summary["in_range"]["model_better"] == 2 and summary["matched"]["files"] == 2


def test_refine_variants_reads_iterations_and_momentum_and_refuses_the_rest():
    import argparse

    assert parse_variant("32:0.9") == (32, 0.9) and parse_variant("8") == (8, 0.0)
    for bad in ("32:1", "x:0.5", "-1:0"):
        with pytest.raises(argparse.ArgumentTypeError, match="ITERATIONS:MOMENTUM|momentum in"):
            parse_variant(bad)


def test_refine_variants_averages_seeds_per_file_before_comparing_with_griffin_lim():
    def row(file, seed, ours, gl):
        return {"file": file, "seed": seed, "32:0.9": {"f0_rmse_cents": ours}, "griffinlim": {"f0_rmse_cents": gl}}

    # File a: ours 10 and 30 (mean 20) against 25; file b: 40 against 30 and 34 (32); file c: 12 (one finite seed)
    # against 14.
    rows = [row("a", 0, 10.0, 25.0), row("a", 1, 30.0, 25.0), row("b", 0, 40.0, 30.0), row("b", 1, 40.0, 34.0),
            row("c", 0, 12.0, 14.0), row("c", 1, float("nan"), 14.0)]
    s = f0_summary(rows, ["32:0.9", "griffinlim"])["32:0.9"]
    assert s["files"] == 3 and s["better_than_gl"] == 2  # a and c
    assert s["mean"] == (20 + 40 + 12) / 3 and s["median"] == 20.0  # means of small integers: exact
    low, high = s["diff_ci95"]  # the differences are -5, +8, -2
    assert -5 <= low < (8 - 5 - 2) / 3 < high <= 8


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "bench").glob("*.py")))
def test_every_bench_script_imports(script):
    """A bench runs on a device call whose minutes are scarce: a name that moved in the package must fail here, not
    there (bench/synth_speed.py once imported REFINE_ITERATIONS from where it no longer was)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{script[:-3]}", REPO / "bench" / script)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
