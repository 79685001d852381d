"""The mel-shaped priors: noise ``L z`` (``z`` white) shaped by the conditioning mel, so that the diffusion starts
nearer the data and silence stays silent.

``energy`` (PriorGrad, Lee et al., ICLR 2022, section 3.2): ``L = diag(std)``, the std following the frame energy.
As in PriorGrad, ``std`` lies in ``[floor, 1]``: the front end's RMS estimate of each frame
(``MelSpectrogram.frame_rms``) over a reference ``level``, clamped (PriorGrad divides its frame energy by the data
set's largest and floors it at 0.1; a fixed reference level needs no statistics of the data set, and gives every
crop of a recording the values its whole mel gives). Frames at or above ``level`` get the plain model's noise, quieter
ones proportionally less. ``std`` is interpolated linearly between frame centres to one value per sample.

``envelope`` (SpecGrad, Koizumi et al., Interspeech 2022): ``L`` a time-varying filter whose magnitude response in
each frame follows the mel's spectral envelope (``audio/frame_filter.py``). The response of frame ``f`` at bin
``k`` is ``max(g_f s_fk, floor)``: ``g_f`` the energy prior's std of that frame (so loud frames get about unit
variance and quiet ones proportionally less), ``s_fk`` the envelope's shape at unit mean square over the bins. The
shape: each band's power density relative to white noise, ``(mel_m / g_m)^2`` (``frame_rms``'s per-band terms),
interpolated in log power between the bands' centre frequencies onto the filter's bins (held beyond the first and
last band: the mel says nothing above its ``fmax``, where the noise stays at the top band's level), then smoothed
by cepstral liftering (``LIFTER`` coefficients) so that the harmonics the low bands resolve do not become the
noise's. The floor bounds ``L^-1`` (the loss's weighting) by ``1 / floor``, as PriorGrad's floor does.

Why a reference level and not the RMS itself (about 0.1 in loud speech): that std would scale every noise level
of the schedule down by about 20 dB, so the network would not meet the levels the schedule is designed for; it
scores worse (``docs/quality.md``).

The diffusion core only sees the transform (``apply``, ``whiten``): ``Denoiser`` works in the coordinates
``L^-1 x`` (``diffusion/denoiser.py``). ``MelPrior`` builds it from a mel, and slices a whole mel's parameters for
a chunk of frames, so that chunked synthesis agrees with whole synthesis.
"""

from __future__ import annotations

import torch

from audiodiff.audio.frame_filter import FrameFilter
from audiodiff.audio.mel import decompress
from audiodiff.diffusion.denoiser import Diagonal
from audiodiff.errors import AudiodiffError

PRIORS = ("none", "energy", "envelope")
LIFTER = 24  # cepstral coefficients kept: 1.1 ms at 22.05 kHz, below any speaking voice's period


def frame_std(mel_fn, mel: torch.Tensor, floor: float, level: float) -> torch.Tensor:
    """``mel [B, n_mels, F]`` -> the energy prior's std of each frame ``[B, F]``: the frame's RMS over ``level``,
    clamped to ``[floor, 1]``. The envelope prior scales its responses by the same value."""
    return (mel_fn.frame_rms(mel) / level).clamp(min=floor, max=1.0)


