"""Mels degraded the way acoustic models degrade them (``audiodiff/data/degrade.py``), and a model scored on them: the
measurement of fine-tuning on acoustic-model output without an acoustic model (docs/interop.md, "to measure").

    python bench/degraded_mels.py write --data WAVS --out MELS [--model M] [--time-sigma 1] [--freq-sigma 1]
        [--gain 0.95] [--offset 0.1] [--noise 0.2] [--seed 0]
    python bench/degraded_mels.py score --data WAVS [--mels MELS] [--model M] [--limit N] [--seconds S]
        [--steps K] [--seed 0] [--out scores.json]

``write``: the mel of each recording in the model's convention (default: the bundled model's), degraded, saved as
``MELS/REL.npy`` for the recording ``WAVS/REL.wav``: the layout ``data.mel_path`` reads (``data/pairs.py``), so
``audiodiff train finetune-tts --data WAVS --set data.mel_path=MELS`` fine-tunes on them. Each file's noise is seeded
by ``--seed`` and its path, whatever else the folder holds.

``score``: each recording vocoded by the model from its mel in ``MELS`` (without ``--mels``: from the recording's own
mel, copy synthesis), against the recording: the log-mel L1, the reference distance and the MR-STFT distance of
``eval/metrics.py`` (as ``bench/baselines.py`` and ``bench/ablation_render.py`` score), mean and 95% half-width over
the files, on the first ``--seconds`` of each (0: whole files).
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audiodiff import Vocoder  # noqa: E402
from audiodiff.audio.io import load_audio  # noqa: E402
from audiodiff.data.degrade import degrade_mel  # noqa: E402
from audiodiff.data.files import find_audio_files  # noqa: E402
from audiodiff.data.pairs import mel_paths  # noqa: E402
from audiodiff.eval.copysynth import mean_ci, metrics_of, summarise  # noqa: E402
from audiodiff.inference.files import load_mel  # noqa: E402

KEYS = ("log_mel_l1", "reference_distance", "mrstft")


def _vocoder(model: str, device: str | None = None) -> Vocoder:
    return Vocoder.from_pretrained(None if model == "default" else model, device=device)


def file_seed(seed: int, rel: Path) -> int:
    """The noise seed of the recording at ``rel``: from ``seed`` and its path, not its place in the folder."""
    return zlib.crc32(f"{seed}:{rel.as_posix()}".encode())


def write(args) -> None:
    voc = _vocoder(args.model, "cpu")
    root, out = Path(args.data), Path(args.out)
    files = find_audio_files(root, hint="give a folder of recordings")
    for path in files:
        rel = Path(path).relative_to(root) if Path(path).is_relative_to(root) else Path(Path(path).name)
        audio, _ = load_audio(path, voc.sample_rate)
        mel = voc.mel(audio).cpu().numpy()  # [n_mels, frames], the model's convention
        degraded = degrade_mel(mel, voc.mel_config, time_sigma=args.time_sigma, freq_sigma=args.freq_sigma,
                               gain=args.gain, offset=args.offset, noise=args.noise, seed=file_seed(args.seed, rel))
        target = out / rel.with_suffix(".npy")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, degraded)
    settings = {k: getattr(args, k) for k in ("time_sigma", "freq_sigma", "gain", "offset", "noise", "seed")}
    (out / "degradation.json").write_text(json.dumps({"data": str(root), "model": args.model, **settings},
                                                     indent=2) + "\n")
    print(f"wrote {len(files)} degraded mels to {out} ({settings})")


def score(args) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    voc = _vocoder(args.model, device)
    sr, hop = voc.sample_rate, voc.mel_config.hop_length
    files = find_audio_files(args.data, hint="give a folder of recordings")
    files = files[: args.limit] if args.limit else files
    mels = mel_paths(files, args.mels, [args.data]) if args.mels else [None] * len(files)
    rows = []
    for path, mel_file in zip(files, mels):
        ref, _ = load_audio(path, sr)
        mel = voc.mel(ref).cpu().numpy() if mel_file is None else np.asarray(load_mel(Path(mel_file)), np.float32)
        if args.seconds:
            frames = int(args.seconds * sr) // hop
            mel, ref = mel[:, :frames], ref[: frames * hop]
        kwargs = {"steps": args.steps} if args.steps else {}
        est = voc(mel, seed=args.seed, **kwargs)  # numpy in, numpy out
        rows.append({"file": str(path), **metrics_of(ref, est, sr, voc.mel_config, KEYS)})
    summary = summarise(rows, KEYS)
    what = f"mels of {args.mels}" if args.mels else "the recordings' own mels (copy synthesis)"
    print(f"{args.model} on {len(rows)} files of {args.data}, {what}, seed {args.seed}:")
    for k in KEYS:
        print(f"  {k:<20}{mean_ci(summary.get(k))}")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "data": args.data, "mels": args.mels,
                                              "seed": args.seed, "seconds": args.seconds, "summary": summary,
                                              "files": rows}, indent=2) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write degraded mels of a folder of recordings")
    w.add_argument("--data", required=True, help="A folder of recordings.")
    w.add_argument("--out", required=True, help="The folder of the mels (the recordings' layout).")
    w.add_argument("--model", default="default", help="Whose mel convention [default: the bundled model's].")
    w.add_argument("--time-sigma", type=float, default=1.0, help="Gaussian blur over time, in frames.")
    w.add_argument("--freq-sigma", type=float, default=1.0, help="Gaussian blur over frequency, in bands.")
    w.add_argument("--gain", type=float, default=0.95, help="Factor on the natural-log mel.")
    w.add_argument("--offset", type=float, default=0.1, help="Level added to the natural-log mel, in nats.")
    w.add_argument("--noise", type=float, default=0.2, help="Std (nats) of the noise added before the blur.")
    w.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score", help="score a model on mels against the recordings")
    s.add_argument("--data", required=True, help="A folder of recordings.")
    s.add_argument("--mels", help="Their mels (as `write` lays them out) [default: the recordings' own mels].")
    s.add_argument("--model", default="default", help="An exported model directory [default: the bundled one].")
    s.add_argument("--limit", type=int, default=0, help="First N files in sorted order (0: all).")
    s.add_argument("--seconds", type=float, default=0, help="The first S seconds of each file (0: whole files).")
    s.add_argument("--steps", type=int, default=0, help="Sampling steps [default: the model's].")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="Write every row and the summary as JSON.")
    args = ap.parse_args(argv)
    write(args) if args.cmd == "write" else score(args)


if __name__ == "__main__":
    main()
