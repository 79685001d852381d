"""Validation during training: the loss on fixed held-out crops, and one generated sample for TensorBoard."""

from __future__ import annotations

import io

import torch
from torch.utils.data import default_collate

from audiodiff.audio.plot import mel_png
from audiodiff.config import Recipe
from audiodiff.factory import build_denoiser
from audiodiff.families import family_of
from audiodiff.training.targets import batch_inputs

VALID_ITEMS = 16


def spectrogram_png(mel: torch.Tensor, title: str) -> torch.Tensor:
    """A mel ``[n_mels, F]`` rendered as an image tensor ``[3, H, W]`` for TensorBoard."""
    import numpy as np
    from PIL import Image

    img = np.array(Image.open(io.BytesIO(mel_png(mel, title))).convert("RGB"))
    return torch.from_numpy(img).permute(2, 0, 1)


@torch.no_grad()
def validate(model, recipe: Recipe, valid_set, mel_fn, writer, step: int, device) -> float:
    """Log the validation loss (fixed crops, noise levels and noise) and the family's sample of the first crop
    (``families.py``); returns the loss."""
    was_training = model.training
    model.eval()
    denoiser = build_denoiser(model, recipe.diffusion)
    batch = default_collate([valid_set[i] for i in range(VALID_ITEMS)])
    x = batch_inputs(recipe, batch, mel_fn, denoiser, torch.Generator(device=device).manual_seed(1234), device)
    loss = denoiser.loss(x.x0, x.sigma, x.noise, **x.cond).mean().item()
    writer.add_scalar("valid/loss", loss, step)
    sample = family_of(recipe.model).validation_sample(model, denoiser, recipe, x.x0, x.cond, x.mel)
    if sample is not None:
        log_sample(writer, sample, step, recipe.mel.sample_rate, first=step == recipe.train.valid_every)
    model.train(was_training)
    return loss


def log_sample(writer, sample, step: int, sample_rate: int, first: bool) -> None:
    """The generated mel (and audio, with its distance to the original); the originals with the first one."""
    writer.add_image("valid/mel_generated", spectrogram_png(sample.mel, f"generated{sample.what}, step {step}"), step)
    if sample.audio is not None:
        writer.add_audio("valid/generated", sample.audio.clamp(-1, 1).cpu(), step, sample_rate=sample_rate)
    if first:
        if sample.reference_audio is not None:
            writer.add_audio("valid/original", sample.reference_audio.cpu(), step, sample_rate=sample_rate)
        writer.add_image("valid/mel_original", spectrogram_png(sample.reference_mel, f"original{sample.what}"), step)
    if sample.audio is not None:
        try:
            from audiodiff.eval.metrics import reference_distance

            writer.add_scalar("valid/distance", reference_distance(sample.reference_audio.cpu().numpy(),
                                                                   sample.audio.cpu().numpy()), step)
        except ImportError:
            pass
