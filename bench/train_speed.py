"""Training throughput of the speech recipe's model at batch 16 x 15872 samples, data already on the device
(as the reference row "training step, random data in GPU memory"): steps/s, audio-seconds/s, peak memory.

    python bench/train_speed.py [--compile [--compile-mode reduce-overhead]] [--precision bf16|fp16|fp32]
        [--steps 100] [--out results.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_markdown, describe, write_json  # noqa: E402

from audiodiff.audio.mel import MelSpectrogram  # noqa: E402
from audiodiff.config import load_recipe  # noqa: E402
from audiodiff.factory import build_backbone, build_denoiser  # noqa: E402
from audiodiff.training.ema import EMA  # noqa: E402
from audiodiff.training.loop import precision_dtype, train_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(Path(__file__).resolve().parent.parent / "recipes/speech.yaml"))
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="recipe override, e.g. --set diffusion.prior=energy --set train.mel_loss=1 (repeatable)")
    ap.add_argument("--out")
    ap.add_argument("--md", help="append the rows as a markdown table to this file (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    recipe = load_recipe(args.recipe, args.overrides)
    net = build_backbone(recipe.model, recipe.mel).to(device)
    model = torch.compile(net, mode=args.compile_mode) if args.compile else net
    denoiser = build_denoiser(model, recipe.diffusion)
    ema = EMA(net)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4, fused=device.type == "cuda")
    amp = precision_dtype(args.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    mel_fn = MelSpectrogram(recipe.mel).to(device)
    n = recipe.data.crop_frames
    hop = recipe.mel.hop_length
    batch = {"audio": torch.randn(args.batch, n * hop, device=device) * 0.1,
             "segment": torch.randn(args.batch, recipe.mel.segment_length(n), device=device) * 0.1,
             "label": torch.zeros(args.batch, dtype=torch.long, device=device)}
    gen = torch.Generator(device=device).manual_seed(0)

    def step():
        loss = train_step(denoiser, mel_fn, batch, gen, device, amp, recipe)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        ema.update(net)

    for _ in range(10):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    sps = args.steps / dt
    row = {**describe(), "bench": "train_speed", "overrides": args.overrides, "precision": args.precision,
           "compile": args.compile,
           "compile_mode": args.compile_mode,
           "batch": args.batch, "samples": n * hop, "steps_per_s": sps,
           "audio_s_per_s": sps * args.batch * n * hop / recipe.mel.sample_rate,
           "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None}
    print(row)
    if args.md:
        columns = ["device", "torch", "commit", "precision", "compile",
                   "batch", "steps_per_s", "audio_s_per_s", "peak_mem_gb"]
        append_markdown(args.md, "train_speed.py " + " ".join(sys.argv[1:]), columns, [row])
    if args.out:
        write_json(row, args.out)


if __name__ == "__main__":
    main()
