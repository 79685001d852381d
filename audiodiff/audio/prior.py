"""The mel-shaped prior of PriorGrad (Lee et al., ICLR 2022, section 3.2): noise whose standard deviation follows
the conditioning mel's frame energy, so that the diffusion starts nearer the data and silence stays silent.

``std`` is the front end's RMS estimate of each frame (``MelSpectrogram.frame_rms``), floored (PriorGrad floors its
normalised energy at 0.1 of the loudest frame; an absolute floor needs no statistics of the data set) and
interpolated linearly between frame centres to one value per sample. The diffusion core only sees the tensor:
``Denoiser`` works in the coordinates ``x / std`` (``diffusion/denoiser.py``).
"""

from __future__ import annotations

import torch

from audiodiff.errors import AudiodiffError

PRIORS = ("none", "energy")


def prior_std(mel_fn, mel: torch.Tensor, kind: str, floor: float) -> torch.Tensor | None:
    """``mel [B, n_mels, F]`` -> per-sample noise std ``[B, 1, F * hop]``, or None for ``kind`` "none"."""
    if kind == "none":
        return None
    if kind != "energy":
        raise AudiodiffError(f"diffusion.prior: {kind!r} is not one of {', '.join(PRIORS)}")
    hop = mel_fn.config.hop_length
    rms = mel_fn.frame_rms(mel).clamp(min=floor)  # [B, F]
    # Frame f is centred on sample (f + 1/2) hop for both presets' framing as the upsampler aligns it; the
    # interpolation holds the edge values beyond the first and last centres.
    return torch.nn.functional.interpolate(rms.unsqueeze(1), scale_factor=hop, mode="linear", align_corners=False)
