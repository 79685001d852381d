"""bench/seeds.py pools eval reports of several seeds: means of the per-seed means, their range, and refusal
of reports that were not run with the same settings."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from seeds import format_table, pool  # noqa: E402


def report(f0: float, gl_f0: float, steps: int = 6) -> dict:
    summary = {"f0_rmse_cents": {"mean": f0, "ci95": 1.0, "n": 20}, "stoi": {"mean": 0.97, "ci95": 0.01, "n": 20}}
    baseline = {"f0_rmse_cents": {"mean": gl_f0, "ci95": 1.0, "n": 20}}
    return {"data": "test", "sampler": "fast", "steps": steps, "refine": 32, "precision": "auto",
            "summary": summary, "baseline": {"name": "griffinlim", "summary": baseline}}


def test_pools_the_per_seed_means_of_model_and_baseline():
    pooled = pool([report(30.0, 40.0), report(45.0, 44.0), report(33.0, 39.0)])
    assert pooled["audiodiff"]["f0_rmse_cents"] == {"mean": 36.0, "min": 30.0, "max": 45.0, "seeds": 3}
    assert pooled["griffinlim"]["f0_rmse_cents"] == pytest.approx({"mean": 41.0, "min": 39.0, "max": 44.0,
                                                                    "seeds": 3})
    assert "stoi" in pooled["audiodiff"] and "stoi" not in pooled["griffinlim"]
    table = format_table(pooled, markdown=True)
    assert "| f0_rmse_cents | 36 (30-45) | 41 (39-44) |" in table


def test_refuses_reports_of_different_settings():
    with pytest.raises(SystemExit, match="differ in steps"):
        pool([report(30.0, 40.0), report(30.0, 40.0, steps=50)])
