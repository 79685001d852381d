"""Backbones as plain ``nn.Module``s; they import nothing from the diffusion core."""

from audiodiff.models.diffwave import DiffWave

__all__ = ["DiffWave"]
