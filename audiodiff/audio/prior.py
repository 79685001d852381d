"""The mel-shaped prior of PriorGrad (Lee et al., ICLR 2022, section 3.2): noise whose standard deviation follows
the conditioning mel's frame energy, so that the diffusion starts nearer the data and silence stays silent.

As in PriorGrad, ``std`` lies in ``[floor, 1]``: the front end's RMS estimate of each frame
(``MelSpectrogram.frame_rms``) over a reference ``level``, clamped (PriorGrad divides its frame energy by the data
set's largest and floors it at 0.1; a fixed reference level needs no statistics of the data set, and gives every
crop of a recording the values its whole mel gives). Frames at or above ``level`` get the plain model's noise, quieter
ones proportionally less. ``std`` is interpolated linearly between frame centres to one value per sample. The
diffusion core only sees the tensor: ``Denoiser`` works in the coordinates ``x / std`` (``diffusion/denoiser.py``).

A first version used the RMS itself (std about 0.1 in loud speech, floor 0.01): the network then met every noise
level 20 dB lower than the schedule's, and after 5 minutes of training its 6-step output kept white noise above
4 kHz, 2-3 nats over the recording's mel there, and scored worse than Griffin-Lim (docs/quality.md).
"""

from __future__ import annotations

import torch

from audiodiff.errors import AudiodiffError

PRIORS = ("none", "energy")


def prior_std(mel_fn, mel: torch.Tensor, kind: str, floor: float, level: float) -> torch.Tensor | None:
    """``mel [B, n_mels, F]`` -> per-sample noise std ``[B, 1, F * hop]`` in ``[floor, 1]``, or None for ``kind``
    "none"."""
    if kind == "none":
        return None
    if kind != "energy":
        raise AudiodiffError(f"diffusion.prior: {kind!r} is not one of {', '.join(PRIORS)}")
    hop = mel_fn.config.hop_length
    rms = (mel_fn.frame_rms(mel) / level).clamp(min=floor, max=1.0)  # [B, F]
    # Frame f is centred on sample (f + 1/2) hop for both presets' framing as the upsampler aligns it; the
    # interpolation holds the edge values beyond the first and last centres.
    return torch.nn.functional.interpolate(rms.unsqueeze(1), scale_factor=hop, mode="linear", align_corners=False)
