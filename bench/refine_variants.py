"""Which refinement settings? The bundled model's raw output refined several ways, next to Griffin-Lim.

    python bench/refine_variants.py --data $DATA/speech-16k-multi/test --variants 32:0 32:0.9 128:0.9 \
        [--seconds 5] [--seeds 0 1] [--cache DIR] [--device cpu] [--workers 2] [--out refine.json]

A variant is ITERATIONS:MOMENTUM of the mel-consistency refinement (`audio/refine.py`). The network's output does
not depend on it, so each file and seed is synthesised once, raw (`Vocoder(refine=0)`), and every variant refines
that same output; `--cache` keeps the raw outputs (one .npz per seed and file), so a later run with other variants
synthesises nothing. `--seconds` scores the first N seconds of each file (whole hops): on a 2-core CPU the network
takes 6-9 s per second of audio, the refinement and the metrics far less. The metrics are `audiodiff eval`'s
(`copysynth.metrics_of`; outputs of recordings made below the model's rate are limited to their band first) and run
in worker processes, with Griffin-Lim's initial phase drawn with each seed as in eval.

It prints each metric's mean over files and seeds for every system, then, for F0 RMSE with each file's seeds
averaged: the per-file median, the files where the variant beats Griffin-Lim, and a bootstrap 95% interval of the
mean difference from Griffin-Lim over files. Running time of the figures in docs/quality.md: see there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_copysynth_args, metric_pool  # noqa: E402

GL = "griffinlim"


def parse_variant(text: str) -> tuple[int, float]:
    """``"32:0.9"`` -> ``(32, 0.9)``; a bare ``"32"`` has no momentum."""
    iters, _, momentum = text.partition(":")
    try:
        out = int(iters), float(momentum or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give ITERATIONS:MOMENTUM, e.g. 32:0.9") from None
    if out[0] < 0 or not 0 <= out[1] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: iterations >= 0 and momentum in [0, 1)")
    return out


def score(ref, est, sr, mel_config, source_sr, gl_seed=None) -> dict:
    """`audiodiff eval`'s metrics of ``est`` (or, with ``gl_seed``, of Griffin-Lim from ``est``, a log-mel)."""
    from audiodiff.eval.copysynth import band_limit, griffin_lim, metrics_of

    if gl_seed is not None:
        est = griffin_lim(est, mel_config, seed=gl_seed)
    if source_sr < sr:
        est = band_limit(est, sr, source_sr)
    return metrics_of(ref, est, sr, mel_config)


def raw_output(voc, mel: np.ndarray, seed: int, seconds: float, cache: Path | None) -> np.ndarray:
    """The unrefined output for ``mel`` and ``seed``, from ``cache`` when it holds one made with ``seconds``."""
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            if float(stored["seconds"]) == seconds and stored["raw"].shape == (mel.shape[-1] * voc.hop_length,):
                return stored["raw"]
    raw = voc(mel, seed=seed)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, raw=raw, seconds=seconds)
        os.replace(tmp, cache)
    return raw


