"""``InferenceModel``: what every inference object shares (the network, its three config sections, the device it
runs on, and persistence through ``artifacts``), so that ``Vocoder``, ``MelGenerator`` and ``WaveGenerator`` load,
move and save the same way.

A subclass names its ``FORMAT`` (the config's format tag) and ``NOUN`` (for errors), and may override
``_from_artifact`` (how a loaded directory becomes the object, with the caller's settings), ``_saved_diffusion`` and
``_saved_extra`` (what ``save_pretrained`` writes besides the weights) and ``_moved`` (what else follows ``to``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from audiodiff import artifacts
from audiodiff.devices import resolve_device
from audiodiff.diffusion import NULL_LABEL, SAMPLERS, guided, prior, sigmas_for
from audiodiff.errors import AudiodiffError, check_count, check_options, check_seed


class InferenceModel:
    """A trained network with its mel, model and diffusion settings, ready to sample."""

    FORMAT: ClassVar[str]
    NOUN: ClassVar[str] = "model"
    DEFAULT_PATH: ClassVar[Path | None] = None  # what from_pretrained() loads without a path
    OPTIONS: ClassVar[tuple[str, ...]] = ()  # the keyword settings from_pretrained passes on to the constructor

    net: torch.nn.Module
    source: str = "(built in memory)"  # where from_pretrained loaded it from, for error messages

    def _init_configs(self, mel, model, diffusion) -> None:
        self.mel_config, self.model_config, self.diffusion_config = mel, model, diffusion

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    def to(self, device):
        """Move the model to ``device`` ("cpu", "cuda", "cuda:N" or a ``torch.device``); returns the object."""
        device = resolve_device(device)
        self._moved(device)
        return self

    def _moved(self, device: torch.device) -> None:
        self.net.to(device)

    # --- persistence ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device=None, **kwargs):
        """Load an exported model directory (``config.json`` + ``model.safetensors``, from ``save_pretrained`` or
        ``audiodiff export``) onto ``device``; ``kwargs`` are the constructor's settings (``cls.OPTIONS``)."""
        revision = kwargs.pop("revision", None)  # a Hub model's branch, tag or commit (artifacts.resolve)
        check_options(kwargs, cls.OPTIONS, f"{cls.__name__}.from_pretrained")
        device = resolve_device(device)
        if path is None and cls.DEFAULT_PATH is None:
            raise AudiodiffError(f"{cls.__name__}.from_pretrained needs the path of a directory made by "
                                 f"`audiodiff export`")
        path = Path(path) if path is not None else cls.DEFAULT_PATH
        hint = "the bundled model is missing from this install (reinstall audiodiff) or pass --model" \
            if path == cls.DEFAULT_PATH else "pass"
        cfg, recipe, net = artifacts.load(path, cls.FORMAT, cls.NOUN, hint, revision)
        obj = cls._from_artifact(net, recipe, cfg, **kwargs)
        obj.source = str(path)
        return obj.to(device)

    @classmethod
    def _from_artifact(cls, net, recipe, cfg: dict, **kwargs):
        return cls(net, recipe.mel, recipe.model, recipe.diffusion, **kwargs)

    def save_pretrained(self, path: str | Path, fp16: bool = False) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (the weights and settings this object uses) to ``path``;
        ``fp16`` stores the weights in half precision."""
        sections = {"mel": self.mel_config, "model": self.model_config, "diffusion": self._saved_diffusion()}
        return artifacts.save(path, self.net, self.FORMAT, sections, self._saved_extra(), fp16=fp16)

    def _saved_diffusion(self):
        return self.diffusion_config

    def _saved_extra(self) -> dict | None:
        return None


class GeneratorBase(InferenceModel):
    """What the generators share: class names and labels of a class-conditional model (``model.num_classes > 0``),
    and sampling from the prior with optional classifier-free guidance (Ho & Salimans 2022, eq. 6)."""

    OPTIONS = ()
    classes: list[str] | None

    def _init_classes(self, classes) -> None:
        n = self.model_config.num_classes
        if classes is not None and (len(classes) > n or not all(isinstance(c, str) and c for c in classes)):
            raise AudiodiffError(f"class names {classes!r}: expected at most model.num_classes ({n}) non-empty "
                                 f"strings")
        self.classes = list(classes) if classes else None

    @classmethod
    def _from_artifact(cls, net, recipe, cfg: dict, **kwargs):
        return cls(net, recipe.mel, recipe.model, recipe.diffusion, cfg.get("classes"), **kwargs)

    def _saved_extra(self) -> dict | None:
        return {"classes": self.classes} if self.classes else None

    def label(self, name: str | int) -> int:
        """The class index of a class name (``strings``, ``7``) or index; the names are the training run's."""
        if self.classes and str(name) in self.classes:
            return self.classes.index(str(name))
        if isinstance(name, int) or str(name).lstrip("-").isdigit():
            return int(name)
        known = ", ".join(self.classes) if self.classes else "none stored: pass an index"
        raise AudiodiffError(f"unknown class {name!r}; this generator's classes: {known}")

    def _sample(self, labels, batch, size: tuple, steps, sampler, guidance: float, seed, generator) -> torch.Tensor:
        """``[B, 1, *size]`` samples for class ``labels`` (a list or ``[B]``; -1 or None: unconditional, then
        ``batch`` sets B), with ``steps`` of ``sampler`` (None: the model's) and CFG scale ``guidance`` (1: none)."""
        device = self.device
        for name, value in (("batch", batch), ("steps", steps)):
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
        x = prior((n, 1, *size), float(sigmas[0]), generator, device=device)
        denoise, extra = self.denoiser, {}
        if labels is not None:
            extra = {"class_labels": labels}
            if guidance != 1.0:
                denoise = guided(self.denoiser, guidance, {"class_labels": NULL_LABEL})
        return SAMPLERS[sampler](denoise, x, sigmas, generator=generator, extra_args=extra)
