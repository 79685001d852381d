"""Schedules, the sigma <-> t adapter and the sampler plans, against independent reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiodiff.diffusion import DiscreteSchedule, cosine_betas, karras_sigmas, linear_betas, make_betas, sigmas_for
from audiodiff.diffusion.plan import fast_betas
from audiodiff.diffusion.samplers import SAMPLERS
from audiodiff.diffusion.schedules import (
    DIFFWAVE_FAST_BETAS,
    alpha_bar_from_betas,
    alpha_bar_from_sigma,
    betas_from_alpha_bar,
    betas_from_sigmas,
    explicit_betas,
    loglinear_sigmas,
    sigma_from_alpha_bar,
    sigmas_from_betas,
)
from audiodiff.errors import AudiodiffError

BASE = DiscreteSchedule(linear_betas(50, 1e-4, 0.05))  # DiffWave BASE
LARGE = DiscreteSchedule(linear_betas(200, 1e-4, 0.02))  # DiffWave LARGE / unconditional


def diffwave_alignment(train_betas, inference_betas) -> list[float]:
    """The fractional training step of each fast step, as DiffWave computes it (Kong et al. 2021, Appendix B, and the
    reference implementation's inference loop), in plain numpy: for each s find t with
    talpha[t+1] <= alpha[s] <= talpha[t] and take t + (sqrt(talpha[t]) - sqrt(alpha[s])) /
    (sqrt(talpha[t]) - sqrt(talpha[t+1]))."""
    talpha = np.cumprod(1 - np.asarray(train_betas, dtype=np.float64))
    alpha = np.cumprod(1 - np.asarray(inference_betas, dtype=np.float64))
    steps = []
    for s in range(len(alpha)):
        for t in range(len(talpha) - 1):
            if talpha[t + 1] <= alpha[s] <= talpha[t]:
                steps.append(t + (talpha[t] ** 0.5 - alpha[s] ** 0.5) / (talpha[t] ** 0.5 - talpha[t + 1] ** 0.5))
                break
    assert len(steps) == len(alpha), "every fast step must fall inside the training schedule"
    return steps


@pytest.mark.parametrize("schedule,steps,tuned", [
    (BASE, 6, None), (LARGE, 6, None), (BASE, 10, None), (LARGE, 4, {"4": [5e-4, 0.01, 0.1, 0.6]}),
], ids=["base-6", "large-6", "base-geometric-10", "large-tuned-4"])
def test_fast_steps_follow_diffwave_alignment(schedule, steps, tuned):
    sigmas = sigmas_for("fast", steps, schedule, tuned=tuned)
    t = schedule.t_from_sigma(sigmas[:-1]).flip(0)  # fast step s = 0 (least noise) first, as in the paper
    expected = diffwave_alignment(schedule.betas.tolist(), fast_betas(steps, tuned))
    # float64: cumulative products (<= 200 factors, <= 200 eps64 relative) divided by neighbouring sqrt(alpha_bar)
    # >= 5e-5 apart: <= 5e-10 of a step (measured 4.5e-13). Interpolating in alpha_bar instead moves t by 3e-4-8e-4.
    np.testing.assert_allclose(t.numpy(), expected, rtol=0, atol=1e-9)


def test_default_fast_schedule_is_diffwaves():
    assert fast_betas(6) == [1e-4, 1e-3, 0.01, 0.05, 0.2, 0.5] == list(DIFFWAVE_FAST_BETAS)
    # beta_0 = 1e-4 on both schedules, so the first fast step is training step 0 exactly; all lie inside [0, T-1].
    t = BASE.t_from_sigma(sigmas_for("fast", 6, BASE)[:-1]).flip(0)
    assert abs(float(t[0])) < 1e-9 and (t[1:] > t[:-1]).all() and float(t[-1]) < 49


@pytest.mark.parametrize("schedule", [BASE, LARGE, DiscreteSchedule(cosine_betas(1000))], ids=["base", "large",
                                                                                              "cosine"])
def test_step_index_adapter_round_trips(schedule):
    T = schedule.num_steps
    integer = torch.arange(T, dtype=torch.float64)
    # float64. sigma = sqrt((1 - a) / a) with a = root^2 near 1 cancels: ~eps64 / beta_0 = 2e-12 relative (measured
    # 1.3e-12). t: the interpolation divides by grid spacings >= 2e-5, ~1e-11 of a step (measured 6e-12); the
    # tolerances below leave >= 100x, and an off-by-one step is 1.
    torch.testing.assert_close(schedule.sigma_from_t(integer), schedule.sigmas, rtol=1e-9, atol=0)
    torch.testing.assert_close(schedule.t_from_sigma(schedule.sigmas), integer, rtol=0, atol=1e-6)
    fractional = torch.linspace(-1, T - 1, 997, dtype=torch.float64)
    torch.testing.assert_close(schedule.t_from_sigma(schedule.sigma_from_t(fractional)), fractional, rtol=0,
                               atol=1e-6)
    assert float(schedule.t_from_sigma(torch.tensor(0.0, dtype=torch.float64))) == -1
    assert schedule.sigma_min == float(schedule.sigmas[0]) and schedule.sigma_max == float(schedule.sigmas[-1])


@pytest.mark.parametrize("betas", [linear_betas(), linear_betas(200, 1e-4, 0.02), cosine_betas(1000)],
                         ids=["linear-50", "linear-200", "cosine-1000"])
def test_conversions_round_trip(betas):
    alpha_bar = alpha_bar_from_betas(betas)
    sigmas = sigma_from_alpha_bar(alpha_bar)
    # float64: 1 - a_t / a_(t-1) cancels to beta, ~eps64 / beta >= 1e-5: 2e-11 relative (measured 1.2e-12).
    torch.testing.assert_close(betas_from_alpha_bar(alpha_bar), betas, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(alpha_bar_from_sigma(sigmas), alpha_bar, rtol=1e-9, atol=0)
    assert torch.equal(sigmas_from_betas(betas), sigmas)  # the same two functions composed: bitwise
    torch.testing.assert_close(betas_from_sigmas(sigmas), betas, rtol=1e-9, atol=1e-12)
    # Against the definitions directly: alpha_bar_t = prod (1 - beta_s), sigma^2 = (1 - alpha_bar) / alpha_bar.
    b = betas.tolist()
    # Products of <= 1000 factors in float64: <= 1000 eps64 = 2e-13 apart, whatever the order.
    assert math.isclose(float(alpha_bar[-1]), math.prod(1 - x for x in b), rel_tol=1e-9)
    assert math.isclose(float(sigmas[-1]) ** 2, (1 - float(alpha_bar[-1])) / float(alpha_bar[-1]), rel_tol=1e-9)


def test_named_schedules():
    base = linear_betas()
    assert len(base) == 50 and float(base[0]) == 1e-4 and math.isclose(float(base[-1]), 0.05)
    large = make_betas("linear", 200, start=1e-4, end=0.02)
    assert len(large) == 200 and math.isclose(float(large[-1]), 0.02)
    cos = make_betas("cosine", 1000)
    f = [math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in (0, 500)]
    assert math.isclose(float(alpha_bar_from_betas(cos)[499]), f[1] / f[0], rel_tol=1e-9)  # Nichol & Dhariwal eq. 17
    assert float(cos.max()) == 0.999
    with pytest.raises(ValueError, match="unknown schedule"):
        make_betas("quadratic", 10)


def test_explicit_betas():
    schedule = DiscreteSchedule([1e-4, 1e-3, 0.01])  # a plain list is a schedule
    assert schedule.num_steps == 3 and schedule.betas.dtype == torch.float64
    for bad, msg in [([], "non-empty"), ([[0.1, 0.2]], "1-D"), ([0.1, 1.0], r"\(0, 1\)"), ([0.0, 0.1], r"\(0, 1\)")]:
        with pytest.raises(ValueError, match=msg):
            explicit_betas(bad)


def test_karras_sigmas():
    s = karras_sigmas(10, 0.002, 80.0)
    assert len(s) == 10 and s.dtype == torch.float64
    # float64: the endpoints are set exactly, inner levels are a 7th power of a sum of 7th roots (~10 eps64).
    assert float(s[0]) == pytest.approx(80.0, rel=1e-12) and float(s[-1]) == pytest.approx(0.002, rel=1e-12)
    assert (s[1:] < s[:-1]).all()
    # EDM eq. 5 term by term.
    for i in (1, 4, 8):
        expected = (80.0 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
        assert float(s[i]) == pytest.approx(expected, rel=1e-12)
    # float64, rho = 1 is a linear ramp: equal to linspace within a few eps64 (the default 1e-7 is ample).
    torch.testing.assert_close(karras_sigmas(5, 1.0, 3.0, rho=1.0), torch.linspace(3, 1, 5, dtype=torch.float64))
    assert karras_sigmas(1, 0.01, 5.0).tolist() == [5.0]
    # rho interpolates between uniform (rho = 1) and log-uniform (rho -> inf) spacing: interior levels lie between.
    uniform, geometric = torch.linspace(80, 0.002, 10, dtype=torch.float64), loglinear_sigmas(10, 0.002, 80.0)
    assert (s[1:-1] < uniform[1:-1]).all() and (s[1:-1] > geometric[1:-1]).all()
    with pytest.raises(ValueError):
        karras_sigmas(4, 2.0, 1.0)


def test_loglinear_sigmas():
    s = loglinear_sigmas(6, 0.01, 100.0)
    ratios = s[1:] / s[:-1]
    # float64 exponentials of an evenly spaced ramp: ratios within ~10 eps64 * |log s| (the default 1e-7 is ample).
    torch.testing.assert_close(ratios, torch.full_like(ratios, 0.01 ** (2 / 5)))
    assert float(s[0]) == pytest.approx(100.0) and float(s[-1]) == pytest.approx(0.01)


# -------------------------------------------------------------------------------------------------------- plans
@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 2, 6, 13])
def test_every_sampler_gets_sensible_sigmas(name, steps):
    sigmas = sigmas_for(name, steps, BASE)
    assert len(sigmas) == steps + 1 and float(sigmas[-1]) == 0
    assert (sigmas[1:] < sigmas[:-1]).all()
    assert float(sigmas[0]) <= BASE.sigma_max * (1 + 1e-9) and float(sigmas[-2]) >= BASE.sigma_min * (1 - 1e-9)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmpp", "pc"])
def test_respaced_plans_land_on_training_steps(name):
    sigmas = sigmas_for(name, 7, LARGE)[:-1]
    t = LARGE.t_from_sigma(sigmas)
    # float64, ~1e-11 of a step as in test_step_index_adapter_round_trips; half a step off grid would be 0.5.
    torch.testing.assert_close(t, t.round(), rtol=0, atol=1e-6)
    assert float(t[0]) == pytest.approx(199) and float(t[-1]) == pytest.approx(0, abs=1e-6)
    assert torch.equal(sigmas_for(name, 200, LARGE)[:-1], LARGE.sigmas.flip(0))  # N = T: every step, indexed


def test_heun_uses_karras_levels_over_the_training_range():
    # Each pair below is the same function of the same arguments (or an indexing): bitwise.
    sigmas = sigmas_for("heun", 8, LARGE)
    assert torch.equal(sigmas[:-1], karras_sigmas(8, LARGE.sigma_min, LARGE.sigma_max))
    on_grid = sigmas_for("heun", 8, LARGE, spacing="respaced")
    assert torch.equal(on_grid, sigmas_for("ddim", 8, LARGE))
    assert torch.equal(sigmas_for("heun", 500, LARGE)[[0, -2]], LARGE.sigmas[[-1, 0]])  # N > T is fine


def test_plan_errors_say_what_to_do():
    with pytest.raises(AudiodiffError, match="ddim, ddpm, dpmpp, fast, heun, pc"):
        sigmas_for("euler", 10, BASE)
    with pytest.raises(AudiodiffError, match="at least 1"):
        sigmas_for("ddim", 0, BASE)
    with pytest.raises(AudiodiffError, match="at most 50"):
        sigmas_for("ddpm", 51, BASE)
    with pytest.raises(AudiodiffError, match="above the model's sigma_max"):
        sigmas_for("fast", 14, BASE)
    with pytest.raises(AudiodiffError, match=r"\(0, 1\)"):
        sigmas_for("fast", 2, BASE, betas=[0.1, 1.5])
    with pytest.raises(AudiodiffError, match="spacing"):
        sigmas_for("fast", 6, BASE, spacing="karras")
    with pytest.raises(AudiodiffError, match="unknown spacing"):
        sigmas_for("heun", 6, BASE, spacing="cubic")


def test_explicit_betas_work_with_any_sampler():
    betas = [1e-4, 1e-3, 0.01, 0.05, 0.2, 0.5]
    assert torch.equal(sigmas_for("ddim", 6, BASE, betas=betas), sigmas_for("fast", 6, BASE))  # the same betas
