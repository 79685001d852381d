"""The two kinds of model audiodiff trains, one object each, chosen by the recipe's ``model.arch``.

``WaveformFamily`` (``diffwave``): a DiffWave (Kong et al. 2021, ``models/diffwave.py``) denoising the waveform crop
``[B, 1, N * hop]``, conditioned on its mel (a vocoder), on nothing (unconditional) or on a class label.
``ImageFamily`` (``unet2d``): a 2-D U-Net (``models/unet2d.py``) denoising the crop's log-mel as an image
``[B, 1, n_mels, N]`` in ``[-1, 1]`` (``audio/spectro_image.py``), unconditional or class-conditional.

A family builds its backbone from the model section with explicit arguments, turns a crop (waveform and mel) into
the denoiser's clean sample ``x0`` and conditioning, checks what the declared ranges of ``config.py`` cannot see,
makes the sample validation logs, and names the inference object its runs export to. What differs between the two
kinds in training lives here: the training loop, validation, export and the factory ask the family instead of
comparing ``model.arch`` with a string. Adding a kind is adding a family to ``FAMILIES`` and its model section to
``config.MODEL_CONFIGS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from audiodiff.audio.mel import MelConfig
from audiodiff.audio.prior import MelPrior
from audiodiff.audio.spectro_image import MelImage
from audiodiff.config import ModelConfig, Recipe
from audiodiff.diffusion import SAMPLERS, prior, sigmas_for
from audiodiff.errors import AudiodiffError
from audiodiff.models import DiffWave, UNet2D


@dataclass(frozen=True)
class ValidationSample:
    """What validation shows of one held-out crop: a generated mel (or mel image) beside the crop's own, and for a
    waveform model the generated and original audio. ``what`` names the picture ("", " image")."""

    mel: torch.Tensor  # [n_mels, F]
    reference_mel: torch.Tensor  # [n_mels, F]
    audio: torch.Tensor | None = None  # [T]
    reference_audio: torch.Tensor | None = None  # [T]
    what: str = ""


class WaveformFamily:
    """DiffWave on waveforms: a mel-conditioned vocoder, or an unconditional / class-conditional waveform model."""

    arch = "diffwave"
    makes_mels = False  # its artefact turns mels into audio (or makes audio), so it pairs with no vocoder

    def build(self, model: ModelConfig, mel: MelConfig) -> nn.Module:
        return DiffWave(
            n_mels=mel.n_mels if model.conditional else 0, hop_length=mel.hop_length,
            residual_layers=model.residual_layers, residual_channels=model.residual_channels,
            dilation_cycle=model.dilation_cycle, embed_dim=model.embed_dim, num_classes=model.num_classes,
            mel_shift=model.mel_shift, mel_scale=model.mel_scale, init=model.init,
        )

    def check(self, recipe: Recipe) -> None:
        return None

    def inputs(self, recipe: Recipe, audio: torch.Tensor, mel: torch.Tensor, mel_fn) -> tuple[torch.Tensor, dict]:
        """``audio [B, 1, T]``, ``mel [B, n_mels, N]`` -> ``(x0 = audio, cond)``: the mel unless unconditional, and
        with a shaped prior (``diffusion.prior``) its transform (``audio/prior.py``)."""
        if not recipe.model.conditional:
            return audio, {}
        shaped = MelPrior.from_config(recipe.diffusion, mel_fn)
        return audio, ({"mel": mel} if shaped is None else {"mel": mel, "prior": shaped(mel)})

    @torch.no_grad()
    def validation_sample(self, net, denoiser, recipe: Recipe, x0, cond: dict, mel) -> ValidationSample | None:
        """The first crop vocoded from its conditioning mel (from pairs, the acoustic model's) with the recipe's
        default sampler (seed 0), beside the mel of its audio; None for a model with no mel to vocode (sampling those
        belongs to their generator, not to the training loop)."""
        if not recipe.model.conditional:
            return None
        from audiodiff.vocoder import Vocoder

        voc = Vocoder(net, recipe.mel, recipe.model, recipe.diffusion, recipe.fewstep.schedules())
        wav = voc(cond["mel"][:1], seed=0)[0]
        return ValidationSample(voc.mel(wav), mel[0], wav, x0[0, 0])

    def artefact_format(self) -> tuple[str, str]:
        """``(format tag of config.json, noun for messages)`` of the exported model."""
        from audiodiff import vocoder

        return vocoder.FORMAT, "model"

    def artefact(self, net: nn.Module, recipe: Recipe, classes: list[str] | None = None):
        """The inference object for trained weights: a ``Vocoder`` for a mel-conditioned model (with the schedule of
        its few-step fine-tuning, if any, as its tuned fast schedule), a ``WaveGenerator`` (with the run's class
        names) for an unconditional or class-conditional one."""
        if not recipe.model.conditional:
            from audiodiff.wavegen import WaveGenerator

            return WaveGenerator(net, recipe.mel, recipe.model, recipe.diffusion, classes)
        from audiodiff.vocoder import Vocoder

        return Vocoder(net, recipe.mel, recipe.model, recipe.diffusion, recipe.fewstep.schedules())


class ImageFamily:
    """A 2-D U-Net on log-mel images: an unconditional or class-conditional mel generator."""

    arch = "unet2d"
    makes_mels = True  # its artefact makes mels: an export may carry a paired vocoder (``audiodiff export --vocoder``)
    SAMPLE_STEPS = 6  # the validation sample: a seeded few-step DDIM sample, for a glance in TensorBoard

    def build(self, model: ModelConfig, mel: MelConfig) -> nn.Module:
        try:
            return UNet2D(in_channels=1, channels=model.channels, channel_mults=model.channel_mults,
                          blocks_per_level=model.blocks_per_level, attention_levels=model.attention_levels,
                          embed_dim=model.embed_dim, num_classes=model.num_classes)
        except ValueError as err:
            raise AudiodiffError(f"model: {err}") from None

    def check(self, recipe: Recipe) -> None:
        """A U-Net is trained on tiles of ``model.image_frames`` frames: the crops must have that width."""
        if recipe.data.crop_frames != recipe.model.image_frames:
            raise AudiodiffError(f"data.crop_frames ({recipe.data.crop_frames}) must equal model.image_frames "
                                 f"({recipe.model.image_frames}) for arch unet2d; set data.crop_frames: "
                                 f"{recipe.model.image_frames}")

    def inputs(self, recipe: Recipe, audio: torch.Tensor, mel: torch.Tensor, mel_fn) -> tuple[torch.Tensor, dict]:
        """``mel [B, n_mels, N]`` -> ``(x0 = its image [B, 1, n_mels, N], {})``: no mel conditioning."""
        image = MelImage.for_mel(recipe.mel, recipe.model.image_frames).to_image(mel)
        return image.unsqueeze(1), {}

    @torch.no_grad()
    def validation_sample(self, net, denoiser, recipe: Recipe, x0, cond: dict, mel) -> ValidationSample:
        """A seeded DDIM image for the first crop's conditioning (its class), beside the crop's own image."""
        device = x0.device
        sigmas = sigmas_for("ddim", self.SAMPLE_STEPS, denoiser.schedule).to(device)
        x = prior(x0[:1].shape, float(sigmas[0]), torch.Generator(device=device).manual_seed(0), device=device)
        image = SAMPLERS["ddim"](denoiser, x, sigmas, extra_args={k: v[:1] for k, v in cond.items()})
        return ValidationSample(image[0, 0], x0[0, 0], what=" image")

    def artefact_format(self) -> tuple[str, str]:
        from audiodiff import melgen

        return melgen.FORMAT, "mel generator"

    def artefact(self, net: nn.Module, recipe: Recipe, classes: list[str] | None = None):
        """The inference object for trained weights: a ``MelGenerator`` with the run's class names."""
        from audiodiff.melgen import MelGenerator

        return MelGenerator(net, recipe.mel, recipe.model, recipe.diffusion, classes)


FAMILIES = {f.arch: f for f in (WaveformFamily(), ImageFamily())}


def family_of(model: ModelConfig) -> WaveformFamily | ImageFamily:
    """The family of a model section (by its ``arch``)."""
    try:
        return FAMILIES[model.arch]
    except KeyError:
        raise AudiodiffError(f"unknown model.arch {model.arch!r}; expected one of {', '.join(FAMILIES)}") from None
