"""Backbones as plain ``nn.Module``s; they import nothing from the diffusion core."""

from audiodiff.models.diffwave import DiffWave
from audiodiff.models.unet2d import UNet2D

__all__ = ["DiffWave", "UNet2D"]
