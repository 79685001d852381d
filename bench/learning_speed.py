"""How fast each recipe variant learns, per training step: every variant trains from the same seed on the same
crops (one process, one after the other), and at fixed steps its raw weights denoise fixed validation crops at
fixed noise levels. The score is the log-mel L1 of the denoised estimate against the crop's mel, per level, which
does not depend on the variant's loss or prior, so variants with different objectives compare.

A cheap proxy of the ablation (no sampling, no rendering): it answers "does this change learn faster per step",
not "does it sound better"; bench/ablation.sh answers that.

    python bench/learning_speed.py --data DATA/speech-22k/train --valid DATA/speech-22k/test \
        --variant plain= --variant norm=model.mel_shift=9.2,model.mel_scale=0.087 \
        [--set model.residual_channels=32 ...] --steps 600 --every 100 [--batch 4 --crop-frames 16] --out r.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe, write_json  # noqa: E402

from audiodiff.audio.mel import MelSpectrogram  # noqa: E402
from audiodiff.config import load_recipe  # noqa: E402
from audiodiff.data.dataset import AudioCrops  # noqa: E402
from audiodiff.data.files import find_audio_files  # noqa: E402
from audiodiff.factory import build_backbone, build_denoiser  # noqa: E402
from audiodiff.training.loop import backward, precision_dtype, train_step  # noqa: E402
from audiodiff.training.state import Trainable  # noqa: E402
from audiodiff.training.targets import diffusion_inputs, mel_loss  # noqa: E402

LEVELS = (0, 2, 5, 10, 20, 35, 49)  # training step indices t at which the estimate is scored


def batch_of(dataset, step: int, size: int) -> dict:
    return default_collate([dataset[(step * size + j) % len(dataset)] for j in range(size)])


@torch.no_grad()
def score(denoiser, recipe, mel_fn, valid: dict, device, amp_dtype) -> dict:
    """Log-mel L1 of the estimate of x0 at each of LEVELS, on the fixed validation batch (fixed noise)."""
    audio = valid["audio"].to(device).unsqueeze(1)
    mel = mel_fn(valid["segment"].to(device), pad=False)
    x0, cond = diffusion_inputs(recipe, audio, mel, mel_fn)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7)).to(device)
    out = {}
    for t in LEVELS:
        sigma = denoiser.schedule.sigmas[t].float().to(device).expand(x0.shape[0])
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            _, x0_hat = denoiser.loss(x0, sigma, noise, with_x0=True, **cond)
        out[t] = round(float(mel_loss(mel_fn, x0_hat.float(), mel).mean()), 4)
    return out


def run_variant(name: str, sets: list[str], args, device) -> dict:
    recipe = load_recipe(args.recipe, args.overrides + sets + [f"data.crop_frames={args.crop_frames}"])
    mel_fn = MelSpectrogram(recipe.mel).to(device)
    train = AudioCrops(find_audio_files(args.data), recipe.mel, recipe.data.crop_frames, seed=0, report=False)
    valid = AudioCrops(find_audio_files(args.valid), recipe.mel, recipe.data.crop_frames, seed=1, report=False)
    valid_batch = batch_of(valid, 0, args.valid_crops)
    torch.manual_seed(recipe.train.seed)
    model = Trainable.build(build_backbone(recipe.model, recipe.mel), recipe.train, device)
    denoiser = build_denoiser(model.net, recipe.diffusion)
    amp_dtype = precision_dtype(args.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    curve, losses, t0 = [], [], time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            model.net.eval()
            curve.append({"step": step, "seconds": round(time.perf_counter() - t0, 1),
                          "loss": round(sum(losses) / max(1, len(losses)), 4),
                          "mel_l1": score(denoiser, recipe, mel_fn, valid_batch, device, amp_dtype)})
            model.net.train()
            losses = []
            print(name, json.dumps(curve[-1]), flush=True)
        if step == args.steps:
            break
        gen = torch.Generator(device).manual_seed(1000 + step)
        loss = train_step(denoiser, mel_fn, batch_of(train, step, args.batch), gen, device, amp_dtype, recipe)
        fault, _ = backward(loss, model.net, model.opt, scaler, recipe.train.grad_clip, 1)
        if fault is None:
            model.update(scaler)
            losses.append(float(loss.detach()))
    return {"variant": name, "sets": sets, "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(Path(__file__).resolve().parent.parent / "recipes/speech.yaml"))
    ap.add_argument("--data", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--variant", action="append", required=True, metavar="NAME=KEY=VALUE,KEY=VALUE",
                    help="a variant and its recipe overrides (repeatable; 'plain=' for the recipe as it is)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="an override for every variant (e.g. a smaller model for the CPU)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop-frames", type=int, default=62)
    ap.add_argument("--valid-crops", type=int, default=16)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--out")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for spec in args.variant:
        name, _, sets = spec.partition("=")
        results.append(run_variant(name, [s for s in sets.split(",") if s], args, device))
    if args.out:
        write_json({"machine": describe(), "args": vars(args), "results": results}, args.out)


if __name__ == "__main__":
    main()
