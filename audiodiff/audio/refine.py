"""Mel-consistency refinement: pull a waveform's spectral envelope onto the mel it was made from.

A diffusion vocoder after a few steps gets the fine structure (phase, harmonics) mostly right but its envelope
drifts: an under-trained DiffWave is a few dB too quiet, more so in quiet frames. The conditioning mel says what
the envelope should be, so each iteration

1. takes the STFT of the waveform with the mel front end itself (``MelSpectrogram.stft``: same framing),
2. computes its mel and the gain per (band, frame) that would turn it into the target mel (clamped to
   ``[1 / max_gain, max_gain]``),
3. spreads the band gains over the linear-frequency bins with the filterbank weights (bins no band covers, such
   as those above ``fmax``, keep gain 1) and scales the STFT, keeping its phase,
4. resynthesises by weighted overlap-add,
5. and, as the fast Griffin-Lim of Perraudin, Balazs and Sondergaard (2013) does, starts the next iteration from
   the result pushed further along its last move: ``y = x_n + momentum * (x_n - x_(n-1))``. The returned signal is
   the last ``x_n``, which is consistent (an overlap-add).

It is Griffin-Lim's consistency step with the network's phase as the start and the mel as the constraint, so it
needs a few iterations, not hundreds, and never invents a phase. ``docs/quality.md`` measures what it changes.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from audiodiff.audio.mel import MelSpectrogram, decompress

ITERATIONS = 32  # the default: on both speech test splits 32 beat 8 on every metric (docs/quality.md)
MOMENTUM = 0.9  # the default: 32 iterations with it beat 32 without on every metric of both splits (docs/quality.md)


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """``frames [B, n_fft, n]`` placed ``hop`` apart and summed: ``[B, (n - 1) * hop + n_fft]``. When ``hop``
    divides ``n_fft`` (every preset), frame ``i``'s ``j``-th hop-long segment lands on output block ``i + j``, so
    the sum is ``n_fft / hop`` shifted additions, far cheaper than ``F.fold`` on a GPU."""
    B, n_fft, n = frames.shape
    if n_fft % hop:
        total = (n - 1) * hop + n_fft
        return F.fold(frames, output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop))[:, 0, 0]
    k = n_fft // hop
    seg = frames.reshape(B, k, hop, n)
    out = frames.new_zeros(B, hop, n + k - 1)
    for j in range(k):
        out[..., j:j + n] += seg[:, j]
    return out.transpose(1, 2).reshape(B, (n + k - 1) * hop)


def _istft(spec: torch.Tensor, fn: MelSpectrogram, window: torch.Tensor, norm: torch.Tensor,
           length: int) -> torch.Tensor:
    """Weighted overlap-add inverse of ``fn.stft``; ``window`` is the analysis window padded to ``n_fft`` and
    ``norm`` the overlap-added squared window (``_window_norm``), both fixed for a refinement call."""
    c = fn.config
    out = _overlap_add(torch.fft.irfft(spec, n=c.n_fft, dim=1) * window[:, None], c.hop_length)
    left = c.pad[0]
    return (out / norm)[:, left:left + length]


def _window_norm(fn: MelSpectrogram, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = fn.config
    window = F.pad(fn.window, ((c.n_fft - c.win_length) // 2, (c.n_fft - c.win_length + 1) // 2))
    norm = _overlap_add(window.square()[None, :, None].expand(1, -1, frames).contiguous(), c.hop_length)[0]
    return window, norm.clamp(min=1e-8)


@torch.no_grad()
def refine(audio: torch.Tensor, log_mel: torch.Tensor, fn: MelSpectrogram, iters: int = ITERATIONS,
           max_gain: float = 4.0, block_frames: int = 1024, momentum: float = MOMENTUM) -> torch.Tensor:
    """``audio [B, T]`` whose mel (front end ``fn``) moves towards ``log_mel [B, n_mels, T / hop]``.

    Long signals are refined in blocks of ``block_frames`` frames, each with enough context on both sides that the
    result is the whole-signal one (an iteration moves information at most ``n_fft`` samples), so memory stays
    bounded for a 10-minute mel."""
    c = fn.config
    hop = c.hop_length
    margin = (iters + 1) * -(-c.n_fft // hop)  # frames of context that one block needs on each side
    frames = log_mel.shape[-1]
    if not 0 <= momentum < 1:
        raise ValueError(f"refinement momentum must lie in [0, 1), got {momentum}; 0 turns it off")
    if iters == 0 or frames <= block_frames + 2 * margin:
        return _refine(audio, log_mel, fn, iters, max_gain, momentum)
    out = torch.empty_like(audio, dtype=torch.float32)
    for start in range(0, frames, block_frames):
        end = min(frames, start + block_frames)
        a, e = max(0, start - margin), min(frames, end + margin)
        tail = e == frames  # the last block also owns the samples after the last whole frame
        seg = audio[:, a * hop: None if tail else e * hop]
        done = _refine(seg, log_mel[..., a:e], fn, iters, max_gain, momentum)
        keep_end = None if end == frames else (end - a) * hop
        out[:, start * hop: None if end == frames else end * hop] = done[:, (start - a) * hop: keep_end]
    return out


def _refine(audio: torch.Tensor, log_mel: torch.Tensor, fn: MelSpectrogram, iters: int,
            max_gain: float, momentum: float) -> torch.Tensor:
    c = fn.config
    target = decompress(log_mel.float(), c)
    fbank = fn.fbank  # [n_mels, bins]
    cover = fbank.sum(0)  # [bins]
    spread = fbank / cover.clamp(min=1e-8)  # band gain -> bin gain: a weighted mean of the bands over each bin
    x = prev = audio.float()  # every iteration keeps its length, so the frame count, window and norm are fixed
    frames = min(c.num_frames(x.shape[-1]), target.shape[-1])
    window, norm = _window_norm(fn, frames)
    for _ in range(iters):
        # x + momentum * (x - prev) in one kernel; prev is x's predecessor (the input itself at first)
        y = torch.lerp(prev, x, 1 + momentum) if momentum else x
        prev = x
        spec = fn.stft(y)  # [B, bins, frames]
        mel = fbank @ fn.magnitude(spec)  # [B, n_mels, frames]
        gain = (target[..., :frames] / mel[..., :frames].clamp(min=1e-5)).clamp(1 / max_gain, max_gain)
        if c.mag_power != 1:  # the mel of |X|^p: the magnitudes' gain is the p-th root
            gain = gain ** (1 / c.mag_power)
        bins = spread.T @ gain  # [B, bins, frames]
        bins = torch.where(cover[:, None] > 1e-8, bins, torch.ones_like(bins))
        spec = spec[..., :frames] * bins
        x = _istft(spec, fn, window, norm, x.shape[-1])
        if x.shape[-1] < audio.shape[-1]:
            x = F.pad(x, (0, audio.shape[-1] - x.shape[-1]))
    return x
