"""Every sampler on 1-D and 2-D inputs, and a known answer: a 1-D Gaussian mixture, whose optimal denoiser is exact.

Data: x0 ~ 0.3 N(-1, 0.2^2) + 0.7 N(1.5, 0.2^2). Under x = x0 + sigma eps the noisy marginal is the mixture with
variances 0.2^2 + sigma^2, and E[x0 | x] = sum_k r_k(x) (mu_k + 0.2^2 / (0.2^2 + sigma^2) (x - mu_k)) with
responsibilities r_k proportional to w_k N(x; mu_k, 0.2^2 + sigma^2): with this denoiser, sampler error is the only
error. The closed-form tests use DDPM's linear T = 1000 schedule (1e-4..0.02, sigma_max = 157) rather than
DiffWave's: its sigma_max is only 1.6 (alpha_bar_T = 0.28), where the true noisy marginal (the data plus 1.6 eps) is
visibly not the prior N(0, 1 + sigma_max^2) the samplers start from, so even a perfect solver would miss the data.
At sigma_max = 157 the two differ in variance by 1e-5 relative.
"""

from __future__ import annotations

import pytest
import torch

from audiodiff.diffusion import DiscreteSchedule, append_dims, guided, linear_betas, prior, sigmas_for
from audiodiff.diffusion.guidance import NULL_LABEL, drop_labels
from audiodiff.diffusion.noise import positional_noise
from audiodiff.diffusion.samplers import DETERMINISTIC, SAMPLERS

W = torch.tensor([0.3, 0.7], dtype=torch.float64)
MU = torch.tensor([-1.0, 1.5], dtype=torch.float64)
STD = 0.2
MEAN = float((W * MU).sum())  # 0.75
VAR = STD**2 + float((W * MU**2).sum()) - MEAN**2  # 1.3525
SPLIT = 0.25  # midpoint of the two means: samples above it belong to the 0.7 mode


