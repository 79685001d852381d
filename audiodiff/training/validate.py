"""Validation during training: the loss on fixed held-out crops, and one synthesised sample for TensorBoard."""

from __future__ import annotations

import io

import torch

from audiodiff.audio.plot import mel_png

from audiodiff.config import Recipe
from audiodiff.diffusion import SAMPLERS, prior, sigmas_for
from audiodiff.factory import build_denoiser
from audiodiff.training.targets import diffusion_inputs

VALID_ITEMS = 16


def spectrogram_png(mel: torch.Tensor, title: str) -> torch.Tensor:
    """A mel ``[n_mels, F]`` rendered as an image tensor ``[3, H, W]`` for TensorBoard."""
    import numpy as np
    from PIL import Image

    img = np.array(Image.open(io.BytesIO(mel_png(mel, title))).convert("RGB"))
    return torch.from_numpy(img).permute(2, 0, 1)


def _sample_image(denoiser, shape, cond: dict, device, steps: int = 6) -> torch.Tensor:
    # A seeded few-step DDIM sample from the (EMA) U-Net, for a glance in TensorBoard.
    sigmas = sigmas_for("ddim", steps, denoiser.schedule).to(device)
    x = prior(shape, float(sigmas[0]), torch.Generator(device=device).manual_seed(0), device=device)
    return SAMPLERS["ddim"](denoiser, x, sigmas, extra_args=cond)


@torch.no_grad()
def validate(model, recipe: Recipe, valid_set, mel_fn, writer, step: int, device) -> float:
    """Log the validation loss (fixed crops, noise levels and noise) and one 6-step sample; returns the loss."""
    from audiodiff.vocoder import Vocoder

    was_training = model.training
    model.eval()
    denoiser = build_denoiser(model, recipe.diffusion)
    batch = [valid_set[i] for i in range(VALID_ITEMS)]
    audio = torch.stack([b["audio"] for b in batch]).to(device).unsqueeze(1)
    mel = mel_fn(torch.stack([b["segment"] for b in batch]).to(device), pad=False)
    gen = torch.Generator(device=device).manual_seed(1234)
    sigma = denoiser.sample_training_sigma(len(batch), generator=gen)
    x0, cond = diffusion_inputs(recipe, audio, mel, mel_fn)
    noise = torch.randn(x0.shape, generator=gen, device=device)
    if recipe.model.num_classes:
        cond["class_labels"] = torch.stack([b["label"] for b in batch]).to(device)
    loss = denoiser.loss(x0, sigma, noise, **cond).mean().item()
    writer.add_scalar("valid/loss", loss, step)
    if recipe.model.arch == "unet2d":
        image = _sample_image(denoiser, x0[:1].shape, {k: v[:1] for k, v in cond.items()}, device)
        writer.add_image("valid/mel_generated", spectrogram_png(image[0, 0], f"generated image, step {step}"), step)
        if step == recipe.train.valid_every:
            writer.add_image("valid/mel_original", spectrogram_png(x0[0, 0], "original image"), step)
    elif recipe.model.conditional:
        voc = Vocoder(model, recipe.mel, recipe.model, recipe.diffusion)
        wav = voc(mel[:1], seed=0)[0]
        writer.add_audio("valid/generated", wav.clamp(-1, 1).cpu(), step, sample_rate=recipe.mel.sample_rate)
        writer.add_image("valid/mel_generated", spectrogram_png(voc.mel(wav), f"generated, step {step}"), step)
        if step == recipe.train.valid_every:
            writer.add_audio("valid/original", audio[0, 0].cpu(), step, sample_rate=recipe.mel.sample_rate)
            writer.add_image("valid/mel_original", spectrogram_png(mel[0], "original"), step)
        try:
            from audiodiff.eval.metrics import reference_distance

            writer.add_scalar("valid/distance", reference_distance(audio[0, 0].cpu().numpy(),
                                                                   wav.cpu().numpy()), step)
        except ImportError:
            pass
    model.train(was_training)
    return loss
