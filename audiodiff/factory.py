"""Where configuration meets code: build a backbone and its denoiser from the recipe's dataclasses.

Training and inference both call these, so a model is always rebuilt from its saved config the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from audiodiff.audio.mel import MelConfig
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.diffusion import Denoiser, DiscreteSchedule, make_betas
from audiodiff.errors import AudiodiffError
from audiodiff.families import family_of


def build_backbone(model: ModelConfig, mel: MelConfig) -> nn.Module:
    """The network of ``model``'s family (``families.py``), with explicit arguments taken from the config."""
    return family_of(model).build(model, mel)


def check_buildable(model: ModelConfig, mel: MelConfig) -> None:
    """Raise what ``build_backbone`` would raise for these settings, without allocating: built on the meta device."""
    with torch.device("meta"):
        build_backbone(model, mel)


def build_schedule(diffusion: DiffusionConfig) -> DiscreteSchedule:
    kwargs = {"start": diffusion.beta_start, "end": diffusion.beta_end} if diffusion.schedule == "linear" else {}
    try:
        return DiscreteSchedule(make_betas(diffusion.schedule, diffusion.steps, **kwargs))
    except ValueError as err:
        raise AudiodiffError(f"diffusion.schedule: {err}") from None


def build_denoiser(net: nn.Module, diffusion: DiffusionConfig) -> Denoiser:
    try:
        return Denoiser(net, build_schedule(diffusion), prediction=diffusion.prediction, loss=diffusion.loss)
    except ValueError as err:
        raise AudiodiffError(f"diffusion: {err}") from None
