"""Mel-consistency refinement: perfect reconstruction with nothing to correct, envelope errors corrected, and
the band the mel does not cover left alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from audiodiff.audio.mel import MelConfig, MelSpectrogram, decompress
from audiodiff.audio.refine import _istft, _overlap_add, _window_norm, refine

from conftest import EPS32

SR = 22050


def _speechlike(seconds=0.5):
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 140 + 30 * torch.sin(2 * math.pi * 3 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    x = sum(torch.sin(k * phase) / k for k in range(1, 30))
    return (0.1 * x * (0.6 + 0.4 * torch.sin(2 * math.pi * 4 * t))).float()[None]


@pytest.mark.parametrize("preset", ["hifigan", "diffwave"])
def test_stft_round_trip_and_log_inverse(preset):
    fn = MelSpectrogram.from_preset(preset)
    x = _speechlike()
    spec = fn.stft(x)
    # A 1024-point float32 FFT and its inverse round by ~log2(1024) eps |x| = 2e-7 on |x| <= 0.18 (measured 5e-8).
    torch.testing.assert_close(_istft(spec, fn, *_window_norm(fn, spec.shape[-1]), x.shape[-1]), x, atol=2e-6, rtol=0)
    mel = fn(x)
    amp = decompress(mel, fn.config.log)
    floor = 1e-5 if fn.config.log == "ln" else 10 ** (-80 / 20)
    assert torch.all(amp >= floor * 0.999)
    direct = (fn.fbank @ fn.magnitude(fn.stft(x))).clamp(min=floor)  # what the log compressed
    # float32 log then exp: the log's rounding (an ulp of |ln m| <= 11.5, ~1e-6) becomes the relative error of m;
    # the diffwave scale's 10 ** (5 m - 4) likewise ~2e-6 (measured <= 1e-6 for both).
    torch.testing.assert_close(amp, direct, rtol=1e-5, atol=0)


@pytest.mark.numerics
@pytest.mark.parametrize("n_fft, hop", [(16, 4), (16, 16), (12, 5)])  # shifted adds, no overlap, F.fold fallback
def test_overlap_add_matches_fold(n_fft, hop):
    frames = torch.randn(2, n_fft, 7, generator=torch.Generator().manual_seed(0))
    total = 6 * hop + n_fft
    fold = F.fold(frames, output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop))[:, 0, 0]
    # Each sample sums the k frames that overlap it, maybe in another order: within (k - 1) eps of the sum of
    # their magnitudes (0 without overlap: a copy).
    k = -(-n_fft // hop)
    atol = (k - 1) * EPS32 * k * float(frames.abs().max())
    torch.testing.assert_close(_overlap_add(frames, hop), fold, rtol=0, atol=atol)


@pytest.mark.parametrize("momentum", [0.0, 0.9])  # plain iterations, and the default
def test_refine_restores_a_wrong_envelope(momentum):
    fn = MelSpectrogram(MelConfig())
    x = _speechlike()
    target = fn(x)
    t = torch.linspace(0, 1, x.shape[-1])
    wrong = x * (0.3 + 0.5 * t)  # too quiet, unevenly
    before = (fn(wrong) - target).abs().mean()
    after_one = (fn(refine(wrong, target, fn, iters=1, momentum=momentum)) - target).abs().mean()
    after = (fn(refine(wrong, target, fn, iters=8, momentum=momentum)) - target).abs().mean()
    assert before > 0.5 and after_one < 0.5 * before and after < after_one
    assert torch.equal(refine(wrong, target, fn, iters=0), wrong)
    assert refine(wrong, target, fn).shape == wrong.shape


def test_momentum_converges_faster_from_a_random_phase():
    # The fast Griffin-Lim property: from noise (no phase to keep), 64 iterations with momentum 0.9 reach the
    # mel about twice as closely as 64 without (measured 0.041 against 0.089 mean |log-mel| difference).
    fn = MelSpectrogram(MelConfig())
    x = _speechlike()
    target = fn(x)
    noise = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    error = {m: (fn(refine(noise, target, fn, iters=64, momentum=m)) - target).abs().mean() for m in (0.0, 0.9)}
    assert error[0.9] < 0.6 * error[0.0]
    with pytest.raises(ValueError, match="momentum"):
        refine(noise, target, fn, momentum=1.0)


def test_band_above_fmax_keeps_its_level():
    fn = MelSpectrogram(MelConfig())  # fmax 8 kHz
    t = torch.arange(SR // 2) / SR
    low, high = 0.1 * torch.sin(2 * math.pi * 500 * t), 0.05 * torch.sin(2 * math.pi * 10_000 * t)
    out = refine((low * 0.5 + high)[None], fn(low[None] + high[None]), fn, iters=4)[0]
    spec = torch.fft.rfft(out[2048:-2048]).abs()
    ref = torch.fft.rfft((low + high)[2048:-2048]).abs()
    band = lambda s, f: s[int(f * len(s) / (SR / 2)) - 5: int(f * len(s) / (SR / 2)) + 5].sum()  # noqa: E731
    # Properties of the iteration, not rounding (measured: 0 and 8e-7); the bounds sit far from a band left at half
    # its level (0.5) or given a gain.
    assert abs(band(spec, 10_000) / band(ref, 10_000) - 1) < 0.05  # untouched
    assert abs(band(spec, 500) / band(ref, 500) - 1) < 0.1  # restored from half level


@pytest.mark.numerics
def test_blocks_give_the_whole_signal_result():
    # Refining in blocks with context must equal refining the whole signal: memory stays bounded for long mels.
    fn = MelSpectrogram(MelConfig())
    x = _speechlike(3.0)
    x = x[:, : x.shape[-1] - 100]  # not a whole number of frames
    target = fn(x)
    wrong = x * 0.5 + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    whole = refine(wrong, target, fn, iters=3, block_frames=10_000)
    blocks = refine(wrong, target, fn, iters=3, block_frames=40)  # margin 16 frames: 6 blocks of 40
    assert target.shape[-1] > 3 * (40 + 32)
    # The same frames through FFTs and mel GEMMs of other lengths: float32 rounding (bitwise equal with 1 and 2
    # threads here, but not guaranteed), ~eps of the frame per iteration and bin, carried 1.9x by the momentum,
    # 3 iterations: ~1e-7 on |x| <= 0.11. 1e-5 is 100x; blocks with 4 frames of context instead of 16 are off by
    # 1.7e-4, with 2 by 6.5e-3.
    torch.testing.assert_close(blocks, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset, overrides", [("nemo", {}), ("espnet", {}), ("coqui", {}), ("speechbrain", {}),
                                               ("hifigan", {"mag_power": 2.0})])  # log10, dB, added guard, power
def test_refine_follows_every_presets_mel(preset, overrides):
    # A power mel's gain applied to the magnitudes unrooted stalls at 0.7 of the start (measured); rooted, 8
    # iterations reach 1e-3 of it.
    fn = MelSpectrogram.from_preset(preset, sample_rate=SR, **overrides)
    x = _speechlike()
    target = fn(x)
    wrong = x * (0.3 + 0.5 * torch.linspace(0, 1, x.shape[-1]))
    error = lambda y: float((fn(y) - target).abs().mean() / target.std())  # noqa: E731  (scales differ by preset)
    assert error(refine(wrong, target, fn, iters=8)) < 0.3 * error(wrong)
