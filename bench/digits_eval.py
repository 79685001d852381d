"""Score a class-conditional digit generator: accuracy and Frechet distance per guidance scale, next to ceilings.

    python bench/digits_eval.py --generator runs/digits-export --vocoder runs/digits-vocoder-export \
        --classifier runs/digit-clf --data $DATA/digits-8k --guidance 1 2 3 4 --per-class 50 --out gen/

For each guidance scale, ``--per-class`` mels per digit are sampled, vocoded (``--vocoder``, or Griffin-Lim), and
classified by the classifier of ``bench/digits_classifier.py`` (trained on real recordings, the same take split).
The Frechet distance is between classifier embeddings of the generated set and the real held-out set. Two
ceilings use the same classifier: real held-out clips (the classifier's own accuracy) and their copy-synthesis
(mel -> vocoder), which bounds what any generator paired with this vocoder can reach. A few wavs and a PNG per
scale are kept under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits as D  # noqa: E402
from common import describe, write_json  # noqa: E402

from audiodiff.audio.io import save_audio  # noqa: E402
from audiodiff.audio.mel import MelSpectrogram  # noqa: E402
from audiodiff.audio.plot import mel_png  # noqa: E402
from audiodiff.data.files import find_audio_files  # noqa: E402
from audiodiff.eval.copysynth import griffin_lim  # noqa: E402
from audiodiff.melgen import MelGenerator  # noqa: E402
from audiodiff.vocoder import Vocoder  # noqa: E402


def vocode(voc, mels: torch.Tensor, mel_config, seed: int, batch: int = 100) -> list[np.ndarray]:
    """Audio clips for mels ``[N, n_mels, F]``: the vocoder in batches, or Griffin-Lim when ``voc`` is None."""
    if voc is None:
        return [griffin_lim(m.cpu().numpy(), mel_config) for m in mels]
    out = []
    for i in range(0, len(mels), batch):
        out.extend(voc(mels[i:i + batch].float(), seed=seed + i).cpu().numpy())
    return out


def score(clf, clips, labels, real_embeddings) -> dict:
    return {"clips": len(clips), "accuracy": round(D.accuracy(clf, clips, labels), 4),
            "fd": round(D.frechet_distance(real_embeddings, D.embed_clips(clf, clips)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", required=True, help="exported digits U-Net (audiodiff export of a unet2d run)")
    ap.add_argument("--vocoder", default="griffinlim", help="exported vocoder with the same mel, or griffinlim")
    ap.add_argument("--classifier", required=True, help="from bench/digits_classifier.py --out")
    ap.add_argument("--data", required=True, help="the real DIGIT_SPEAKER_TAKE recordings")
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--steps", type=int, help="sampling steps [default: the generator's]")
    ap.add_argument("--sampler", help="sampler [default: the generator's]")
    ap.add_argument("--keep", type=int, default=2, help="wavs kept per digit and scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    gen = MelGenerator.from_pretrained(args.generator)
    voc = None if args.vocoder == "griffinlim" else Vocoder.from_pretrained(args.vocoder, device=gen.device)
    if voc is not None:
        gen.check_vocoder(voc, args.vocoder)
    clf = D.DigitClassifier.from_pretrained(args.classifier)
    rate = gen.mel_config.sample_rate
    _, held = D.holdout_split(find_audio_files(args.data), by="take")
    held_labels = [D.label_from_name(f) for f in held]
    held_clips = D.load_clips(held, rate)
    real = D.embed_clips(clf, held_clips)
    result = {**describe(), "generator": args.generator, "vocoder": args.vocoder, "per_class": args.per_class,
              "steps": args.steps or gen.diffusion_config.sample_steps,
              "sampler": args.sampler or gen.diffusion_config.sampler,
              "real_held_out": score(clf, held_clips, held_labels, real)}
    # Copy-synthesis of the held-out clips, one at a time (their lengths differ).
    front = MelSpectrogram(gen.mel_config)
    mels = [front(torch.from_numpy(c)) for c in held_clips]
    copies = [vocode(voc, m[None].to(gen.device), gen.mel_config, args.seed)[0] for m in mels]
    result["copy_synthesis"] = score(clf, copies, held_labels, real)
    print(f"real held-out: {result['real_held_out']}; copy-synthesis: {result['copy_synthesis']}", flush=True)
    labels = [d for d in range(10) for _ in range(args.per_class)]
    result["generated"] = []
    for w in args.guidance:
        t0 = time.perf_counter()
        mels = gen(labels, guidance=w, steps=args.steps, sampler=args.sampler, seed=args.seed)
        clips = vocode(voc, mels, gen.mel_config, args.seed)
        row = {"guidance": w, **score(clf, clips, labels, real), "seconds": round(time.perf_counter() - t0, 1)}
        result["generated"].append(row)
        print(row, flush=True)
        folder = out / f"w{w:g}"
        folder.mkdir(parents=True, exist_ok=True)
        for d in range(10):
            for k in range(args.keep):
                i = d * args.per_class + k
                save_audio(folder / f"{d}_gen_{k}.wav", clips[i], rate)
        folder.joinpath("digits.png").write_bytes(
            mel_png(torch.cat([mels[d * args.per_class] for d in range(10)], dim=-1), f"digits 0-9, guidance {w:g}"))
    best = max(result["generated"], key=lambda r: r["accuracy"])
    result["best_guidance"] = best["guidance"]
    write_json(result, out / "digits_eval.json")
    print(f"best guidance {best['guidance']:g}: accuracy {best['accuracy']:.4f}, FD {best['fd']:.3f}")


if __name__ == "__main__":
    main()
