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
from audiodiff.models import DiffWave, UNet2D


def build_backbone(model: ModelConfig, mel: MelConfig) -> nn.Module:
    """The network named by ``model.arch`` with explicit arguments taken from the config."""
    if model.arch == "diffwave":
        return DiffWave(
            n_mels=mel.n_mels if model.conditional else 0, hop_length=mel.hop_length,
            residual_layers=model.residual_layers, residual_channels=model.residual_channels,
            dilation_cycle=model.dilation_cycle, embed_dim=model.embed_dim, num_classes=model.num_classes,
        )
    if model.arch == "unet2d":
        try:
            return UNet2D(in_channels=1, channels=model.channels, channel_mults=model.channel_mults,
                          blocks_per_level=model.blocks_per_level, attention_levels=model.attention_levels,
                          embed_dim=model.embed_dim, num_classes=model.num_classes)
        except ValueError as err:
            raise AudiodiffError(f"model: {err}") from None
    raise AudiodiffError(f"unknown model.arch {model.arch!r}; expected 'diffwave' or 'unet2d'")


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
