"""Shared helpers for the benchmarks: device timing, environment description, result files."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def describe() -> dict:
    """Device name, torch version and git commit, for every result row."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return {"device": device, "torch": torch.__version__, "commit": commit}


def timed(fn, repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of ``fn()``, timed with CUDA events on GPU (after warm-up), wall clock on CPU."""
    for _ in range(warmup):
        fn()
    times = []
    cuda = torch.cuda.is_available()
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_json(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def append_markdown(path, title: str, columns: list[str], rows: list[dict]) -> None:
    """Append ``rows`` as a markdown table under ``### title`` to ``path`` (device, torch and commit included)."""
    path = Path(path)
    lines = [f"\n### {title}\n", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n")


def add_copysynth_args(ap, seeds: list[int]) -> None:
    """The options of the benches that vocode a test split and score it on the CPU (f0_frames, refine_variants)."""
    ap.add_argument("--data", required=True, help="a folder of recordings (e.g. speech-16k-multi/test)")
    ap.add_argument("--model", help="an exported vocoder [default: the bundled one]")
    ap.add_argument("--seeds", type=int, nargs="+", default=seeds)
    ap.add_argument("--limit", type=int, default=0, help="first N files in sorted order (0: all)")
    ap.add_argument("--device", help="cpu or cuda [default: cuda when available]")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--out", help="write the per-file rows and the summaries here (JSON)")


def _own_numba_cache() -> None:  # parallel writers to one numba cache once crashed the suite (copysynth_suite.sh)
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-")


def metric_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for CPU metrics (pYIN dominates): spawned, since the parent may hold CUDA, and each with
    its own numba cache. A module that submits to it imports librosa inside its functions, not at the top: the
    workers import that module before their initializer runs."""
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_own_numba_cache)