def prior_std(mel_fn, mel: torch.Tensor, floor: float, level: float) -> torch.Tensor:
    """``mel [B, n_mels, F]`` -> the energy prior's per-sample noise std ``[B, 1, F * hop]`` in ``[floor, 1]``."""
    hop = mel_fn.config.hop_length
    rms = frame_std(mel_fn, mel, floor, level)  # [B, F]
    # Frame f is centred on sample (f + 1/2) hop for both presets' framing as the upsampler aligns it; the
    # interpolation holds the edge values beyond the first and last centres.
    return torch.nn.functional.interpolate(rms.unsqueeze(1), scale_factor=hop, mode="linear", align_corners=False)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``fp [..., M, F]`` at increasing knots ``xp [M]``, evaluated at ``x [K]`` (ends held)."""
    i = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)  # [K]
    t = ((x - xp[i - 1]) / (xp[i] - xp[i - 1])).clamp(0, 1)[:, None]
    return fp[..., i - 1, :] * (1 - t) + fp[..., i, :] * t


def envelope_gains(mel_fn, mel: torch.Tensor, floor: float, level: float) -> torch.Tensor:
    """``mel [B, n_mels, F]`` -> the envelope prior's magnitude responses ``[B, 2 hop + 1, F]`` (module
    docstring) for a ``FrameFilter`` of frame length ``4 hop``."""
    c = mel_fn.config
    n = 4 * c.hop_length
    with torch.autocast(mel.device.type, enabled=False):
        fb = mel_fn.fbank.float()  # [n_mels, bins of the mel's n_fft]
        mel_freqs = torch.arange(fb.shape[1], device=fb.device) * (c.sample_rate / c.n_fft)
        centres = (fb * mel_freqs).sum(1) / fb.sum(1).clamp(min=1e-12)  # [n_mels], increasing
        gain = mel_fn.band_gain  # [n_mels]
        log_density = 2 * (decompress(mel.float(), c) / gain[:, None]).clamp(min=1e-12).log()  # [B, M, F]
        bins = torch.arange(n // 2 + 1, device=fb.device) * (c.sample_rate / n)
        log_env = _interp(bins, centres, log_density)  # [B, K, F]
        cep = torch.fft.irfft(log_env, n, dim=-2)  # real cepstrum of the (even) log-power spectrum
        keep = torch.zeros(n, device=fb.device)
        keep[:LIFTER] = 1
        keep[n - LIFTER + 1:] = 1
        log_env = torch.fft.rfft(cep * keep[:, None], dim=-2).real  # [B, K, F]: the smoothed envelope
        power = (log_env - log_env.amax(-2, keepdim=True)).exp()
        shape = (power / power.mean(-2, keepdim=True)).sqrt()  # unit mean square over the bins
        g = frame_std(mel_fn, mel, floor, level)  # [B, F]: the energy prior's std
        return (g.unsqueeze(-2) * shape).clamp(min=floor)


class MelPrior:
    """``diffusion.prior`` as a function of the conditioning mel: ``params(mel)`` for a whole mel, ``chunk`` of
    them for frames ``[a, e)``, and ``transform(params)``, the ``L`` the denoiser applies (``apply``/``whiten``)."""

    def __init__(self, kind: str, mel_fn, floor: float, level: float):
        if kind not in PRIORS[1:]:
            raise AudiodiffError(f"diffusion.prior: {kind!r} is not one of {', '.join(PRIORS)}")
        self.kind, self.mel_fn, self.floor, self.level = kind, mel_fn, floor, level
        self.hop = mel_fn.config.hop_length

    @classmethod
    def from_config(cls, diffusion, mel_fn) -> "MelPrior | None":
        """The prior of a ``DiffusionConfig``, or None for ``prior: none``."""
        if diffusion.prior == "none":
            return None
        return cls(diffusion.prior, mel_fn, diffusion.prior_floor, diffusion.prior_level)

    def params(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel [B, n_mels, F]`` -> ``std [B, 1, F * hop]`` (energy) or responses ``[B, 2 hop + 1, F]``
        (envelope): the tensor a chunk slices on its last axis."""
        if self.kind == "energy":
            return prior_std(self.mel_fn, mel, self.floor, self.level)
        return envelope_gains(self.mel_fn, mel, self.floor, self.level)

    def chunk(self, params: torch.Tensor, a: int, e: int) -> torch.Tensor:
        """The slice of ``params`` for mel frames ``[a, e)``."""
        unit = self.hop if self.kind == "energy" else 1
        return params[..., a * unit: e * unit]

    def transform(self, params: torch.Tensor):
        """``L`` of ``params``: an object with ``apply(z) = L z`` and ``whiten(x) = L^-1 x``."""
        return Diagonal(params) if self.kind == "energy" else FrameFilter(params, self.hop)

    def __call__(self, mel: torch.Tensor):
        return self.transform(self.params(mel))
