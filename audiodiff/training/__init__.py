"""Training: the loop, checkpoints, EMA, distributed set-up, validation and export."""

from audiodiff.training.export import export
from audiodiff.training.loop import train

__all__ = ["export", "train"]
