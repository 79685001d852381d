"""Train the spoken-digit classifier of bench/digits.py on real recordings, and score generated digits.

    python bench/digits_classifier.py --data $DATA/digits-8k --epochs 8 --out runs/digit-clf
    python bench/digits_classifier.py --data $DATA/digits-8k --model runs/digit-clf \
        --score gen/w1 gen/w3 --json scores.json

Each ``--score`` folder holds generated clips named ``DIGIT_*.wav`` (the digit they were conditioned on); give one
folder per guidance scale to get the accuracy / Frechet-distance trade-off. The Frechet distance is to the real
held-out set; ``fd_real_train`` (real training clips against the same held-out set) is the floor to read it against.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits as D  # noqa: E402
from common import describe, write_json  # noqa: E402

from audiodiff.data.files import find_audio_files  # noqa: E402
from audiodiff.errors import AudiodiffError  # noqa: E402


def score_folder(model, folder, real_embeddings) -> dict:
    """Accuracy against the file-name digits and Frechet distance to ``real_embeddings`` for one folder."""
    files = find_audio_files(folder)
    labels = [D.label_from_name(f) for f in files]
    clips = D.load_clips(files, model.frontend.config.sample_rate)
    return {"folder": str(folder), "clips": len(files), "accuracy": D.accuracy(model, clips, labels),
            "fd": D.frechet_distance(real_embeddings, D.embed_clips(model, clips))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("AUDIODIFF_DATA"),
                    help="DIGIT_SPEAKER_TAKE recordings (default $AUDIODIFF_DATA)")
    ap.add_argument("--model", help="load this classifier instead of training one")
    ap.add_argument("--out", help="save the trained classifier here (config.json + model.safetensors)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--holdout", choices=("take", "speaker"), default="take",
                    help="hold out every 5th take (default) or every 5th speaker")
    ap.add_argument("--score", nargs="+", default=[], metavar="GEN_DIR", help="folders of generated DIGIT_*.wav")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        if not args.data:
            raise AudiodiffError("no data: pass --data DIR of DIGIT_SPEAKER_TAKE recordings or set AUDIODIFF_DATA")
        train, held = D.holdout_split(find_audio_files(args.data), by=args.holdout)
        result = {**describe(), "data": str(args.data), "holdout": args.holdout, "train_clips": len(train),
                  "held_out_clips": len(held)}
        t0 = time.perf_counter()
        if args.model:
            model = D.DigitClassifier.from_pretrained(args.model)
        else:
            model = D.train_classifier(train, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                                       log=lambda m: print(m, flush=True))
            result.update(epochs=args.epochs, seed=args.seed, train_seconds=round(time.perf_counter() - t0, 1))
        if args.out:
            model.save_pretrained(args.out)
        rate = model.frontend.config.sample_rate
        held_clips = D.load_clips(held, rate)
        held_embeddings = D.embed_clips(model, held_clips)
        result["held_out_accuracy"] = D.accuracy(model, held_clips, [D.label_from_name(f) for f in held])
        result["fd_real_train"] = D.frechet_distance(held_embeddings, D.embed_clips(model, D.load_clips(train, rate)))
        print(f"held-out accuracy {result['held_out_accuracy']:.4f} ({len(held)} clips, by {args.holdout}); "
              f"FD real train vs held-out {result['fd_real_train']:.3f}", flush=True)
        result["generated"] = []
        for folder in args.score:
            row = score_folder(model, folder, held_embeddings)
            result["generated"].append(row)
            print(f"{folder}: accuracy {row['accuracy']:.4f} over {row['clips']} clips, FD {row['fd']:.3f}",
                  flush=True)
    except AudiodiffError as err:
        sys.exit(f"error: {err}")
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()
