"""Score the systems that need no network (Griffin-Lim and the refinement started from noise) on a split, alone.

    python bench/baselines.py --data $DATA/speech-22k/test --seeds 0 1 2 3 [--model default] [--baseline refine]
        [--metrics reference_distance stoi ...] [--refine 8] [--refine-momentum 0] [--out baselines.json]

`audiodiff eval MODEL DATA --baseline refine` scores a baseline beside a model, which costs a synthesis per file
(minutes a file on a 2-core CPU). A table measured earlier, with the model alone, gets its baseline column from this
bench: the same mel (the model's preset), the same band limiting, `copysynth.griffin_lim` and
`copysynth.refine_baseline` with the vocoder's default refinement, and the metrics of `eval/metrics.py`. Per seed it
prints each metric's mean ± 95% half-width over the files; over several seeds, the mean of the per-seed means with
the lowest and highest, as `bench/seeds.py` pools the model's runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audiodiff import Vocoder  # noqa: E402
from audiodiff.audio.io import load_audio  # noqa: E402
from audiodiff.data.files import find_audio_files  # noqa: E402
from audiodiff.eval import copysynth  # noqa: E402
from audiodiff.eval import metrics as M  # noqa: E402

FAST = ("reference_distance", "mrstft", "log_mel_l1")
DEFAULT_METRICS = (*FAST, "mcd_db", "f0_rmse_cents", "vuv_error", "pesq_wb", "stoi")


def score(ref, est, sr: int, cfg, keys) -> dict:
    """The metrics of ``keys`` (a subset of eval's), computed one by one so that the slow model-based ones
    (CREPE, DNSMOS, DistillMOS) run only when asked for."""
    mel = {"n_fft": cfg.n_fft, "hop": cfg.hop_length, "n_mels": cfg.n_mels, "fmax": cfg.fmax}
    if set(keys) - set(DEFAULT_METRICS):
        return {k: v for k, v in M.all_metrics(ref, est, sr, **mel).items() if k in keys}
    out = {"reference_distance": M.reference_distance(ref, est), "mrstft": M.mrstft_distance(ref, est),
           "log_mel_l1": M.log_mel_l1(ref, est, sr, **mel)}
    if "mcd_db" in keys:
        out["mcd_db"] = M.mel_cepstral_distortion(ref, est, sr)
    if {"f0_rmse_cents", "vuv_error"} & set(keys):
        out.update(M.f0_metrics(ref, est, sr))
    if "pesq_wb" in keys:
        out["pesq_wb"] = M.pesq_wb(ref, est, sr)
    if "stoi" in keys:
        out["stoi"] = M.stoi(ref, est, sr)
    return {k: out[k] for k in keys}


def run(vocoder, files, baseline: str, seed: int, keys, seconds: float = 0) -> list[dict]:
    rows, sr = [], vocoder.sample_rate
    for path in files:
        ref, _ = load_audio(path, sr)
        ref = ref[: int(seconds * sr)] if seconds else ref
        mel = vocoder.mel(ref).cpu().numpy()
        if baseline == "griffinlim":
            est = copysynth.griffin_lim(mel, vocoder.mel_config, seed=seed)
        else:
            est = copysynth.refine_baseline(vocoder, mel, ref, seed=seed)
        source_sr = sf.info(str(path)).samplerate
        est = copysynth.band_limit(est, sr, source_sr) if source_sr < sr else est  # as eval's match_bandwidth
        rows.append({"file": str(path), **score(ref, est, sr, vocoder.mel_config, keys)})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="A folder of recordings or a .txt file list.")
    p.add_argument("--model", default="default", help="Model whose mel preset and refinement are used.")
    p.add_argument("--baseline", choices=copysynth.BASELINES, default="refine")
    p.add_argument("--refine", type=int, help="Refinement iterations [default: the vocoder's, 32].")
    p.add_argument("--refine-momentum", type=float, help="The refinement's momentum [default: the vocoder's, 0.9]; "
                   "0 gives the plain iterations of tables measured before momentum.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--limit", type=int, default=0, help="First N files in sorted order (0: all).")
    p.add_argument("--seconds", type=float, default=0, help="The first S seconds of each file, as "
                   "bench/ablation_render.py renders them (0: whole files).")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=M.METRIC_KEYS)
    p.add_argument("--out", type=Path, help="Write every row and summary as JSON.")
    args = p.parse_args(argv)
    extra = {k: v for k, v in (("refine", args.refine), ("refine_momentum", args.refine_momentum)) if v is not None}
    vocoder = Vocoder.from_pretrained(None if args.model == "default" else args.model, device="cpu", **extra)
    files = find_audio_files(args.data, hint="give a folder of recordings or a file list (.txt)")
    files = files[: args.limit] if args.limit else files
    per_seed = {}
    for seed in args.seeds:
        rows = run(vocoder, files, args.baseline, seed, args.metrics, args.seconds)
        per_seed[seed] = {"files": rows, "summary": copysynth.summarise(rows, args.metrics)}
        print(f"seed {seed}: " + ", ".join(f"{k} {copysynth.mean_ci(v)}" for k, v in per_seed[seed]["summary"]
                                           .items()), flush=True)
    pooled = {k: {"mean": statistics.fmean(m), "min": min(m), "max": max(m)} for k in args.metrics
              if len(m := [s["summary"][k]["mean"] for s in per_seed.values() if k in s["summary"]]) == len(per_seed)}
    print(f"{args.baseline} on {len(files)} files of {args.data}, seeds {args.seeds}, refine {vocoder.refine} "
          f"momentum {vocoder.refine_momentum}:")
    for k, v in pooled.items():
        print(f"  {k:<20}{v['mean']:.4f} ({v['min']:.4f}-{v['max']:.4f})")
    if args.out:
        args.out.write_text(json.dumps({"data": args.data, "baseline": args.baseline, "seeds": args.seeds,
                                        "per_seed": per_seed, "pooled": pooled}, indent=2) + "\n")


if __name__ == "__main__":
    main()
