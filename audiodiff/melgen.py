"""``MelGenerator``: class labels in, log-mel spectrograms out, from a 2-D U-Net trained on mel images.

    gen = MelGenerator.from_pretrained("digits-export/")
    mel = gen([3, 7], seed=0, guidance=2.0)      # [2, n_mels, image_frames] on the vocoder's log-mel scale
    wav = Vocoder.from_pretrained(...)(mel)      # a vocoder trained on the same mel front end

An exported generator is a directory with ``config.json`` (mel, model and diffusion settings, class names) and
``model.safetensors`` (EMA weights), like a vocoder's but with its own ``format``; nothing is unpickled. A paired
vocoder (``audiodiff export --vocoder``) lives in its ``PAIRED_VOCODER`` subdirectory. Sampling
uses the shared samplers on ``[B, 1, n_mels, frames]`` and classifier-free guidance (Ho & Salimans 2022, eq. 6;
``inference/base.py``); images are mapped back with ``MelImage.to_mel`` (``audio/spectro_image.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiodiff import artifacts
from audiodiff.audio.mel import MelConfig
from audiodiff.audio.spectro_image import MelImage
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.errors import AudiodiffError, check_count
from audiodiff.factory import build_denoiser
from audiodiff.inference.base import GeneratorBase

FORMAT = "audiodiff-melgen"
PAIRED_VOCODER = artifacts.PAIRED_VOCODER  # the subdirectory of an exported generator that holds its paired vocoder


def paired_vocoder(path: str | Path) -> Path | None:
    """The paired vocoder directory of the exported generator at ``path``, or None if it has none."""
    paired = Path(path) / PAIRED_VOCODER
    return paired if (paired / "config.json").is_file() else None


class MelGenerator(GeneratorBase):
    """A class-conditional (or unconditional) log-mel generator around a ``UNet2D``."""

    FORMAT, NOUN = FORMAT, "mel generator"

    def __init__(self, net: torch.nn.Module, mel: MelConfig, model: ModelConfig, diffusion: DiffusionConfig,
                 classes: list[str] | None = None):
        if model.arch != "unet2d":
            raise AudiodiffError(f"MelGenerator needs model.arch unet2d, got {model.arch!r}; use Vocoder for it")
        self._init_configs(mel, model, diffusion)
        self._init_classes(classes)
        self.net = net.eval()
        self.denoiser = build_denoiser(self.net, diffusion)
        self.image = MelImage.for_mel(mel, model.image_frames)

    def check_vocoder(self, vocoder, name) -> None:
        """Refuse a vocoder (``name`` for the message) whose mel settings differ from the generator's."""
        if vocoder.mel_config != self.mel_config:
            raise AudiodiffError(f"vocoder {name} uses other mel settings than this generator; train a vocoder with "
                                 f"the generator's mel section (recipes/*-vocoder.yaml), or use --vocoder griffinlim")

    @torch.no_grad()
    def __call__(self, labels=None, batch: int | None = None, frames: int | None = None, steps: int | None = None,
                 sampler: str | None = None, guidance: float = 1.0, seed: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Log-mels ``[B, n_mels, frames]`` (default ``model.image_frames``) for class ``labels`` (a list or
        ``[B]``; -1 or None: unconditional, then ``batch`` sets B). ``guidance`` is the CFG scale (1: none)."""
        frames = self.model_config.image_frames if frames is None else check_count("frames", frames)
        image = self._sample(labels, batch, (self.mel_config.n_mels, frames), steps, sampler, guidance, seed,
                             generator)
        return self.image.to_mel(image[:, 0].float())
