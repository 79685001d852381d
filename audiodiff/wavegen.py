"""``WaveGenerator``: waveforms from noise alone, from an unconditional or class-conditional DiffWave
(``model.conditional: false``; ``model.num_classes > 0`` for classes), as in DiffWave's unconditional and
class-conditional SC09 experiments (Kong et al. 2021, sec. 5.2-5.3).

    gen = WaveGenerator.from_pretrained("sc09-export/")
    wav = gen([3, 7], seed=0, guidance=2.0)      # [2, frames * hop] in [-1, 1]

An exported waveform model is a directory like a vocoder's (``audiodiff export`` writes it with the vocoder's
format tag; class names in ``classes`` when stored); nothing is unpickled. Labels, guidance and seeds work as in
``MelGenerator`` (``inference/base.py``); the length is given in mel frames of the model's hop, so that
``frames`` means the same for both generators.
"""

from __future__ import annotations

import torch

from audiodiff.audio.mel import MelConfig
from audiodiff.config import DataConfig, DiffusionConfig, ModelConfig
from audiodiff.errors import AudiodiffError, check_count
from audiodiff.factory import build_denoiser
from audiodiff.inference.base import GeneratorBase
from audiodiff.vocoder import FORMAT

DEFAULT_FRAMES = DataConfig.crop_frames  # the training crop's length by default: what the model has seen


class WaveGenerator(GeneratorBase):
    """An unconditional (or class-conditional) waveform generator around a ``DiffWave`` without mel input."""

    FORMAT, NOUN = FORMAT, "waveform model"

    def __init__(self, net: torch.nn.Module, mel: MelConfig, model: ModelConfig, diffusion: DiffusionConfig,
                 classes: list[str] | None = None):
        if model.arch != "diffwave":
            raise AudiodiffError(f"WaveGenerator needs model.arch diffwave, got {model.arch!r}; use MelGenerator "
                                 f"for it")
        if model.conditional:
            raise AudiodiffError("this model is mel-conditioned (model.conditional: true): it turns mels into audio; "
                                 "use Vocoder (audiodiff synth) for it")
        self._init_configs(mel, model, diffusion)
        self._init_classes(classes)
        self.net = net.eval().requires_grad_(False)
        self.denoiser = build_denoiser(self.net, diffusion)

    @torch.no_grad()
    def __call__(self, labels=None, batch: int | None = None, frames: int | None = None, steps: int | None = None,
                 sampler: str | None = None, guidance: float = 1.0, seed: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Waveforms ``[B, frames * hop]`` in [-1, 1] (``frames`` default ``DEFAULT_FRAMES``) for class ``labels``
        (a list or ``[B]``; -1 or None: unconditional, then ``batch`` sets B). ``guidance`` is the CFG scale."""
        frames = DEFAULT_FRAMES if frames is None else check_count("frames", frames)
        wav = self._sample(labels, batch, (frames * self.mel_config.hop_length,), steps, sampler, guidance, seed,
                           generator)
        return wav[:, 0].float().clamp(-1, 1)