def f0_summary(rows: list[dict], names: list[str]) -> dict:
    """Per system: F0 RMSE per file with the seeds averaged; its mean, median, and against Griffin-Lim the files
    won and a bootstrap 95% interval of the mean difference."""
    files = sorted({r["file"] for r in rows})
    per_file = {n: [] for n in names}
    for f in files:
        for n in names:
            vals = [r[n]["f0_rmse_cents"] for r in rows if r["file"] == f and np.isfinite(r[n]["f0_rmse_cents"])]
            per_file[n].append(statistics.fmean(vals) if vals else float("nan"))
    rng = np.random.default_rng(0)
    out = {}
    for n in names:
        ours, base = np.array(per_file[n]), np.array(per_file[GL])
        ok = np.isfinite(ours) & np.isfinite(base)
        diff = ours[ok] - base[ok]
        boot = diff[rng.integers(0, len(diff), (10_000, len(diff)))].mean(axis=1)
        out[n] = {"mean": float(ours[ok].mean()), "median": float(np.median(ours[ok])),
                  "better_than_gl": int((diff < 0).sum()), "files": int(ok.sum()),
                  "diff_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_copysynth_args(ap, seeds=[0, 1])
    ap.add_argument("--variants", type=parse_variant, nargs="+", required=True, help="ITERATIONS:MOMENTUM ...")
    ap.add_argument("--seconds", type=float, default=0, help="score the first N seconds of each file (0: all)")
    ap.add_argument("--cache", type=Path, help="keep raw outputs here (DIR/seedS/PARENT__NAME.npz) for reuse")
    args = ap.parse_args()

    import soundfile as sf
    import torch

    from audiodiff.audio.io import load_audio
    from audiodiff.audio.refine import refine
    from audiodiff.data.files import find_audio_files
    from audiodiff.eval.copysynth import summarise
    from audiodiff.vocoder import Vocoder

    files = find_audio_files(args.data)
    files = files[:args.limit] if args.limit else files
    voc = Vocoder.from_pretrained(args.model, device=args.device, refine=0)
    sr, hop = voc.sample_rate, voc.hop_length
    names = [f"{i}:{m:g}" for i, m in args.variants] + [GL]
    pool = metric_pool(args.workers)
    jobs = []  # (file, seed, {system: future})
    for k, path in enumerate(files):
        ref, _ = load_audio(path, sr)
        if args.seconds:
            ref = ref[: int(args.seconds * sr) // hop * hop]
        mel = voc.mel(ref)
        source_sr = sf.info(str(path)).samplerate
        for seed in args.seeds:
            cache = args.cache / f"seed{seed}" / f"{Path(path).parent.parent.name}__{Path(path).stem}.npz" \
                if args.cache else None
            raw = torch.as_tensor(raw_output(voc, mel.cpu().numpy(), seed, args.seconds, cache), device=mel.device)
            futures = {GL: pool.submit(score, ref, mel.cpu().numpy(), sr, voc.mel_config, source_sr, seed)}
            for name, (iters, momentum) in zip(names, args.variants):
                est = refine(raw[None], mel[None], voc._mel_fn, iters, momentum=momentum).clamp(-1, 1)[0]
                futures[name] = pool.submit(score, ref, est.cpu().numpy(), sr, voc.mel_config, source_sr)
            jobs.append((Path(path).name, seed, futures))
        print(f"synthesised {k + 1}/{len(files)}", file=sys.stderr, flush=True)
    rows = [{"file": f, "seed": s, **{n: fut.result() for n, fut in futures.items()}} for f, s, futures in jobs]
    pool.shutdown()
    metrics = [k for k, v in rows[0][GL].items() if v is not None]
    means = {n: {k: v["mean"] for k, v in summarise([r[n] for r in rows], metrics).items()} for n in names}
    f0 = f0_summary(rows, names)
    print(f"{len(files)} files x seeds {args.seeds}; mean over files and seeds")
    print(f"{'metric':<20}" + "".join(f"{n:>12}" for n in names))
    for k in metrics:
        print(f"{k:<20}" + "".join(f"{means[n][k]:>12.4g}" for n in names))
    print("F0 per file (seeds averaged): median; files better than Griffin-Lim; 95% interval of mean difference")
    for n in names[:-1]:
        s = f0[n]
        print(f"  {n:<8} median {s['median']:.1f} (GL {f0[GL]['median']:.1f}); better on {s['better_than_gl']} of "
              f"{s['files']}; difference {s['diff_ci95'][0]:+.1f} to {s['diff_ci95'][1]:+.1f} cents")
    if args.out:
        Path(args.out).write_text(json.dumps({"data": args.data, "seeds": args.seeds, "seconds": args.seconds,
                                              "means": means, "f0": f0, "files": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
