"""``MelGenerator``: class labels in, log-mel spectrograms out, from a 2-D U-Net trained on mel images.

    gen = MelGenerator.from_pretrained("digits-export/")
    mel = gen([3, 7], seed=0, guidance=2.0)      # [2, n_mels, image_frames] on the vocoder's log-mel scale
    wav = Vocoder.from_pretrained(...)(mel)      # a vocoder trained on the same mel front end

An exported generator is a directory with ``config.json`` (mel, model and diffusion settings, class names) and
``model.safetensors`` (EMA weights), like a vocoder's but with its own ``format``; nothing is unpickled. A paired
vocoder (``audiodiff export --vocoder``) lives in its ``PAIRED_VOCODER`` subdirectory. Sampling
uses the shared samplers on ``[B, 1, n_mels, frames]`` and classifier-free guidance (Ho & Salimans 2022, eq. 6);
images are mapped back with ``MelImage.to_mel`` (``audio/spectro_image.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiodiff import artifacts
from audiodiff.audio.mel import MelConfig
from audiodiff.audio.spectro_image import MelImage
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.diffusion import NULL_LABEL, SAMPLERS, guided, prior, sigmas_for
from audiodiff.devices import resolve_device
from audiodiff.errors import AudiodiffError, check_count, check_seed
from audiodiff.factory import build_denoiser

FORMAT = "audiodiff-melgen"
PAIRED_VOCODER = artifacts.PAIRED_VOCODER  # the subdirectory of an exported generator that holds its paired vocoder


def paired_vocoder(path: str | Path) -> Path | None:
    """The paired vocoder directory of the exported generator at ``path``, or None if it has none."""
    paired = Path(path) / PAIRED_VOCODER
    return paired if (paired / "config.json").is_file() else None


class MelGenerator:
    """A class-conditional (or unconditional) log-mel generator around a ``UNet2D``."""

    def __init__(self, net: torch.nn.Module, mel: MelConfig, model: ModelConfig, diffusion: DiffusionConfig,
                 classes: list[str] | None = None):
        if model.arch != "unet2d":
            raise AudiodiffError(f"MelGenerator needs model.arch unet2d, got {model.arch!r}; use Vocoder for it")
        if classes is not None and (len(classes) > model.num_classes or
                                    not all(isinstance(c, str) and c for c in classes)):
            raise AudiodiffError(f"class names {classes!r}: expected at most model.num_classes "
                                 f"({model.num_classes}) non-empty strings")
        self.classes = list(classes) if classes else None
        self.net = net.eval()
        self.mel_config, self.model_config, self.diffusion_config = mel, model, diffusion
        self.denoiser = build_denoiser(self.net, diffusion)
        self.image = MelImage.for_mel(mel, model.image_frames)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> "MelGenerator":
        self.net.to(resolve_device(device))
        return self

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "MelGenerator":
        """Load a directory written by ``save_pretrained`` (or ``audiodiff export`` of a unet2d run)."""
        device = resolve_device(device)
        cfg, recipe, net = artifacts.load(Path(path), FORMAT, "mel generator")
        gen = cls(net, recipe.mel, recipe.model, recipe.diffusion, cfg.get("classes"))
        return gen.to(device)

    def save_pretrained(self, path: str | Path, fp16: bool = False) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``path``."""
        sections = {"mel": self.mel_config, "model": self.model_config, "diffusion": self.diffusion_config}
        extra = {"classes": self.classes} if self.classes else None
        return artifacts.save(path, self.net, FORMAT, sections, extra, fp16=fp16)

    def check_vocoder(self, vocoder, name) -> None:
        """Refuse a vocoder (``name`` for the message) whose mel settings differ from the generator's."""
        if vocoder.mel_config != self.mel_config:
            raise AudiodiffError(f"vocoder {name} uses other mel settings than this generator; train a vocoder with "
                                 f"the generator's mel section (recipes/*-vocoder.yaml), or use --vocoder griffinlim")

    def label(self, name: str | int) -> int:
        """The class index of a class name (``strings``, ``7``) or index; the names are the training run's."""
        if self.classes and str(name) in self.classes:
            return self.classes.index(str(name))
        if isinstance(name, int) or str(name).lstrip("-").isdigit():
            return int(name)
        known = ", ".join(self.classes) if self.classes else "none stored: pass an index"
        raise AudiodiffError(f"unknown class {name!r}; this generator's classes: {known}")

    @torch.no_grad()
    def __call__(self, labels=None, batch: int | None = None, frames: int | None = None, steps: int | None = None,
                 sampler: str | None = None, guidance: float = 1.0, seed: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Log-mels ``[B, n_mels, frames]`` (default ``model.image_frames``) for class ``labels`` (a list or
        ``[B]``; -1 or None: unconditional, then ``batch`` sets B). ``guidance`` is the CFG scale (1: none)."""
        device = self.device
        for name, value in (("batch", batch), ("frames", frames), ("steps", steps)):
            if value is not None:
                check_count(name, value)
        if seed is not None:
            seed = check_seed(seed)
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
            if self.model_config.num_classes == 0:
                raise AudiodiffError("this generator is unconditional: pass no labels")
            if (labels >= self.model_config.num_classes).any():
                raise AudiodiffError(f"labels must lie in 0..{self.model_config.num_classes - 1} (or -1), "
                                     f"got {labels.tolist()}")
        n = len(labels) if labels is not None else (batch or 1)
        if n == 0:
            raise AudiodiffError("labels is empty; pass at least one class label, or none for unconditional samples")
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(0 if seed is None else seed)
        sampler = sampler or self.diffusion_config.sampler
        steps = self.diffusion_config.sample_steps if steps is None else steps
        sigmas = sigmas_for(sampler, steps, self.denoiser.schedule).to(device)
        shape = (n, 1, self.mel_config.n_mels, self.model_config.image_frames if frames is None else frames)
        x = prior(shape, float(sigmas[0]), generator, device=device)
        denoise, extra = self.denoiser, {}
        if labels is not None:
            extra = {"class_labels": labels}
            if guidance != 1.0:
                denoise = guided(self.denoiser, guidance, {"class_labels": NULL_LABEL})
        image = SAMPLERS[sampler](denoise, x, sigmas, generator=generator, extra_args=extra)
        return self.image.to_mel(image[:, 0].float())
