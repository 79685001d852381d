"""Synthesis speed: x real time for a 10 s clip (22.05 kHz, 861 mel frames), batch 1 and batched, for several
step counts and precisions; median of repeats timed with CUDA events after warm-up; peak GPU memory.

    python bench/synth_speed.py [--model DIR] [--steps 6 12 50] [--batch 1 16]
                                [--modes eager-fp32 eager-bf16 graph-fp32 graph-bf16]
                                [--out results.json] [--md docs/benchmarks.md]
A mode is the precision (fp32, bf16) and the path: eager, CUDA graphs of the torch layers (graph), or CUDA graphs
of the fused Triton layer kernel (fused); fused-bf16 is what ``Vocoder`` does by default on a GPU with Triton,
eager-fp32 the reference path. Each row also gives the relative L2
error of its waveform against eager-fp32 from the same noise (``rel_l2``).
Without --model it uses the bundled vocoder, or a randomly initialised BASE model of the speech recipe
(speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_markdown, describe, timed, write_json  # noqa: E402

from audiodiff.config import load_recipe  # noqa: E402
from audiodiff.errors import AudiodiffError  # noqa: E402
from audiodiff.factory import build_backbone  # noqa: E402
from audiodiff.inference.options import REFINE_ITERATIONS  # noqa: E402
from audiodiff.vocoder import Vocoder  # noqa: E402


def load(model, device):
    try:
        return Vocoder.from_pretrained(model, device=device)
    except AudiodiffError:
        recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes/speech.yaml")
        net = build_backbone(recipe.model, recipe.mel)
        return Vocoder(net, recipe.mel, recipe.model, recipe.diffusion).to(device)


def bench_mel(voc, args, frames: int) -> torch.Tensor:
    """``[1, n_mels, frames]``: a real recording's mel tiled to length, or random values around -5."""
    if args.audio:
        from audiodiff.audio.io import load_audio

        audio, _ = load_audio(args.audio, voc.sample_rate)
        mel = voc.mel(audio)
        return mel.repeat(1, -(-frames // mel.shape[-1]))[None, :, :frames]
    return torch.randn(1, voc.n_mels, frames, device=args.device,
                       generator=torch.Generator(args.device).manual_seed(0)) - 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--steps", type=int, nargs="+", default=[6, 12, 50])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--modes", nargs="+", default=["eager-fp32", "eager-bf16", "graph-bf16", "fused-bf16"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--refine", type=int, default=REFINE_ITERATIONS,
                    help=f"mel-consistency iterations (the Vocoder's default: {REFINE_ITERATIONS})")
    ap.add_argument("--audio", help="take the mel from this recording (repeated to --seconds) instead of random "
                    "values: rel_l2 then measures the fast path on real speech")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out")
    ap.add_argument("--md", help="append the rows as a markdown table to this file (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    voc = load(args.model, args.device)
    voc.refine = args.refine
    frames = round(args.seconds * voc.sample_rate / voc.hop_length)
    audio_s = frames * voc.hop_length / voc.sample_rate
    rows, reference = [], {}
    for mode in args.modes:
        kind, precision = mode.split("-")
        voc.precision, voc.graphs, voc.kernel = precision, kind in ("graph", "fused"), kind == "fused"
        for batch in args.batch:
            mel = bench_mel(voc, args, frames).expand(batch, -1, -1).contiguous()
            for steps in args.steps:
                sampler = "fast" if steps <= 8 else "ddpm"
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                sec = timed(lambda: voc(mel, steps=steps, sampler=sampler, seed=0), repeats=args.repeats, warmup=1)
                wav = voc(mel, steps=steps, sampler=sampler, seed=0).float()
                ref = reference.setdefault((batch, steps), wav) if mode == "eager-fp32" else reference.get(
                    (batch, steps))
                rel = float((wav - ref).norm() / ref.norm()) if ref is not None else None
                row = {**describe(), "bench": "synth_speed", "mode": mode, "refine": args.refine, "batch": batch,
                       "steps": steps, "sampler": sampler, "seconds": sec, "x_real_time": batch * audio_s / sec,
                       "audio_s_per_s": batch * audio_s / sec, "rel_l2": rel,
                       "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9
                       if args.device.startswith("cuda") else None}
                rows.append(row)
                print(f"{mode:10} batch {batch:3} steps {steps:3}: {sec * 1000:8.1f} ms  "
                      f"{row['x_real_time']:8.1f}x real time  peak {row['peak_mem_gb'] or 0:.2f} GB  "
                      f"rel L2 {rel if rel is not None else float('nan'):.2e}", flush=True)
    if args.md:
        columns = ["device", "torch", "commit", "mode", "refine", "batch", "steps", "sampler", "seconds", "x_real_time",
                   "rel_l2", "peak_mem_gb"]
        append_markdown(args.md, "synth_speed.py " + " ".join(sys.argv[1:]), columns, rows)
    if args.out:
        write_json(rows, args.out)


if __name__ == "__main__":
    main()
