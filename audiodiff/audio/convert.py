"""Conversion of a log-mel from one front end's convention to another's, so that a vocoder trained on one serves an
acoustic model that emits the other (``audiodiff synth --mel-preset NAME``).

The value conventions invert exactly (``mel.decompress`` then ``mel.compress``): log base, dB reference and range
normalisation, global mean-variance statistics, additive or clamping floors, the diffwave preset's [0, 1] map, and
DiffWave's normalised STFT (a constant gain). What a floor or a clip removed stays removed. The rest is approximate,
and docs/interop.md measures it on real speech:

- another band layout (sample rate, n_fft, band count or edges, Slaney or HTK mels) maps the linear mel through a
  least-squares filterbank mapping (:func:`band_mapping`): the matrix ``M`` minimising ``||M A - B||`` where the
  rows of ``A`` and ``B`` are the two filterbanks on one fine frequency grid, each divided by its FFT bin spacing (a
  band sums bins). Bands above the source's ``fmax`` cannot be recovered and come out near the floor.
- other framing (hop, sample rate, centred or HiFi-GAN padding) interpolates the log-mel linearly between frames at
  the times of the target's frame centres.
- another magnitude power raises the linear mel to the ratio of the powers (a filterbank sum of ``|X|^2`` is not
  the square of the sum of ``|X|``); another window shape or padding mode is ignored (edge frames and ~0.01 nats).
"""

from __future__ import annotations


import numpy as np
import torch
import torchaudio

from audiodiff.audio.mel import MelConfig, compress, decompress
from audiodiff.errors import AudiodiffError

LAYOUT = ("sample_rate", "n_fft", "n_mels", "fmin", "fmax", "mel_scale", "mel_norm")
GRID_HZ = 2.0  # the frequency grid of band_mapping, in Hz


def _top(c: MelConfig) -> float:
    return c.fmax if c.fmax is not None else c.sample_rate / 2


def same_layout(src: MelConfig, dst: MelConfig) -> bool:
    """Whether the two front ends have the same filterbank (then the band values need no mapping)."""
    return all(getattr(src, k) == getattr(dst, k) for k in LAYOUT)


def same_framing(src: MelConfig, dst: MelConfig) -> bool:
    """Whether frame ``i`` of both covers the same samples of the same audio."""
    return (src.sample_rate, src.hop_length, _offset(src)) == (dst.sample_rate, dst.hop_length, _offset(dst))


def approximations(src: MelConfig, dst: MelConfig) -> list[str]:
    """What a conversion from ``src`` to ``dst`` approximates (empty: exact above the floors)."""
    out = []
    if not same_layout(src, dst):
        out.append("band layout (least-squares filterbank mapping)")
    if not same_framing(src, dst):
        out.append("framing (frames interpolated in time)")
    if src.mag_power != dst.mag_power:
        out.append("magnitude power")
    if (src.window_periodic, src.win_length, src.pad_mode) != (dst.window_periodic, dst.win_length, dst.pad_mode):
        out.append("window or padding (ignored)")
    return out


def band_mapping(src: MelConfig, dst: MelConfig) -> torch.Tensor:
    """``[dst.n_mels, src.n_mels]`` float64: the least-squares map from ``src``'s linear mel bands to ``dst``'s (see
    the module docstring); the identity where the layouts agree."""
    if same_layout(src, dst):
        return torch.eye(src.n_mels, dtype=torch.float64)
    top = max(src.sample_rate, dst.sample_rate) // 2
    grid = int(top / GRID_HZ) + 1
    a, b = (_continuous_fbank(c, grid, top) for c in (src, dst))  # [n_mels, grid]
    # M A = B in the least-squares sense: A^T M^T = B^T
    return torch.linalg.lstsq(a.T, b.T, driver="gelsd").solution.T.contiguous()