def mixture_denoiser(x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
    """Exact E[x0 | x, sigma] for the mixture, element-wise on any rank; ``sigma [B]``."""
    xd = x.double()[..., None]  # [..., 1] against the K = 2 components
    var = STD**2 + append_dims(sigma.double(), x.ndim)[..., None] ** 2  # [B, 1.., 1]
    logits = W.log() - 0.5 * (xd - MU) ** 2 / var - 0.5 * var.log()
    means = MU + STD**2 / var * (xd - MU)
    return (logits.softmax(-1) * means).sum(-1).to(x.dtype)


@pytest.fixture(scope="module")
def ddpm_schedule() -> DiscreteSchedule:
    return DiscreteSchedule(linear_betas(1000, 1e-4, 0.02))


def run(name: str, x: torch.Tensor, sigmas: torch.Tensor, denoise=mixture_denoiser, **kwargs) -> torch.Tensor:
    return SAMPLERS[name](denoise, x, sigmas, **kwargs)


def call_counter(denoise):
    calls = []

    def counted(x, sigma, **cond):
        calls.append(x.shape[0])
        return denoise(x, sigma, **cond)

    return counted, calls


# ----------------------------------------------------------------------------------------------- contract, any rank
SHAPES = [(3, 1, 64), (2, 3, 8, 8)]
STOCHASTIC = sorted(set(SAMPLERS) - set(DETERMINISTIC))


def test_registry_names():
    assert set(SAMPLERS) == {"ddpm", "fast", "ddim", "dpmpp", "heun", "pc"}
    assert SAMPLERS["ddpm"] is SAMPLERS["fast"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=["1d", "2d"])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_shape_dtype_and_seed_determinism(name, shape, dtype):
    sigmas = sigmas_for(name, 8, DiscreteSchedule(linear_betas(50, 1e-4, 0.05)))
    x = prior(shape, float(sigmas[0]), generator=torch.Generator().manual_seed(0)).to(dtype)
    a = run(name, x, sigmas, generator=torch.Generator().manual_seed(1))
    b = run(name, x, sigmas, generator=torch.Generator().manual_seed(1))
    c = run(name, x, sigmas, generator=torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == dtype
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)  # same input and generator state, same operations: bitwise
    if name in DETERMINISTIC:
        assert torch.equal(a, c), "a deterministic sampler must not depend on the generator"
    else:
        assert not torch.allclose(a, c), "a stochastic sampler must draw its noise from the generator"


@pytest.mark.parametrize("name", STOCHASTIC)
def test_noise_sampler_replaces_generator(name):
    sigmas = sigmas_for(name, 6, DiscreteSchedule(linear_betas(50, 1e-4, 0.05)))
    x = prior((2, 1, 32), float(sigmas[0]), generator=torch.Generator().manual_seed(0))
    a = run(name, x, sigmas, noise_sampler=positional_noise(7), generator=torch.Generator().manual_seed(1))
    b = run(name, x, sigmas, noise_sampler=positional_noise(7), generator=torch.Generator().manual_seed(2))
    c = run(name, x, sigmas, noise_sampler=positional_noise(8))
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.numerics
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_samplers_treat_examples_independently(name, ddpm_schedule):
    sigmas = sigmas_for(name, 10, ddpm_schedule)
    x = prior((4, 2, 8, 8), float(sigmas[0]), generator=torch.Generator().manual_seed(0)).double()
    # Bitwise: the denoiser is element-wise and the updates per example, so no sum spans the batch.
    assert torch.equal(run(name, x, sigmas)[1:2], run(name, x[1:2], sigmas))


# Network calls for N steps (sigmas ending in 0), as documented in samplers.py.
NFE = {
    ("ddpm", ()): lambda n: n, ("fast", ()): lambda n: n, ("ddim", ()): lambda n: n, ("dpmpp", ()): lambda n: n,
    ("heun", ()): lambda n: 2 * n - 1, ("pc", ()): lambda n: 2 * n - 1,
    ("pc", (("n_corrector", 3),)): lambda n: n + 3 * (n - 1),
}


@pytest.mark.parametrize("name,params", list(NFE), ids=lambda v: str(v) if v else "")
def test_network_calls_and_callback(name, params):
    steps = 7
    sigmas = sigmas_for(name, steps, DiscreteSchedule(linear_betas(50, 1e-4, 0.05)))
    counted, calls = call_counter(mixture_denoiser)
    seen = []
    run(name, torch.randn(2, 1, 16), sigmas, denoise=counted, callback=lambda i, x, x0: seen.append(i),
        generator=torch.Generator().manual_seed(0), **dict(params))
    assert len(calls) == NFE[(name, params)](steps)
    assert seen == list(range(steps))


def test_extra_args_reach_the_denoiser():
    received = []

    def denoise(x, sigma, *, mel):
        received.append(mel)
        return x * 0

    sigmas = sigmas_for("heun", 3, DiscreteSchedule(linear_betas(50, 1e-4, 0.05)))
    for name in SAMPLERS:
        received.clear()
        run(name, torch.randn(1, 1, 8), sigmas, denoise=denoise, extra_args={"mel": "M"})
        assert received and all(m == "M" for m in received)


def test_one_step_to_zero_returns_the_denoiser_output():
    sigmas = torch.tensor([2.0, 0.0], dtype=torch.float64)
    x = torch.randn(2, 1, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = mixture_denoiser(x, torch.full((2,), 2.0))
    for name in SAMPLERS:
        # float64: the ancestral and DPM-Solver steps return D itself; Heun's Euler step x + (0 - s) (x - D) / s
        # lands on D within a few eps64 of |x| <= 5, ~1e-15 (measured 1.7e-16).
        torch.testing.assert_close(run(name, x, sigmas), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_untrained_network_gives_finite_samples(name):
    # DiffWave zero-initialises its output layer, so before training D(x) = x and the score is exactly 0; the pc
    # corrector's step size 2 (snr ||z|| / ||g||)^2 must not turn that into inf / nan.
    sigmas = sigmas_for(name, 6, DiscreteSchedule(linear_betas(50, 1e-4, 0.05)))
    x = prior((2, 1, 64), float(sigmas[0]), generator=torch.Generator().manual_seed(0))
    out = run(name, x, sigmas, denoise=lambda x, sigma: x.clone(), generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(out).all() and out.abs().max() < 100


# ------------------------------------------------------------------------------------------- closed form: mixture
# Steps per sampler at which each matches the data within the tolerances below (about 5 standard errors of the
# 20000-sample statistics; coarse ancestral steps shrink each mode a little, so the within-mode spread is the
# tightest). Measured errors at these steps (mean, var, weight, within-mode std): ddpm 100: 0.00, -0.02, 0.00, -0.02;
# ddim 100: -0.015, 0.00, -0.005, -0.01; dpmpp 100: -0.02, 0.02, -0.006, 0.01; heun 50: -0.02, 0.02, -0.006, 0.00;
# pc 100: 0.004, -0.012, 0.001, -0.016. Standard errors at n = 20000: mean 0.0082, var 0.0087, weight 0.0032, so
# the tolerances are 4.9, 6.9 and 4.6 of them; within-mode std 0.0012-0.0018, so 0.025 is mostly the shrinkage.
DISTRIBUTION_CASES = [
    ("ddpm", 100, {}), ("ddim", 100, {}), ("ddim", 100, {"eta": 0.5}), ("dpmpp", 100, {}), ("heun", 50, {}),
    ("pc", 100, {}),
]
TOL = {"mean": 0.04, "var": 0.06, "weight": 0.015, "mode_std": 0.025}


def mixture_stats(x: torch.Tensor) -> dict:
    x = x.flatten().double()
    high = x > SPLIT
    return {"mean": x.mean().item(), "var": x.var().item(), "weight": high.double().mean().item(),
            "std_low": x[~high].std().item(), "std_high": x[high].std().item()}


def test_mixture_statistics_of_the_data_itself():
    # The tolerances are meaningful: exact draws from the mixture pass them, with room to spare.
    g = torch.Generator().manual_seed(0)
    k = (torch.rand(20000, generator=g, dtype=torch.float64) < W[1]).long()
    st = mixture_stats(MU[k] + STD * torch.randn(20000, generator=g, dtype=torch.float64))
    assert abs(st["mean"] - MEAN) < TOL["mean"] / 2 and abs(st["var"] - VAR) < TOL["var"] / 2
    assert abs(st["weight"] - W[1].item()) < TOL["weight"] / 2


@pytest.mark.parametrize("name,steps,params", DISTRIBUTION_CASES,
                         ids=[f"{n}-{s}{'-' + str(p) if p else ''}" for n, s, p in DISTRIBUTION_CASES])
def test_samples_match_the_mixture(name, steps, params, ddpm_schedule):
    sigmas = sigmas_for(name, steps, ddpm_schedule)
    g = torch.Generator().manual_seed(0)
    x = prior((20, 1, 1000), float(sigmas[0]), generator=g).double()
    st = mixture_stats(run(name, x, sigmas, generator=g, **params))
    assert abs(st["mean"] - MEAN) < TOL["mean"], st
    assert abs(st["var"] - VAR) < TOL["var"], st
    assert abs(st["weight"] - W[1].item()) < TOL["weight"], st
    assert abs(st["std_low"] - STD) < TOL["mode_std"] and abs(st["std_high"] - STD) < TOL["mode_std"], st


def test_ode_samplers_converge_to_the_probability_flow_solution(ddpm_schedule):
    """From the same x_T every ODE sampler approaches one solution (Heun, 400 steps) as steps double, at its order.

    All grids run from the schedule's sigma_max to sigma_min and end with the same Euler step to 0, so the limit is
    shared. Observed mean |error| for 10..160 steps: ddim 0.11 -> 0.007 (ratio ~2 per doubling: first order),
    heun 0.13 -> 1.6e-4 (~4.5: second order), dpmpp on Karras levels 0.19 -> 3e-4 (~4); on the default respaced grid
    dpmpp also converges but its coarse low-sigma end caps the ratio near 3.
    """
    x = prior((4, 1, 250), ddpm_schedule.sigma_max, generator=torch.Generator().manual_seed(1)).double()
    reference = run("heun", x, sigmas_for("heun", 400, ddpm_schedule))
    steps = [10, 20, 40, 80, 160]
    for name, spacing, min_ratio in [("ddim", None, 1.6), ("heun", None, 3.0), ("dpmpp", None, 2.0),
                                     ("dpmpp", "karras", 3.0)]:
        errors = [(run(name, x, sigmas_for(name, n, ddpm_schedule, spacing=spacing)) - reference).abs().mean().item()
                  for n in steps]
        assert all(a > b for a, b in zip(errors, errors[1:])), (name, spacing, errors)
        assert errors[-1] < 0.01, (name, spacing, errors)
        assert errors[-2] / errors[-1] > min_ratio, (name, spacing, errors)


# ------------------------------------------------------------------------------------------ classifier-free guidance
def toy_conditional(x: torch.Tensor, sigma: torch.Tensor, *, class_labels: torch.Tensor, mel=None) -> torch.Tensor:
    """A denoiser whose output depends on label, sigma and a shared ``mel``; label -1 is the null class."""
    shift = torch.where(class_labels < 0, torch.full_like(class_labels, -0.5), class_labels.to(x.dtype) * 0.3)
    out = x / (1 + append_dims(sigma, x.ndim) ** 2) + append_dims(shift.to(x.dtype), x.ndim)
    return out if mel is None else out + append_dims(mel.flatten(1).mean(1), x.ndim)


@pytest.mark.parametrize("shape", SHAPES, ids=["1d", "2d"])
def test_guidance_scale_one_is_conditional_and_zero_unconditional(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((shape[0],), 0.7)
    labels = torch.arange(shape[0])
    cond = toy_conditional(x, sigma, class_labels=labels)
    uncond = toy_conditional(x, sigma, class_labels=torch.full_like(labels, NULL_LABEL))
    assert not torch.allclose(cond, uncond)
    assert torch.equal(guided(toy_conditional, 1.0, {"class_labels": NULL_LABEL})(x, sigma, class_labels=labels),
                       cond)
    assert torch.equal(guided(toy_conditional, 0.0, {"class_labels": NULL_LABEL})(x, sigma, class_labels=labels),
                       uncond)


@pytest.mark.numerics
def test_guidance_batches_both_branches_into_one_call():
    x = torch.randn(3, 1, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.full((3,), 0.7, dtype=torch.float64)
    labels, mel = torch.tensor([0, 2, 1]), torch.randn(3, 4, 2, dtype=torch.float64)
    cond = toy_conditional(x, sigma, class_labels=labels, mel=mel)
    uncond = toy_conditional(x, sigma, class_labels=torch.full_like(labels, NULL_LABEL), mel=mel)
    counted, calls = call_counter(toy_conditional)
    out = guided(counted, 2.5, {"class_labels": NULL_LABEL})(x, sigma, class_labels=labels, mel=mel)
    assert calls == [6], "one call on the concatenated [2B] batch"
    # float64, element-wise: the batched and two-call forms round a few operations on values ~3, ~1e-15 (measured
    # 0 and 6e-17); a mixed-up branch is O(0.1).
    torch.testing.assert_close(out, uncond + 2.5 * (cond - uncond), rtol=0, atol=1e-12)
    calls.clear()
    two = guided(counted, 2.5, {"class_labels": NULL_LABEL}, batched=False)(x, sigma, class_labels=labels, mel=mel)
    assert calls == [3, 3]
    torch.testing.assert_close(two, out, rtol=0, atol=1e-12)
    per_example = guided(toy_conditional, torch.tensor([0.0, 1.0, 2.5]), {"class_labels": NULL_LABEL})
    mixed = per_example(x, sigma, class_labels=labels, mel=mel)
    torch.testing.assert_close(mixed[:2], torch.stack([uncond[0], cond[1]]), rtol=0, atol=1e-12)


def test_guided_denoiser_drives_a_sampler():
    sigmas = sigmas_for("dpmpp", 5, DiscreteSchedule(linear_betas(50, 1e-4, 0.05)))
    x = torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 3])
    plain = run("dpmpp", x, sigmas, denoise=toy_conditional, extra_args={"class_labels": labels})
    same = run("dpmpp", x, sigmas, denoise=guided(toy_conditional, 1.0, {"class_labels": NULL_LABEL}),
               extra_args={"class_labels": labels})
    pushed = run("dpmpp", x, sigmas, denoise=guided(toy_conditional, 3.0, {"class_labels": NULL_LABEL}),
                 extra_args={"class_labels": labels})
    assert torch.equal(plain, same) and not torch.allclose(plain, pushed)


def test_drop_labels():
    labels = torch.arange(10000) % 7
    g = torch.Generator().manual_seed(0)
    assert torch.equal(drop_labels(labels, 0.0, g), labels)
    assert (drop_labels(labels, 1.0, g) == NULL_LABEL).all()
    dropped = drop_labels(labels, 0.2, g)
    null = dropped == NULL_LABEL
    assert abs(null.double().mean().item() - 0.2) < 0.02  # 5 standard errors
    assert torch.equal(dropped[~null], labels[~null])
    assert torch.equal(drop_labels(labels, 0.2, torch.Generator().manual_seed(5)),
                       drop_labels(labels, 0.2, torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="probability"):
        drop_labels(labels, 1.5)


def test_positional_noise_takes_a_device_tensor_seed():
    # The vocoder's CUDA graphs feed the seed as a tensor so that one graph serves every seed: same noise either way.
    from audiodiff.diffusion.noise import hashed_normal

    offsets, rows = torch.tensor([0, 4096]), torch.tensor([0, 1])
    a = hashed_normal((2, 1, 300), 12345, 3, offsets, rows)
    b = hashed_normal((2, 1, 300), torch.tensor(12345), 3, offsets, rows)
    assert torch.equal(a, b) and not torch.equal(a, hashed_normal((2, 1, 300), 12346, 3, offsets, rows))


def test_sigma_batch_is_a_fill_of_the_level():
    from audiodiff.diffusion.samplers import _sigma_batch

    x = torch.zeros(3, 1, 8)
    out = _sigma_batch(torch.tensor(0.25, dtype=torch.float64), x)
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((3,), 0.25))
