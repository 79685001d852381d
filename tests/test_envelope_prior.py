"""The envelope prior (SpecGrad): the frame filter's algebra, the noise's power spectrum per frame and its level,
the whitening, the training noise and loss, every sampler under it (with a closed-form check), chunked synthesis,
a saved model's prior and training with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import EPS32, tiny_net

from audiodiff.audio.frame_filter import FrameFilter
from audiodiff.audio.mel import MelConfig, MelSpectrogram
from audiodiff.audio.prior import MelPrior, envelope_gains
from audiodiff.config import DiffusionConfig, ModelConfig, recipe_from_dict
from audiodiff.diffusion import Denoiser, DiscreteSchedule, linear_betas, prior, sigmas_for
from audiodiff.diffusion.samplers import SAMPLERS
from audiodiff.vocoder import Vocoder
from audiodiff.inference import chunks

HOP, N = 256, 1024
ENVELOPE = DiffusionConfig(prior="envelope")
FN = MelSpectrogram(MelConfig())


def _regions_mel() -> torch.Tensor:
    """``[1, 80, 60]``: 20 frames of a vowel-like envelope (falling, two formant bumps, loud), 20 of a rising
    fricative-like one, 20 of digital silence; constant within each region."""
    m = torch.arange(80.0)
    vowel = -1.0 - 5 * m / 80 + 2.0 * torch.exp(-((m - 15) / 4) ** 2) + 1.5 * torch.exp(-((m - 35) / 5) ** 2)
    fricative = -6.0 + 5 * m / 80
    return torch.cat([vowel[:, None].expand(80, 20), fricative[:, None].expand(80, 20),
                      torch.full((80, 20), float(np.log(1e-5)))], 1)[None]


def _periodogram(x: torch.Tensor) -> torch.Tensor:
    """``x [D, F * hop]`` -> the mean over draws of its Hann periodogram in the filter's own frames ``[F, 513]``,
    scaled so that white noise of unit variance gives 1."""
    w = torch.hann_window(N)
    frames = torch.nn.functional.pad(x, (N - HOP // 2, 3 * HOP + HOP // 2)).unfold(-1, N, HOP)[:, 2:-2]
    return torch.fft.rfft(frames * w).abs().square().mean(0) / w.square().sum()


# ------------------------------------------------------------------------------------------------ the filter itself
def test_a_flat_response_is_the_identity_and_the_filter_is_symmetric():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 1, 30 * HOP, generator=g)
    flat = FrameFilter(torch.ones(2, N // 2 + 1, 30), HOP)
    # Every sample is covered by four frames whose squared windows sum to 3/2: L = I up to float32 rounding of a
    # sum of four products and two FFTs of 1024 points (~20 EPS32 relative; 1e-5 absolute on unit noise).
    torch.testing.assert_close(flat.apply(z), z, rtol=0, atol=1e-5)
    L = FrameFilter(envelope_gains(FN, _regions_mel(), 0.1, 0.1)[:, :, :30].expand(2, -1, -1), HOP)
    a, b = z, torch.randn(2, 1, 30 * HOP, generator=g)
    # <a, L b> = <L a, b> (zero phase, the same window for analysis and synthesis): two float32 sums of 7,680
    # products of unit size, each ~1e-4 absolute rounding at worst; responses up to ~5.
    assert abs((a * L.apply(b)).sum() - (L.apply(a) * b).sum()).item() < 1e-2
    assert (a * L.apply(a)).sum().item() > 0


def test_whiten_inverts_the_filter_on_speech_and_on_noise(speech_file):
    from audiodiff.audio.io import load_audio

    audio, _ = load_audio(speech_file, 22050)
    x = torch.from_numpy(audio[: 2 * 22050]).float()
    mel = FN(x)[None]
    L = MelPrior("envelope", FN, 0.1, 0.1)(mel)
    x = x[None, None, : mel.shape[-1] * HOP]
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    # 16 preconditioned CG steps: measured 1.3e-7 (an LJ Speech recording) and 7e-7 (white noise through the
    # filter, where the floored bins make L^-1 largest) relative, near float32 rounding; 1e-5 leaves a margin for
    # other recordings, and is far below the plain preconditioner's 4% (the first line).
    assert ((x - L.apply(L._filter(x, 1 / L.gains))).norm() / x.norm()).item() > 1e-2
    assert ((x - L.apply(L.whiten(x))).norm() / x.norm()).item() < 1e-5
    assert ((L.whiten(L.apply(z)) - z).norm() / z.norm()).item() < 1e-5


# ------------------------------------------------------------------------------------------- the noise it draws
def test_noise_power_spectrum_follows_the_envelope_per_frame():
    # 128 draws of L z over the three regions, measured in each region's 12 interior frames (4 frames from any
    # boundary: the filter reaches 2 frames, the periodogram's window 2 more) and 32 bands of 16 bins. Each cell
    # averages 128 x 12 x 16 exponential variates, about 6,000 independent ones once the 75% frame overlap and the
    # Hann window's bin correlation are counted: sd 1.3%; 8% is 6 sd (measured: at most 3.8%). The envelope is
    # smooth on the window's 4-bin scale, so the window's own smoothing adds well under that.
    mel = _regions_mel()
    gains = envelope_gains(FN, mel, 0.1, 0.1)  # [1, 513, 60]
    z = torch.randn(128, 1, 60 * HOP, generator=torch.Generator().manual_seed(2))
    power = _periodogram(FrameFilter(gains, HOP).apply(z)[:, 0])  # [60, 513]
    target = gains[0].T.square()
    for start in (0, 20, 40):
        rows = slice(start + 4, start + 16)
        measured = power[rows, :512].mean(0).reshape(32, 16).mean(-1)
        expected = target[rows, :512].mean(0).reshape(32, 16).mean(-1)
        assert ((measured / expected - 1).abs().max() < 0.08).item(), (start, measured / expected)
    # The envelope is there to be followed: the vowel's first formant band is 10 dB above its top bands.
    vowel = target[10]
    assert (vowel[60:120].mean() / vowel[400:].mean()).item() > 10


def test_loud_frames_get_unit_variance_quiet_ones_less_and_silence_the_floor():
    # White noise at 0.3 RMS (above prior_level 0.1), at 0.03 and digital silence. Loud: the shape has unit mean
    # square and the floor lifts few bins (1% allowed); quiet: the energy prior's std (in-band RMS 0.03
    # sqrt(8000 / 11025) over 0.1) squared, lifted by the floor where the shape dips (at most 25% above);
    # silence: every bin on the floor, variance 0.01.
    g = torch.Generator().manual_seed(3)
    audio = torch.cat([0.3 * torch.randn(11025, generator=g), 0.03 * torch.randn(11025, generator=g),
                       torch.zeros(11025)])
    mel = FN(audio)[None]
    gains = envelope_gains(FN, mel, 0.1, 0.1)[0]  # [513, F]
    energy = (FN.frame_rms(mel)[0] / 0.1).clamp(0.1, 1.0)  # the energy prior's std per frame (audio/prior.py)
    loud, quiet, silent = gains[:, 5:35], gains[:, 50:80], gains[:, 100:125]
    assert (loud.square().mean(0) - 1).abs().max().item() < 0.01
    ratio = quiet.square().mean(0) / energy[50:80].square()
    assert ratio.min().item() >= 1 - 1e-5 and ratio.max().item() < 1.25  # float32 rounding of a 513-bin mean
    assert 0.2 < energy[50:80].mean().item() < 0.3  # 0.03 sqrt(0.726) / 0.1 = 0.256
    assert silent.min().item() == pytest.approx(0.1) and silent.max().item() < 0.1 * 1.01
    # The noise itself, 64 draws: variance per region as designed (sd of a variance from 64 x 2,560 normals 0.4%).
    x = FrameFilter(gains[None], HOP).apply(torch.randn(64, 1, mel.shape[-1] * HOP, generator=g))
    assert abs(x[:, :, 8 * HOP: 30 * HOP].var().item() - 1) < 0.03
    assert abs(x[:, :, 102 * HOP: 122 * HOP].var().item() / 0.01 - 1) < 0.03


# ------------------------------------------------------------------------------------------------ training with it
class _Probe(torch.nn.Module):
    """A backbone that records its input and returns a fixed output."""

    def forward(self, x, t, **_):
        self.seen = x.detach().clone()
        return torch.zeros_like(x)


def test_training_sees_shaped_noise_and_weights_errors_by_the_inverse():
    schedule = DiscreteSchedule(linear_betas())
    den = Denoiser(_Probe(), schedule)
    L = MelPrior("envelope", FN, 0.1, 0.1)(_regions_mel().expand(2, -1, -1))
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 1, 60 * HOP, generator=g)
    x0 = L.apply(0.3 * torch.randn(2, 1, 60 * HOP, generator=g))  # data in the prior's range
    sigma = torch.tensor([0.3, 2.0])
    value, x0_hat = den.loss(x0, sigma, z, prior=L, with_x0=True)
    alpha = (1 + sigma**2).rsqrt()[:, None, None]
    # The backbone sees alpha (x0 + sigma L z): x0 through whiten and back (measured 3e-6 relative across these
    # abrupt region changes, where 8 CG steps leave 1e-3) and the noise through L.
    expected = alpha * (x0 + sigma[:, None, None] * L.apply(z))
    assert ((den.net.seen - expected).norm() / expected.norm()).item() < 3e-5
    # eps_hat = 0: x0_hat - x0 = sigma L z, and the loss is |L^-1 (x0_hat - x0)| / sigma = |z| (the L^-1 weighting).
    weighted = (L.whiten(x0_hat - x0) / sigma[:, None, None]).abs().flatten(1).mean(1)
    torch.testing.assert_close(value, weighted, rtol=1e-4, atol=0)  # the whitening's 7e-7 on noise, 100x
    torch.testing.assert_close(value, z.abs().flatten(1).mean(1), rtol=0, atol=0)  # the loss is on z itself


def test_training_with_the_envelope_prior_and_stft_loss_exports_a_model_that_uses_them(tone_dir, tmp_path):
    from test_training import TINY, run

    from audiodiff.training import export

    raw = {section: dict(values) for section, values in TINY.items()}
    raw["data"]["path"] = str(tone_dir)
    raw["diffusion"] = {"prior": "envelope"}
    raw["train"]["stft_loss"] = 1.0
    run(recipe_from_dict(raw), tmp_path / "run")
    voc = Vocoder.from_pretrained(export(tmp_path / "run", tmp_path / "model"), device="cpu", refine=0)
    assert voc.diffusion_config.prior == "envelope"
    wav = voc(torch.zeros(80, 20) - 4.0, seed=0)
    assert torch.isfinite(wav).all() and wav.abs().max() > 0


# ------------------------------------------------------------------------ closed form: data L u, u from a known law
def _exact_eps(schedule, L, data_std: float):
    """The exact whitened eps of data ``x0 = L u``, ``u ~ N(0, data_std^2)``, as a backbone: it must undo the
    ``L`` that the denoiser applied to its input (6 CG steps: 1e-4 relative on noise, plenty here)."""

    def net(x_vp, t, **_):
        sigma = schedule.sigma_from_t(t).to(x_vp.dtype).reshape(-1, 1, 1)
        y = L.whiten(x_vp * (1 + sigma**2).sqrt(), iterations=6)  # back to whitened VE coordinates
        return (y - y * data_std**2 / (data_std**2 + sigma**2)) / sigma

    return net


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_draws_data_with_the_envelope(name):
    # x0 = L u, u ~ N(0, 0.5^2): with the exact backbone the samplers' y is Gaussian and white up to a scale that is
    # the sampler's own discretisation error (test_prior.py measures it), so x = L y has the power spectrum
    # c 0.25 gains^2 per frame. 8 draws of the vowel and fricative regions, each region's 12 interior frames in 4
    # bands of 128 bins: ~8 x 6 x 64 = 3,000 independent exponentials a cell, sd 1.8%; the shape (max over min of
    # the 8 cells' ratios) within 15%, about 4 sd of a ratio of two. Were L missing at either end, the ratio would
    # follow the envelope's 10x range. The scale is checked for heun alone, at 25 steps (measured 1.02-1.08; 1.3 at
    # 12), within 15%.
    schedule = DiscreteSchedule(linear_betas(1000, 1e-4, 0.02))
    gains = envelope_gains(FN, _regions_mel()[..., :40], 0.1, 0.1)  # [1, 513, 40]
    L = FrameFilter(gains, HOP)
    den = Denoiser(torch.nn.Module(), schedule)
    den.net = _exact_eps(schedule, L, 0.5)
    sigmas = sigmas_for(name, {"fast": 6, "heun": 25}.get(name, 12), schedule)
    g = torch.Generator().manual_seed(5)
    y = prior((8, 1, 40 * HOP), float(sigmas[0]), generator=g)
    x = L.apply(SAMPLERS[name](den, y, sigmas, generator=g, extra_args={"prior": L}))
    power, target = _periodogram(x[:, 0]), 0.25 * gains[0].T.square()
    ratios = []
    for start in (0, 20):
        rows = slice(start + 4, start + 16)
        ratios.append(power[rows, :512].mean(0).reshape(4, 128).mean(-1) /
                      target[rows, :512].mean(0).reshape(4, 128).mean(-1))
    ratio = torch.cat(ratios)
    assert (ratio.max() / ratio.min() - 1).item() < 0.15, ratio
    if name == "heun":
        assert (ratio - 1).abs().max().item() < 0.15, ratio


# --------------------------------------------------------------------------------------------- the vocoder with it
def _vocoder(**kwargs) -> Vocoder:
    return Vocoder(tiny_net(), MelConfig(), ModelConfig(residual_layers=2, residual_channels=4, embed_dim=16),
                   ENVELOPE, **kwargs)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_vocoder_samples_with_the_envelope_prior_for_every_sampler(name, demo_mel):
    mel = torch.from_numpy(demo_mel[:, :40])
    voc = _vocoder(refine=0, sampler=name, steps=3)
    a = voc(mel, seed=1)
    assert a.shape == (40 * HOP,) and torch.isfinite(a).all()
    torch.testing.assert_close(a, voc(mel, seed=1), rtol=0, atol=0)  # same seed, same code path: bitwise
    energy = Vocoder(voc.net, MelConfig(), voc.model_config, DiffusionConfig(prior="energy"), refine=0,
                     sampler=name, steps=3)
    assert not torch.allclose(a, energy(mel, seed=1))  # the envelope is not the energy prior


def test_chunked_synthesis_with_the_envelope_prior_agrees_with_whole(demo_mel):
    # Each denoiser call applies L (reaching 4 frames) before the tiny backbone (a few samples): with 2 DDIM steps
    # and the final L, a chunk's samples more than 3 x 4 + 1 frames from its edges are the whole's.
    mel = torch.from_numpy(demo_mel[:, :170])
    whole = _vocoder(chunk_frames=1024, overlap_frames=8, refine=0, sampler="ddim", steps=2)(mel, seed=3)
    chunked_voc = _vocoder(chunk_frames=80, overlap_frames=8, refine=0, sampler="ddim", steps=2)
    chunked = chunked_voc(mel, seed=3)
    near = np.zeros(170, dtype=bool)
    for a, e in chunks.plan(170, chunked_voc.chunk_frames, chunked_voc.overlap_frames):
        for edge in (a, e):
            if 0 < edge < 170:
                near[max(0, edge - 13): edge + 13] = True
    assert (~near).sum() > 60
    diff = (whole - chunked).abs().reshape(170, HOP).amax(dim=1)
    # Away from chunk edges the same arithmetic on the same values: float32 rounding of differently shaped GEMMs
    # and FFT batches, ~1e-7 relative to outputs of order 1 (1e-5: two orders of margin); near them, different.
    assert diff[~near].max() < 1e-5
    assert diff[near].max() > 1e-3 and whole.abs().max() > 0.05


def test_saved_model_reloads_with_the_envelope_prior(tmp_path, demo_mel):
    voc = _vocoder(refine=0)
    voc.save_pretrained(tmp_path / "m")
    again = Vocoder.from_pretrained(tmp_path / "m", device="cpu", refine=0)
    assert again.diffusion_config.prior == "envelope"
    mel = torch.from_numpy(demo_mel[:, :30])
    torch.testing.assert_close(again(mel, seed=0), voc(mel, seed=0), rtol=0, atol=0)  # same weights and path


def test_envelope_prior_parameters_of_a_chunk_are_the_slice_of_the_whole(demo_mel):
    # The responses are a function of each mel frame alone, so a chunk's own are the whole's slice (bitwise: the
    # same per-frame arithmetic, EPS32 aside for differently batched reductions).
    mel = torch.from_numpy(demo_mel[:, :100])[None]
    mp = MelPrior("envelope", FN, 0.1, 0.1)
    whole, part = mp.params(mel), mp.params(mel[..., 30:70])
    torch.testing.assert_close(mp.chunk(whole, 30, 70), part, rtol=8 * EPS32, atol=0)
