"""What the denoiser learns from a batch: the clean sample ``x0`` and its conditioning, per architecture.

``diffwave``: ``x0`` is the waveform crop ``[B, 1, N * hop]``, conditioned on its mel unless unconditional.
``unet2d``: ``x0`` is the crop's log-mel as an image (``audio/spectro_image.py``) ``[B, 1, n_mels, N]``, with no mel
conditioning. Class labels (with label dropout in training) are added by the caller for both.
Training and validation both call this, so the two never disagree.
"""

from __future__ import annotations

import torch

from audiodiff.audio.spectro_image import MelImage
from audiodiff.config import Recipe
from audiodiff.errors import AudiodiffError


def check_image_crops(recipe: Recipe) -> None:
    """A U-Net is trained on tiles of ``model.image_frames`` frames: the crops must have that width."""
    if recipe.model.arch == "unet2d" and recipe.data.crop_frames != recipe.model.image_frames:
        raise AudiodiffError(f"data.crop_frames ({recipe.data.crop_frames}) must equal model.image_frames "
                             f"({recipe.model.image_frames}) for arch unet2d; set data.crop_frames: "
                             f"{recipe.model.image_frames}")


def diffusion_inputs(recipe: Recipe, audio: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """``audio [B, 1, T]``, ``mel [B, n_mels, N]`` -> ``(x0, cond)``; the caller adds ``class_labels``."""
    if recipe.model.arch == "unet2d":
        image = MelImage.for_mel(recipe.mel, recipe.model.image_frames).to_image(mel)
        return image.unsqueeze(1), {}  # [B, 1, n_mels, N]
    return audio, ({"mel": mel} if recipe.model.conditional else {})
