"""What the denoiser learns from a batch: the clean sample ``x0`` and its conditioning, per architecture.

``diffwave``: ``x0`` is the waveform crop ``[B, 1, N * hop]``, conditioned on its mel unless unconditional.
``unet2d``: ``x0`` is the crop's log-mel as an image (``audio/spectro_image.py``) ``[B, 1, n_mels, N]``, with no mel
conditioning. Class labels (with label dropout in training) are added by the caller for both.
A waveform model with a shaped prior (``diffusion.prior``) also gets the prior's ``std`` (``audio/prior.py``).
Training and validation both call this, so the two never disagree.

``mel_loss``: the auxiliary objective of FreGrad (Nguyen et al. 2024), WaveFit (Koizumi et al. 2022) and WaveFM
(2025): the L1 distance between the log-mel of the denoised estimate and the crop's own mel.
"""

from __future__ import annotations

import torch

from audiodiff.audio.prior import prior_std
from audiodiff.audio.spectro_image import MelImage
from audiodiff.config import Recipe
from audiodiff.errors import AudiodiffError


def check_image_crops(recipe: Recipe) -> None:
    """A U-Net is trained on tiles of ``model.image_frames`` frames: the crops must have that width."""
    if recipe.model.arch == "unet2d" and recipe.data.crop_frames != recipe.model.image_frames:
        raise AudiodiffError(f"data.crop_frames ({recipe.data.crop_frames}) must equal model.image_frames "
                             f"({recipe.model.image_frames}) for arch unet2d; set data.crop_frames: "
                             f"{recipe.model.image_frames}")


def diffusion_inputs(recipe: Recipe, audio: torch.Tensor, mel: torch.Tensor, mel_fn) -> tuple[torch.Tensor, dict]:
    """``audio [B, 1, T]``, ``mel [B, n_mels, N]`` -> ``(x0, cond)``; the caller adds ``class_labels``."""
    if recipe.model.arch == "unet2d":
        image = MelImage.for_mel(recipe.mel, recipe.model.image_frames).to_image(mel)
        return image.unsqueeze(1), {}  # [B, 1, n_mels, N]
    if not recipe.model.conditional:
        return audio, {}
    std = prior_std(mel_fn, mel, recipe.diffusion.prior, recipe.diffusion.prior_floor,
                    recipe.diffusion.prior_level)
    return audio, ({"mel": mel} if std is None else {"mel": mel, "std": std})


def mel_loss(mel_fn, x0_hat: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Per-example log-mel L1 of the denoised waveform ``x0_hat [B, 1, N * hop]`` against its crop's mel
    ``[B, n_mels, N]``. Frames whose window reaches into the reflect padding (which the crop's mel replaced with
    real context) are left out."""
    hop, edge = mel_fn.config.hop_length, max(mel_fn.config.pad)
    mel_hat = mel_fn(x0_hat[:, 0].float())  # [B, n_mels, N]
    k = -(-edge // hop) if mel.shape[-1] > 2 * -(-edge // hop) else 0
    err = (mel_hat - mel.float()).abs()[..., k: mel.shape[-1] - k]
    return err.flatten(1).mean(1)
