"""The mel-shaped prior (PriorGrad): the front end's frame-RMS estimate, the per-sample std, the training noise and
loss it implies, every sampler under it (with a closed-form check), chunked synthesis and a saved model's prior."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import tiny_net

from audiodiff.audio.mel import MelConfig, MelSpectrogram, mel_config
from audiodiff.audio.prior import MelPrior, prior_std
from audiodiff.config import DiffusionConfig, ModelConfig, recipe_from_dict
from audiodiff.diffusion import Denoiser, DiscreteSchedule, linear_betas, prior, sigmas_for
from audiodiff.diffusion.denoiser import Diagonal
from audiodiff.diffusion.samplers import SAMPLERS
from audiodiff.errors import AudiodiffError
from audiodiff.inference import chunks
from audiodiff.vocoder import Vocoder

HOP = 256
ENERGY = DiffusionConfig(prior="energy")


@pytest.mark.parametrize("preset", ["hifigan", "diffwave"])
def test_frame_rms_of_white_noise_is_its_in_band_std(preset):
    # Gaussian noise of std s has in-band std s sqrt(share); the estimate is exact in expectation. Each frame's
    # estimate averages ~80 bands of ~1e3 Rayleigh bins: the mean over 170 frames is within ~1%; 5% allows for the
    # Rayleigh mean's bias where filters overlap few bins (the lowest Slaney bands).
    cfg = mel_config(preset)
    fn = MelSpectrogram(cfg)
    s = 0.1
    audio = s * torch.randn(2 * cfg.sample_rate, generator=torch.Generator().manual_seed(0))
    rms = fn.frame_rms(fn(audio))
    fmax = cfg.fmax or cfg.sample_rate / 2
    expected = s * ((fmax - cfg.fmin) / (cfg.sample_rate / 2)) ** 0.5
    assert abs(rms.mean().item() / expected - 1) < 0.05
    assert rms.std().item() / rms.mean().item() < 0.1  # stationary noise: every frame says about the same


def test_frame_rms_follows_the_level_frame_by_frame():
    fn = MelSpectrogram(MelConfig())
    g = torch.Generator().manual_seed(1)
    quiet, loud = 0.01 * torch.randn(22050, generator=g), 0.2 * torch.randn(22050, generator=g)
    rms = fn.frame_rms(fn(torch.cat([quiet, loud])))  # [172]
    ratio = rms[100:160].mean() / rms[10:70].mean()
    assert 18 < ratio < 22  # 26 dB apart, as the two halves are


def test_prior_std_is_floored_interpolated_and_none_without_a_prior():
    fn = MelSpectrogram(MelConfig())
    mel = fn(torch.cat([torch.zeros(11025), 0.3 * torch.randn(11025, generator=torch.Generator().manual_seed(2))]))
    std = prior_std(fn, mel.unsqueeze(0), 0.1, 0.1)
    assert std.shape == (1, 1, mel.shape[-1] * HOP)
    assert std.min().item() == pytest.approx(0.1)  # digital silence sits on the floor
    assert std.max().item() == pytest.approx(1.0)  # noise at 0.3 RMS is above the 0.1 level: the plain std
    half = prior_std(fn, fn(0.05 * torch.randn(22050, generator=torch.Generator().manual_seed(3)))[None], 0.1, 0.1)
    assert 0.4 < half[0, 0, 4 * HOP: -4 * HOP].mean().item() < 0.6  # RMS 0.05 at level 0.1: std about 1/2
    assert MelPrior.from_config(DiffusionConfig(), fn) is None  # prior: none
    # Linear between frame centres: no jump larger than one frame's change spread over a hop.
    steps = std[0, 0].diff().abs()
    assert steps.max().item() <= (1.0 - 0.1) / HOP * 1.01


class _Probe(torch.nn.Module):
    """A backbone that records its input and returns a fixed output."""

    def __init__(self, out: float = 0.0):
        super().__init__()
        self.out, self.seen = out, None

    def forward(self, x, t, **_):
        self.seen = x.detach().clone()
        return torch.full_like(x, self.out)


def test_training_noise_has_the_priors_variance_per_frame():
    schedule = DiscreteSchedule(linear_betas())
    probe = _Probe()
    den = Denoiser(probe, schedule)
    std = torch.linspace(0.01, 0.5, 64).repeat_interleave(HOP).reshape(1, 1, -1).expand(8, 1, -1)
    sigma = torch.full((8,), float(schedule.sigmas[-1]))
    noise = torch.randn(std.shape, generator=torch.Generator().manual_seed(3))
    den.loss(torch.zeros_like(std), sigma, noise, prior=Diagonal(std))
    alpha = (1 + sigma[0] ** 2).rsqrt()
    # x0 = 0: the backbone sees alpha sigma std eps; per frame its variance over 8 x 256 draws is std^2 within the
    # sampling error of a variance estimate from 2048 normals (sd sqrt(2 / 2048) = 3%: 15% is 5 sd).
    seen = (probe.seen / (alpha * sigma[0])).reshape(8, 64, HOP).transpose(0, 1).reshape(64, -1)
    ratio = seen.var(dim=1) / std[0, 0, ::HOP].square()
    assert (ratio - 1).abs().max().item() < 0.15


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_loss_weights_data_errors_by_the_inverse_std(loss):
    # A backbone that predicts eps = 0 leaves x0_hat - x0 = sigma std eps; the loss is the error over sigma std,
    # so an error in a quiet stretch costs as much as a 1/std larger one in a loud stretch (PriorGrad's Sigma^-1).
    den = Denoiser(_Probe(0.0), DiscreteSchedule(linear_betas()), loss=loss)
    std = torch.rand(4, 1, 512, generator=torch.Generator().manual_seed(4)) + 0.05
    x0 = 0.1 * torch.randn(4, 1, 512)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0])
    value, x0_hat = den.loss(x0, sigma, torch.randn(4, 1, 512), prior=Diagonal(std), with_x0=True)
    weighted = ((x0_hat - x0) / (sigma[:, None, None] * std)).abs()
    weighted = weighted if loss == "l1" else weighted.square()
    # float32: x0_hat is x0 plus a sum, rounding ~1e-7 relative to |x0_hat|, amplified by 1 / (sigma std) <= 200
    torch.testing.assert_close(value, weighted.flatten(1).mean(1), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ closed form: data std * z, z from a known law
def _gaussian_eps(schedule, std, data_std: float):
    """The exact whitened eps of data ``x0 = std * z``, ``z ~ N(0, data_std^2)``, as a backbone."""

    def net(x_vp, t, **_):
        sigma = schedule.sigma_from_t(t).to(x_vp.dtype).reshape(-1, 1, 1)
        y = x_vp * (1 + sigma**2).sqrt() / std  # back to whitened VE coordinates
        y0 = y * data_std**2 / (data_std**2 + sigma**2)  # E[z | y]
        return (y - y0) / sigma

    return net


STEPS = {"fast": 6, "heun": 50}  # the others as in test_samplers.py's distribution cases: 100


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_draws_the_shaped_data(name):
    # x0 = std * z with z ~ N(0, 0.5^2): the samplers, run in whitened coordinates with the exact backbone, must
    # give per-position std 0.5 std. DDPM's T = 1000 schedule (sigma_max 157): the prior matches the noisy marginal.
    schedule = DiscreteSchedule(linear_betas(1000, 1e-4, 0.02))
    std = torch.tensor([0.02, 0.1, 0.5, 1.0]).repeat_interleave(250).reshape(1, 1, 1000).double()
    den = Denoiser(torch.nn.Module(), schedule)
    den.net = _gaussian_eps(schedule, std, 0.5)
    sigmas = sigmas_for(name, STEPS.get(name, 100), schedule).double()
    g = torch.Generator().manual_seed(5)
    y = prior((40, 1, 1000), float(sigmas[0]), generator=g).double()
    x = SAMPLERS[name](den, y, sigmas, generator=g, extra_args={"prior": Diagonal(std)}) * std
    ratio = x.reshape(40, 4, 250).transpose(0, 1).reshape(4, -1).std(dim=1) / (0.5 * std[0, 0, ::250])
    # The shape: every position gets the same share of its std. 10,000 draws per group: sd of a std estimate 0.7%,
    # of a ratio of two 1%; 4% is 4 sd.
    assert (ratio.max() / ratio.min() - 1).item() < 0.04, ratio
    # The scale: the sampler's own discretisation error on this law (the fast schedule is DiffWave's 6 steps,
    # whose top level 1.6 is far below this model's sigma_max, so its prior is wrong and it is left out).
    if name != "fast":
        assert (ratio - 1).abs().max().item() < 0.08, ratio


# --------------------------------------------------------------------------------------------- the vocoder with it
def _energy_vocoder(**kwargs) -> Vocoder:
    net = tiny_net()
    return Vocoder(net, MelConfig(), ModelConfig(residual_layers=2, residual_channels=4, embed_dim=16), ENERGY,
                   **kwargs)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_vocoder_samples_with_the_prior_for_every_sampler(name, demo_mel):
    mel = torch.from_numpy(demo_mel[:, :40])
    voc = _energy_vocoder(refine=0, sampler=name, steps=3)
    a, b = voc(mel, seed=1), voc(mel, seed=1)
    assert a.shape == (40 * HOP,) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # same seed, same code path: bitwise
    plain = Vocoder(voc.net, MelConfig(), voc.model_config, DiffusionConfig(), refine=0, sampler=name, steps=3)
    assert not torch.allclose(a, plain(mel, seed=1))  # the prior changes the output


def test_silent_frames_stay_quiet_with_the_prior(demo_mel):
    # Half the mel replaced by digital silence: the prior's std there is the floor (0.1), and the output follows.
    mel = torch.from_numpy(demo_mel[:, :80]).clone()
    mel[:, 40:] = np.log(1e-5)
    out = _energy_vocoder(refine=0)(mel, seed=2)
    loud, quiet = out[: 38 * HOP].abs().mean(), out[42 * HOP:].abs().mean()
    plain = Vocoder(tiny_net(), MelConfig(), ModelConfig(residual_layers=2, residual_channels=4, embed_dim=16),
                    DiffusionConfig(), refine=0)(mel, seed=2)
    assert quiet < 0.2 * plain[42 * HOP:].abs().mean()
    assert quiet < loud


def test_chunked_synthesis_with_the_prior_agrees_with_whole(demo_mel):
    mel = torch.from_numpy(demo_mel[:, :150])
    whole = _energy_vocoder(chunk_frames=1024, overlap_frames=8, refine=0)(mel, seed=3)
    chunked_voc = _energy_vocoder(chunk_frames=40, overlap_frames=8, refine=0)
    chunked = chunked_voc(mel, seed=3)
    near = np.zeros(150, dtype=bool)  # a chunk's own edges see one frame less context (test_vocoder.py)
    for a, e in chunks.plan(150, 40, 8):
        near[max(0, a - 1): a + 2] = True
        near[max(0, e - 2): e + 1] = True
    diff = (whole - chunked).abs().reshape(150, HOP).amax(dim=1)
    # Away from chunk edges the same arithmetic on the same values: float32 rounding of differently shaped GEMMs,
    # ~1e-7 relative to outputs of order 1 through 6 steps (1e-5 leaves two orders of margin).
    assert diff[~near].max() < 1e-5
    assert whole.abs().max() > 0.05


def test_saved_model_reloads_with_its_prior(tmp_path, demo_mel):
    voc = _energy_vocoder(refine=0)
    voc.save_pretrained(tmp_path / "m")
    again = Vocoder.from_pretrained(tmp_path / "m", device="cpu", refine=0)
    assert again.diffusion_config.prior == "energy" and again.diffusion_config.prior_floor == 0.1
    mel = torch.from_numpy(demo_mel[:, :30])
    torch.testing.assert_close(again(mel, seed=0), voc(mel, seed=0), rtol=0, atol=0)  # same weights and path


def test_recipe_refuses_a_prior_without_a_mel():
    with pytest.raises(AudiodiffError, match="diffusion.prior"):
        recipe_from_dict({"model": {"conditional": False}, "diffusion": {"prior": "energy"}})
    with pytest.raises(AudiodiffError, match="diffusion.prior"):
        recipe_from_dict({"diffusion": {"prior": "spectral"}})
    assert recipe_from_dict({"diffusion": {"prior": "energy"}}).diffusion == dataclasses.replace(
        DiffusionConfig(), prior="energy")


# ------------------------------------------------------------------------------------------------- training with it
def test_mel_loss_is_zero_for_the_crop_itself_and_grows_with_an_error():
    from audiodiff.training.targets import mel_loss

    fn = MelSpectrogram(MelConfig())
    audio = 0.2 * torch.randn(2, 1, 12 * HOP, generator=torch.Generator().manual_seed(6))
    mel = fn(audio[:, 0])  # [2, 80, 12]: the crop's own mel (reflect-padded here, so edge frames are exact too)
    assert mel_loss(fn, audio, mel).abs().max().item() < 1e-5  # the same STFT twice: float32 rounding of log|X|
    noisy = mel_loss(fn, audio + 0.05 * torch.randn_like(audio), mel)
    assert (noisy > 0.05).all()


def test_training_with_the_prior_and_mel_loss_exports_a_model_that_uses_them(tone_dir, tmp_path):
    from test_training import TINY, run

    raw = {section: dict(values) for section, values in TINY.items()}
    raw["data"]["path"] = str(tone_dir)
    raw["diffusion"] = {"prior": "energy"}
    raw["train"]["mel_loss"] = 1.0
    recipe = recipe_from_dict(raw)
    run(recipe, tmp_path / "run")
    from audiodiff.training import export

    out = export(tmp_path / "run", tmp_path / "model")
    voc = Vocoder.from_pretrained(out, device="cpu", refine=0)
    assert voc.diffusion_config.prior == "energy"
    wav = voc(torch.zeros(80, 20) - 4.0, seed=0)
    assert torch.isfinite(wav).all() and wav.abs().max() > 0


@pytest.mark.parametrize("kind, weight, prior", [("mel_loss", 2.0, "energy"), ("stft_loss", 3.0, "none")])
@pytest.mark.parametrize("width", [1.0, 0.1])
def test_train_step_adds_the_weighted_auxiliary_loss(tone_dir, width, kind, weight, prior):
    # The same batch, noise levels and noise with and without train.mel_loss (or train.stft_loss): the step's loss
    # grows by exactly the weight times the mean of the loss / (1 + (sigma / mel_loss_sigma)^2) (the same operations
    # on the same draws: float32 rounding of a mean of 2 values, 1e-6 relative), so a loop that ignored either
    # setting fails here.
    from test_training import TINY

    from audiodiff.factory import build_backbone, build_denoiser
    from audiodiff.training.loop import step_generator, train_step
    from audiodiff.training.targets import diffusion_inputs, mel_loss, stft_loss

    raw = {section: dict(values) for section, values in TINY.items()}
    raw["diffusion"] = {"prior": prior}
    plain, weighted = recipe_from_dict(raw), recipe_from_dict({**raw, "train": {**raw["train"], kind: weight,
                                                                                "mel_loss_sigma": width}})
    torch.manual_seed(0)
    den = build_denoiser(build_backbone(plain.model, plain.mel), plain.diffusion)
    fn = MelSpectrogram(plain.mel)
    n, hop = plain.data.crop_frames, plain.mel.hop_length
    g = torch.Generator().manual_seed(7)
    batch = {"audio": 0.1 * torch.randn(2, n * hop, generator=g),
             "segment": 0.1 * torch.randn(2, plain.mel.segment_length(n), generator=g)}
    cpu = torch.device("cpu")
    with torch.no_grad():
        base = train_step(den, fn, batch, step_generator(0, 3, 0, cpu), cpu, None, plain)
        total = train_step(den, fn, batch, step_generator(0, 3, 0, cpu), cpu, None, weighted)
        gen = step_generator(0, 3, 0, cpu)
        mel = fn(batch["segment"], pad=False)
        sigma = den.sample_training_sigma(2, generator=gen)
        noise = torch.randn((2, 1, n * hop), generator=gen)
        x0, cond = diffusion_inputs(plain, batch["audio"].unsqueeze(1), mel, fn)
        _, x0_hat = den.loss(x0, sigma, noise, with_x0=True, **cond)
        per_example = mel_loss(fn, x0_hat, mel) if kind == "mel_loss" else stft_loss(x0_hat, x0)
        aux = (per_example / (1 + (sigma / width).square())).mean()
    assert aux > 0 and sigma.max() > 0.2  # a noise level at which the two widths weigh differently
    torch.testing.assert_close(total, base + weight * aux, rtol=1e-5, atol=0)


def test_stft_loss_is_zero_for_the_crop_itself_and_exact_for_a_gain():
    from audiodiff.training.targets import STFT_RESOLUTIONS, _stft_magnitude, stft_loss

    assert [n for n, _ in STFT_RESOLUTIONS] == [512, 1024, 2048]  # Parallel WaveGAN's three, at hop n / 4
    audio = torch.randn(2, 1, 12 * HOP, generator=torch.Generator().manual_seed(8))
    assert stft_loss(audio, audio).abs().max().item() == 0  # the same STFTs: bitwise zero
    # x_hat = c x with c a power of 2 scales every magnitude by exactly c, so each resolution gives spectral
    # convergence |1 - c| and log-L1 |log c|, unless a bin of c x falls under the 1e-7 power floor (checked: none
    # does); float32 rounding of norms and means of ~1e4 values, 1e-5 relative.
    assert min(_stft_magnitude(audio[:, 0], n, h).min().item() for n, h in STFT_RESOLUTIONS) * 0.5 > 1e-7 ** 0.5
    for c in (0.5, 2.0):
        expected = abs(1 - c) + abs(np.log(c))
        torch.testing.assert_close(stft_loss(c * audio, audio), torch.full((2,), expected), rtol=1e-5, atol=0)
    # An error in one band only: the loss grows, and more than a resolution's floor of rounding.
    tone = 0.01 * torch.sin(torch.arange(12 * HOP) * 2 * torch.pi * 3000 / 22050).reshape(1, 1, -1)
    assert (stft_loss(audio + tone, audio) > 1e-3).all()