def _continuous_fbank(c: MelConfig, grid: int, top: int) -> torch.Tensor:
    fb = torchaudio.functional.melscale_fbanks(
        n_freqs=grid, f_min=c.fmin, f_max=_top(c), n_mels=c.n_mels, sample_rate=2 * top, norm=c.mel_norm,
        mel_scale=c.mel_scale).double().T  # [n_mels, grid]
    return fb * ((top / (grid - 1)) / (c.sample_rate / c.n_fft))  # a band sums bins spaced sample_rate / n_fft


def convert_mel(mel, src: MelConfig, dst: MelConfig, mapping: torch.Tensor | None = None):
    """``mel [..., src.n_mels, frames]`` in the convention ``src`` -> ``[..., dst.n_mels, frames']`` in ``dst``'s
    (numpy in, numpy out; a tensor gives a tensor). Exact where :func:`approximations` is empty, but for what
    ``src``'s floor or clipping removed. ``mapping``: ``band_mapping(src, dst)``, for a caller converting many mels
    (a least-squares solve each call otherwise)."""
    is_numpy = not isinstance(mel, torch.Tensor)
    x = torch.as_tensor(np.asarray(mel) if is_numpy else mel).double()
    if x.ndim < 2 or x.shape[-2] != src.n_mels:
        raise AudiodiffError(f"mel of shape {list(x.shape)} has not the {src.n_mels} bands of its stated convention; "
                             f"expected [..., {src.n_mels}, frames] (check --mel-preset)")
    lin = decompress(x, src).clamp(min=0)  # the filterbank applied to |X|^src.mag_power
    if src.normalized:
        lin = lin * _window_norm(src) ** src.mag_power
    if src.mag_power != dst.mag_power:
        lin = lin.pow(dst.mag_power / src.mag_power)
    if not same_layout(src, dst):
        mapping = band_mapping(src, dst) if mapping is None else mapping
        lin = torch.einsum("nm,...mt->...nt", mapping, lin).clamp(min=0)
    if not same_framing(src, dst):
        lin = _reframe(lin, src, dst)
    if dst.normalized:
        lin = lin / _window_norm(dst) ** dst.mag_power
    out = compress(lin, dst).float()
    return out.numpy() if is_numpy else out.to(mel.dtype if mel.is_floating_point() else torch.float32)


def _window_norm(c: MelConfig) -> float:
    return float(torch.hann_window(c.win_length, periodic=c.window_periodic, dtype=torch.float64).square().sum()) ** .5


def _offset(c: MelConfig) -> float:
    """The sample (of the unpadded audio) at the centre of frame 0."""
    return c.n_fft / 2 - c.pad[0]


def _reframe(lin: torch.Tensor, src: MelConfig, dst: MelConfig) -> torch.Tensor:
    frames = lin.shape[-1]
    left, right = src.pad
    samples = (frames - 1) * src.hop_length + src.n_fft - left - right + src.hop_length // 2  # a length giving frames
    n = dst.num_frames(round(samples * dst.sample_rate / src.sample_rate))
    t = (torch.arange(n, dtype=torch.float64) * dst.hop_length + _offset(dst)) / dst.sample_rate  # centres, seconds
    pos = ((t * src.sample_rate - _offset(src)) / src.hop_length).clamp(0, frames - 1)  # fractional src frames
    lo = pos.floor().long().clamp(max=frames - 1)
    hi = (lo + 1).clamp(max=frames - 1)
    w = pos - lo
    log = lin.clamp(min=1e-12).log()  # interpolate spectra geometrically
    return (log[..., lo] * (1 - w) + log[..., hi] * w).exp()


def describe(src_name: str, dst_name: str, src: MelConfig, dst: MelConfig) -> str:
    """One line for the user: what converting ``src_name`` to ``dst_name`` does."""
    approx = approximations(src, dst)
    if not approx:
        return f"converted the {src_name} mel to {dst_name} exactly (values only)"
    return f"converted the {src_name} mel to {dst_name}; approximate in: {', '.join(approx)} (docs/interop.md)"


__all__ = ["approximations", "band_mapping", "convert_mel", "describe", "same_framing", "same_layout"]
