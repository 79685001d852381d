"""The ablation's outputs (bench/ablation.sh): raw output rendered on the GPU, refined output and the full metric set
on the CPU, from one sampling pass per row.

``render`` (GPU): for each test folder, the first ``--seconds`` of its first ``--limit`` files; per row of sampling
steps, the network's raw output (``Vocoder(mel, refine=False)``) as 16-bit FLAC, and the fast spectral metrics of
that output and of its refinement (``Vocoder.refine_waveform``: the same pass refined) in ``metrics.json``.
Refined audio is not written: it is a function of the raw output and the mel alone (``audio/refine.py``), and
``score`` recomputes it on the CPU (float rounding apart, and 16-bit quantisation of the raw output at -96 dB).

``score`` (CPU, with the ``metrics`` extra): every metric (PESQ, STOI, DNSMOS, ...) of the raw and the refined
output against the recording cut to the same length, means per row.

    python bench/ablation_render.py render --model M --data A/test B/test --out R [--rows 2 6 50]
    python bench/ablation_render.py score R --data A/test B/test [--out scores.json] [--limit N] [--quick]

``score --limit N`` scores the first N files of each row (rows cut short by a device call's time limit: compare
variants on the files they all have); ``--quick``: the three spectral distances, F0 RMSE, V/UV, PESQ and STOI only
(no WORLD, CREPE or MOS networks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from audiodiff.audio.io import load_audio  # noqa: E402
from audiodiff.data.files import find_audio_files  # noqa: E402
from audiodiff.eval.copysynth import metrics_of, summarise  # noqa: E402

FAST_KEYS = ("reference_distance", "mrstft", "log_mel_l1")
QUICK_KEYS = (*FAST_KEYS, "f0_rmse_cents", "vuv_error", "pesq_wb", "stoi")


def _split_name(folder: str) -> str:
    p = Path(folder)
    return f"{p.parent.name}-{p.name}"  # speech-22k/test -> speech-22k-test


def _sampler(steps: int) -> str:
    return "fast" if steps <= 8 else "ddpm"  # as bench/renders.py and bench/quality.py


def render(args) -> None:
    from audiodiff.vocoder import Vocoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    voc = Vocoder.from_pretrained(args.model, device=device)
    sr, out, t0 = voc.sample_rate, Path(args.out), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text((Path(args.model) / "config.json").read_text())
    report = {"model": str(args.model), "seconds": args.seconds, "seed": args.seed, "refine": voc.refine,
              "rows": {}}
    for data in args.data:
        files = find_audio_files(data)[: args.limit]
        refs = [load_audio(p, sr)[0][: int(args.seconds * sr)] for p in files]
        for steps in args.rows:
            folder = out / _split_name(data) / f"steps{steps}-refine0"
            folder.mkdir(parents=True, exist_ok=True)
            raw_rows, refined_rows = [], []
            for path, ref in zip(files, refs):
                mel = voc.mel(ref).cpu().numpy()
                raw = voc(mel, steps=steps, sampler=_sampler(steps), seed=args.seed, refine=False)
                refined = voc.refine_waveform(raw, mel)
                sf.write(str(folder / (Path(path).stem + ".flac")), np.clip(raw, -1, 1), sr, subtype="PCM_16")
                raw_rows.append(metrics_of(ref, raw, sr, voc.mel_config, FAST_KEYS))
                refined_rows.append(metrics_of(ref, refined, sr, voc.mel_config, FAST_KEYS))
            for name, rows in ((f"steps{steps}-refine0", raw_rows), (f"steps{steps}-refine{voc.refine}", refined_rows)):
                summary = {k: v["mean"] for k, v in summarise(rows, FAST_KEYS).items()}
                report["rows"][f"{_split_name(data)}/{name}"] = summary
                print(f"{args.model} {_split_name(data)} {name}: "
                      f"{ {k: round(v, 4) for k, v in summary.items()} } ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
            (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")  # after every row


def score(args) -> None:
    from audiodiff.audio.mel import MelSpectrogram
    from audiodiff.audio.refine import ITERATIONS, MOMENTUM, refine
    from audiodiff.config import recipe_from_dict
    from audiodiff.eval import metrics as M
    from audiodiff.eval.metrics import METRIC_KEYS

    keys = QUICK_KEYS if args.quick else METRIC_KEYS

    def measure(ref, est):
        if not args.quick:
            return metrics_of(ref, est, sr, cfg)
        out = metrics_of(ref, est, sr, cfg, FAST_KEYS)
        f0 = M.f0_metrics(ref, est, sr)
        out.update(f0_rmse_cents=f0["f0_rmse_cents"], vuv_error=f0["vuv_error"], pesq_wb=M.pesq_wb(ref, est, sr),
                   stoi=M.stoi(ref, est, sr))
        return out

    root = Path(args.renders)
    cfg = recipe_from_dict({"mel": json.loads((root / "config.json").read_text())["mel"]}).mel
    fn, sr, results = MelSpectrogram(cfg), cfg.sample_rate, {}
    for data in args.data:
        refs = {Path(p).stem: p for p in find_audio_files(data)}
        for folder in sorted((root / _split_name(data)).iterdir()):
            raw_rows, refined_rows = [], []
            for est_path in sorted(folder.glob("*.flac"))[: args.limit]:
                est, _ = load_audio(est_path, sr)
                ref = load_audio(refs[est_path.stem], sr)[0][: len(est)]
                mel = fn(torch.from_numpy(ref))
                refined = refine(torch.from_numpy(est)[None], mel[None], fn, ITERATIONS, momentum=MOMENTUM)
                refined = refined.clamp(-1, 1)[0].numpy()
                raw_rows.append({"file": est_path.stem, **measure(ref, est)})
                refined_rows.append({"file": est_path.stem, **measure(ref, refined)})
            for name, rows in ((folder.name, raw_rows), (folder.name.replace("refine0", f"refine{ITERATIONS}"),
                                                          refined_rows)):
                results[f"{_split_name(data)}/{name}"] = {**summarise(rows, keys), "files": len(rows)}
                print(_split_name(data), name, len(rows), {k: round(v["mean"], 4) for k, v in
                                                           results[f"{_split_name(data)}/{name}"].items() if k != "files"},
                      flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("--model", required=True)
    r.add_argument("--data", nargs="+", required=True)
    r.add_argument("--limit", type=int, default=16)
    r.add_argument("--seconds", type=float, default=4.0)
    r.add_argument("--rows", type=int, nargs="+", default=[2, 6, 50], help="sampling steps")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    s = sub.add_parser("score")
    s.add_argument("renders")
    s.add_argument("--data", nargs="+", required=True)
    s.add_argument("--out")
    s.add_argument("--limit", type=int, default=None, help="the first N files of each row")
    s.add_argument("--quick", action="store_true", help="spectral distances, F0, V/UV, PESQ and STOI only")
    args = ap.parse_args()
    render(args) if args.cmd == "render" else score(args)


if __name__ == "__main__":
    main()
