"""Waveform discriminators for adversarial fine-tuning: multi-period (HiFi-GAN) and multi-resolution (UnivNet).

``PeriodDiscriminator`` (Kong et al. 2020, HiFi-GAN, sec. 2.3): the waveform ``[B, 1, T]``, reflect-padded to a
multiple of the period ``p``, is folded into a 2-D map ``[B, 1, T / p, p]`` whose column ``j`` holds the samples
``j, j + p, j + 2p, ...``; convolutions with kernels ``(k, 1)`` and strides ``(3, 1)`` then look at each phase of
the period separately. Channels 32, 128, 512, 1024, 1024 and a 1-channel output convolution, leaky ReLU 0.1,
weight normalisation, as the paper's configuration. ``MultiPeriodDiscriminator``: one per period of
``(2, 3, 5, 7, 11)``, the primes that avoid overlapping periods (HiFi-GAN's choice).

``ResolutionDiscriminator`` (Jang et al. 2021, UnivNet, sec. 2.3; kept by BigVGAN, Lee et al. 2023, in place of
HiFi-GAN's multi-scale discriminator): 2-D convolutions on the linear magnitude spectrogram ``[B, 1, bins, frames]``
of one STFT resolution ``(n_fft, hop, win)``; kernels ``(3, 9)`` (frequency, time), strides 2 along time, 32
channels. ``MultiResolutionDiscriminator``: the resolutions ``(1024, 120, 600), (2048, 240, 1200), (512, 50, 240)``
of UnivNet and BigVGAN at 24 kHz (``RESOLUTIONS``), kept at 22.05 kHz as BigVGAN's 22 kHz models keep them.

Every discriminator returns ``(logits, features)``: one flattened logit map ``[B, n]`` per sub-discriminator and
the activations of every layer (for feature matching), lists in sub-discriminator order. ``Discriminators`` holds
both kinds, which is what the fine-tuning trains (``training/fewstep.py``). The modules take explicit arguments
and know nothing of configs or of the diffusion model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

PERIODS = (2, 3, 5, 7, 11)
RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))  # (n_fft, hop, window length)
PERIOD_CHANNELS = (32, 128, 512, 1024, 1024)
RESOLUTION_CHANNELS = 32
SLOPE = 0.1  # leaky ReLU slope (HiFi-GAN, BigVGAN)

Output = tuple[list[torch.Tensor], list[torch.Tensor]]  # (logits [B, n] per sub-discriminator, every feature map)


def _conv_stack(h: torch.Tensor, convs: nn.ModuleList, post: nn.Module):
    """Both sub-discriminators' body: leaky-ReLU convolutions, then the one-channel output convolution;
    ``(logits [B, n], every layer's feature maps)``."""
    features = []
    for conv in convs:
        h = F.leaky_relu(conv(h), SLOPE)
        features.append(h)
    h = post(h)
    features.append(h)
    return h.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's sub-discriminator of one period ``period``: ``[B, 1, T] -> (logits [B, n], features)``."""

    def __init__(self, period: int, channels=PERIOD_CHANNELS, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be at least 1, got {period}")
        self.period = period
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (kernel_size, 1), (stride if i < len(channels) - 1 else 1, 1),
                                  padding=(kernel_size // 2, 0)))
            for i, (cin, cout) in enumerate(zip(widths, widths[1:])))
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor):
        b, c, t = x.shape
        pad = -t % self.period
        if pad:  # reflect needs pad < t: fine for any crop longer than the period
            x = F.pad(x, (0, pad), mode="reflect")
        h = x.reshape(b, c, (t + pad) // self.period, self.period)  # [B, 1, T / p, p]
        return _conv_stack(h, self.convs, self.post)


class ResolutionDiscriminator(nn.Module):
    """UnivNet's sub-discriminator of one STFT resolution: ``[B, 1, T] -> (logits [B, n], features)``."""

    def __init__(self, n_fft: int, hop: int, win: int, channels: int = RESOLUTION_CHANNELS):
        super().__init__()
        if not 0 < hop <= win <= n_fft:
            raise ValueError(f"resolution (n_fft {n_fft}, hop {hop}, win {win}): expected 0 < hop <= win <= n_fft")
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.register_buffer("window", torch.hann_window(win), persistent=False)  # rebuilt, never saved
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4))),
            *(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))) for _ in range(3)),
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` -> the linear magnitude ``[B, 1, n_fft / 2 + 1, frames]``, computed in float32 (the STFT
        has no bf16 kernel, and its magnitudes span more than bf16 resolves)."""
        with torch.autocast(x.device.type, enabled=False):
            edge = (self.n_fft - self.hop) // 2  # frames = ceil(T / hop) or so, as UnivNet's reflect padding
            y = F.pad(x.float(), (edge, edge), mode="reflect")[:, 0]
            spec = torch.stft(y, self.n_fft, self.hop, self.win, window=self.window.float(), center=False,
                              return_complex=True)
            # |X| with a floor inside the root: its gradient stays finite at exact zeros (a silent crop)
            return (spec.real.square() + spec.imag.square() + 1e-9).sqrt().unsqueeze(1)

    def forward(self, x: torch.Tensor):
        return _conv_stack(self.magnitude(x), self.convs, self.post)


class _Several(nn.Module):
    """Sub-discriminators applied to the same waveform, outputs concatenated in order."""

    discriminators: nn.ModuleList

    def forward(self, x: torch.Tensor) -> Output:
        logits, features = [], []
        for d in self.discriminators:
            out, feats = d(x)
            logits.append(out)
            features.extend(feats)
        return logits, features


class MultiPeriodDiscriminator(_Several):
    """One ``PeriodDiscriminator`` per period (HiFi-GAN's MPD)."""

    def __init__(self, periods=PERIODS, channels=PERIOD_CHANNELS):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)


class MultiResolutionDiscriminator(_Several):
    """One ``ResolutionDiscriminator`` per ``(n_fft, hop, win)`` (UnivNet's and BigVGAN's MRD)."""

    def __init__(self, resolutions=RESOLUTIONS, channels: int = RESOLUTION_CHANNELS):
        super().__init__()
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(*r, channels=channels) for r in resolutions)


class Discriminators(nn.Module):
    """The multi-period and the multi-resolution discriminator together (BigVGAN's pair): ``[B, 1, T] ->
    (logits, features)`` of the periods, then of the resolutions. Empty ``periods`` or ``resolutions`` leave that
    kind out."""

    def __init__(self, periods=PERIODS, resolutions=RESOLUTIONS, period_channels=PERIOD_CHANNELS,
                 resolution_channels: int = RESOLUTION_CHANNELS):
        super().__init__()
        if not periods and not resolutions:
            raise ValueError("Discriminators needs at least one period or one resolution")
        self.mpd = MultiPeriodDiscriminator(periods, period_channels) if periods else None
        self.mrd = MultiResolutionDiscriminator(resolutions, resolution_channels) if resolutions else None

    def forward(self, x: torch.Tensor) -> Output:
        logits, features = [], []
        for part in (self.mpd, self.mrd):
            if part is not None:
                out, feats = part(x)
                logits += out
                features += feats
        return logits, features
