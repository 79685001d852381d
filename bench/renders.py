"""Copy-synthesis in two halves, for when the synthesis and the metrics run on different machines (a GPU without
PESQ's wheel; a CPU too slow to synthesise): ``render`` writes each file's output per setting as 16-bit FLAC,
``score`` computes `audiodiff eval`'s metrics (copysynth.metrics_of) against the recordings, with Griffin-Lim
drawn with the same seed, and prints the means beside each other.

    python bench/renders.py render --model DIR --data speech-22k/test --limit 16 --rows 6:0 6:32 50:0 --out R
    python bench/renders.py score R --data speech-22k/test [--out scores.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from audiodiff.audio.io import load_audio  # noqa: E402
from audiodiff.data.files import find_audio_files  # noqa: E402
from audiodiff.eval.copysynth import griffin_lim, metrics_of, summarise  # noqa: E402
from audiodiff.eval.metrics import METRIC_KEYS  # noqa: E402
from audiodiff.vocoder import Vocoder  # noqa: E402


def render(args) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    voc = Vocoder.from_pretrained(args.model, device=device)
    files = find_audio_files(args.data)[: args.limit]
    out = Path(args.out)
    for row in args.rows:
        steps, refine = (int(v) for v in row.split(":"))
        voc.refine = refine
        folder = out / f"steps{steps}-refine{refine}"
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            ref, _ = load_audio(path, voc.sample_rate)
            wav = voc(voc.mel(ref).cpu().numpy(), steps=steps, sampler="fast" if steps <= 8 else "ddpm",
                      seed=args.seed)
            sf.write(str(folder / (Path(path).stem + ".flac")), np.clip(wav, -1, 1), voc.sample_rate,
                     subtype="PCM_16")
        print(f"rendered {len(files)} files to {folder}", flush=True)
    (out / "config.json").write_text((Path(args.model) / "config.json").read_text())


def score(args) -> None:
    from audiodiff.config import recipe_from_dict

    cfg = recipe_from_dict({"mel": json.loads((Path(args.renders) / "config.json").read_text())["mel"]}).mel
    sr = cfg.sample_rate
    results = {}
    for folder in sorted(p for p in Path(args.renders).iterdir() if p.is_dir()):
        rows, gl_rows = [], []
        for est_path in sorted(folder.glob("*.flac")):
            ref_path = next(p for p in find_audio_files(args.data) if Path(p).stem == est_path.stem)
            ref, _ = load_audio(ref_path, sr)
            est, _ = load_audio(est_path, sr)
            rows.append({"file": est_path.stem, **metrics_of(ref, est, sr, cfg)})
            if not results:  # Griffin-Lim once, on the first folder's files
                mel = _mel(cfg, ref)
                gl_rows.append({"file": est_path.stem, **metrics_of(ref, griffin_lim(mel, cfg, seed=args.seed),
                                                                     sr, cfg)})
        results[folder.name] = summarise(rows, METRIC_KEYS)
        if gl_rows:
            results["griffinlim"] = summarise(gl_rows, METRIC_KEYS)
        print(folder.name, {k: round(v["mean"], 4) for k, v in results[folder.name].items()}, flush=True)
    print("griffinlim", {k: round(v["mean"], 4) for k, v in results["griffinlim"].items()})
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def _mel(cfg, audio):
    from audiodiff.audio.mel import MelSpectrogram

    return MelSpectrogram(cfg)(torch.from_numpy(audio)).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("--model", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--limit", type=int, default=16)
    r.add_argument("--rows", nargs="+", default=["6:0", "6:32", "50:0"], help="STEPS:REFINE_ITERATIONS")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    s = sub.add_parser("score")
    s.add_argument("renders")
    s.add_argument("--data", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out")
    args = ap.parse_args()
    render(args) if args.cmd == "render" else score(args)


if __name__ == "__main__":
    main()
