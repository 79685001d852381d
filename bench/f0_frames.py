"""F0 RMSE of copy-synthesis on which frames? The model next to Griffin-Lim, over several seeds, three ways.

    python bench/f0_frames.py --data $DATA/speech-16k-multi/test [--model DIR] [--seeds 0 1 2 3] [--out f0.json]

`audiodiff eval` scores F0 (``metrics.f0_metrics``) on every frame that pYIN calls voiced in both the reference and
the output ("as defined"). Two things make that figure turn on a few frames (docs/quality.md):

- pYIN reports a period longer than its search range as F0 at the range's floor (65 Hz), so mains hum after an
  utterance can count as voiced speech. "in range" keeps the frames whose reference F0 lies more than a semitone
  inside the range.
- Each system is scored on the frames where it is itself voiced, so a system that loses voicing in hard frames is
  scored on easier ones. "matched" keeps the in-range frames voiced in the reference and in both outputs, and
  scores both systems on those same frames.

Outputs of recordings made below the model's rate are limited to the recording's band first, as `audiodiff eval`
does. pYIN runs in parallel worker processes (--workers; it dominates the time): both test splits with four
seeds take minutes on a 16-core machine with two processes of 7-8 workers each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_copysynth_args, metric_pool  # noqa: E402

SEMITONE = 2 ** (1 / 12)
WAYS = ("as_defined", "in_range", "matched")
# audiodiff.eval.metrics (and with it librosa and numba) is imported inside the functions: the spawned workers
# import this module before their initializer sets NUMBA_CACHE_DIR.


def track(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """``metrics.f0_track``, the track of `audiodiff eval`'s F0 metric, in a worker."""
    from audiodiff.eval.metrics import f0_track

    return f0_track(audio, sr)


def score(ref: tuple, ours: tuple, base: tuple) -> dict[str, dict[str, float]]:
    """``{way: {"ours", "base", "frames_ours", "frames_base"}}`` for one file; each argument is ``track``'s pair."""
    from audiodiff.eval.metrics import F0_RANGE, cents_rmse

    n = min(len(ref[0]), len(ours[0]), len(base[0]))
    (f_ref, v_ref), (f_o, v_o), (f_b, v_b) = ((f[:n], v[:n]) for f, v in (ref, ours, base))
    voiced_o = v_ref & v_o & np.isfinite(f_ref) & np.isfinite(f_o)
    voiced_b = v_ref & v_b & np.isfinite(f_ref) & np.isfinite(f_b)
    inside = np.isfinite(f_ref) & (f_ref > F0_RANGE[0] * SEMITONE) & (f_ref < F0_RANGE[1] / SEMITONE)
    frames = {"as_defined": (voiced_o, voiced_b), "in_range": (voiced_o & inside, voiced_b & inside)}
    common = voiced_o & voiced_b & inside
    frames["matched"] = (common, common)
    return {way: {"ours": cents_rmse(f_ref, f_o, fo), "base": cents_rmse(f_ref, f_b, fb),
                  "frames_ours": int(fo.sum()), "frames_base": int(fb.sum())}
            for way, (fo, fb) in frames.items()}


def summarise(rows: list[dict]) -> dict:
    """Per way: the mean over files of each system (nan-free files), and the files the model wins, loses."""
    out = {}
    for way in WAYS:
        pairs = [(r[way]["ours"], r[way]["base"]) for r in rows
                 if np.isfinite(r[way]["ours"]) and np.isfinite(r[way]["base"])]
        out[way] = {"ours": statistics.fmean(o for o, _ in pairs), "base": statistics.fmean(b for _, b in pairs),
                    "model_better": sum(o < b for o, b in pairs), "files": len(pairs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_copysynth_args(ap, seeds=[0, 1, 2, 3])
    args = ap.parse_args()

    import soundfile as sf

    from audiodiff.audio.io import load_audio
    from audiodiff.data.files import find_audio_files
    from audiodiff.eval.copysynth import band_limit, griffin_lim
    from audiodiff.vocoder import Vocoder

    files = find_audio_files(args.data)
    files = files[:args.limit] if args.limit else files
    voc = Vocoder.from_pretrained(args.model, device=args.device)
    sr = voc.sample_rate
    pool = metric_pool(args.workers)
    jobs = {}  # (file index, "ref" | (seed, "ours" | "base")) -> future of track()
    for i, path in enumerate(files):
        ref, _ = load_audio(path, sr)
        mel = voc.mel(ref).cpu().numpy()
        source_sr = sf.info(str(path)).samplerate
        narrow = source_sr < sr
        jobs[i, "ref"] = pool.submit(track, ref, sr)
        for seed in args.seeds:
            for name, audio in (("ours", voc(mel, seed=seed)), ("base", griffin_lim(mel, voc.mel_config, seed=seed))):
                audio = band_limit(audio, sr, source_sr) if narrow else audio
                jobs[i, (seed, name)] = pool.submit(track, audio, sr)
        print(f"synthesised {i + 1}/{len(files)}", file=sys.stderr, flush=True)
    rows = {seed: [] for seed in args.seeds}
    for i, path in enumerate(files):
        ref = jobs[i, "ref"].result()
        for seed in args.seeds:
            rows[seed].append({"file": Path(path).name,
                               **score(ref, jobs[i, (seed, "ours")].result(), jobs[i, (seed, "base")].result())})
    pool.shutdown()
    per_seed = {seed: summarise(r) for seed, r in rows.items()}
    print(f"F0 RMSE (cents), mean over {len(files)} files: model / Griffin-Lim (files where the model is better)")
    for way in WAYS:
        cells = [f"{s[way]['ours']:.1f} / {s[way]['base']:.1f} ({s[way]['model_better']}/{s[way]['files']})"
                 for s in per_seed.values()]
        print(f"{way:<11}" + "  ".join(f"seed {seed}: {c}" for seed, c in zip(per_seed, cells)))
    if args.out:
        Path(args.out).write_text(json.dumps({"data": args.data, "seeds": args.seeds, "summary": per_seed,
                                              "files": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
