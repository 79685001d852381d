"""Samplers: free functions ``sampler(denoise, x, sigmas, ...) -> x0``; none of them knows the network.

Each takes a denoiser ``denoise(x, sigma [B], **extra_args) -> x0 estimate`` in the VE convention
``x = x0 + sigma eps`` (see ``denoiser.py``), the starting sample ``x`` (see :func:`prior`), a decreasing tensor of
noise levels ``sigmas [N + 1]`` (normally ending in 0, see ``plan.sigmas_for``), and explicit randomness: a
``torch.Generator`` or a ``noise_sampler(x) -> eps`` (used by the vocoder for position-indexed noise), which wins
when both are given. ``callback(i, x, x0)`` is called once per step. Adding a solver is adding a function here and
a line in ``SAMPLERS``. Shapes are rank-agnostic: ``[B, 1, T]`` waveforms and ``[B, C, H, W]`` images.

In this convention the score is ``grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2`` (Tweedie) and the
probability-flow ODE is ``dx/dsigma = (x - D(x, sigma)) / sigma`` (EDM, Karras et al. 2022, eq. 4 with s = 1).

=========  ==========================================================  =================================
name       method                                                      network calls (NFE), N steps
=========  ==========================================================  =================================
ddpm       ancestral, eta = 1 (DDPM Alg. 2; DiffWave Alg. 2)           1 per step: N
fast       the same function on DiffWave's short schedule (Alg. 3)     1 per step: N
ddim       DDIM eq. 12 in VE form, ``eta`` (0 = deterministic)          1 per step: N
dpmpp      DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), deterministic    1 per step: N
heun       EDM Alg. 1, Heun 2nd order, deterministic                   2 per step, 1 on the step to 0: 2N - 1
pc         score-SDE predictor-corrector (Song et al. 2021, Alg. 3)    1 + n_corrector per step, 1 on the
                                                                       step to 0: N + n_corrector (N - 1)
=========  ==========================================================  =================================
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from audiodiff.diffusion.schedules import append_dims

Denoise = Callable[..., torch.Tensor]
NoiseSampler = Callable[[torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]


def generator_noise(generator: torch.Generator | None) -> NoiseSampler:
    """A noise sampler that draws from ``generator`` (the global RNG when None)."""

    def sample(x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32).to(x.dtype)

    return sample


def prior(shape, sigma_max: float, generator: torch.Generator | None = None, device=None,
          noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """Starting sample ``x_T``: standard normal in VP scaling, i.e. ``N(0, 1 + sigma_max^2)`` in VE.

    ``sigma_max`` must be the first of the sampler's ``sigmas`` (for ``fast`` that is the short schedule's top level,
    not the training schedule's).
    """
    scale = (1 + sigma_max**2) ** 0.5
    if noise_sampler is not None:
        return noise_sampler(torch.empty(shape, device=device)) * scale
    return torch.randn(shape, generator=generator, device=device) * scale


def _real_dtype(x: torch.Tensor) -> torch.dtype:
    # float32 (what backbones expect for sigma, and enough for norms) unless the sample itself is float64.
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _sigma_batch(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # A fill with the value baked in, not a host-to-device copy: sampling loops stay capturable in CUDA graphs.
    return torch.full((x.shape[0],), float(sigma), device=x.device, dtype=_real_dtype(x))  # [B]


def ancestral_step_sizes(sigma_from, sigma_to, eta: float = 1.0):
    """Split the step into a deterministic part to ``sigma_down`` and fresh noise ``sigma_up``.

    With ``eta = 1`` this is exactly the DDPM posterior ``q(x_{t-1} | x_t, x_0)`` (DDIM, Song et al. 2021, eq. 16),
    written in VE form: ``sigma_up^2 = eta^2 sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2``.
    """
    if sigma_to == 0:
        return sigma_to * 0, sigma_to * 0
    up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    down = (sigma_to**2 - up**2) ** 0.5
    return down, up


def _ancestral_update(x, x0, s: float, s_next: float, eta: float, noise_sampler: NoiseSampler) -> torch.Tensor:
    # Deterministic move to sigma_down along eps_hat = (x - x0) / s, then fresh noise of std sigma_up.
    down, up = ancestral_step_sizes(s, s_next, eta)
    x = x0 + down * (x - x0) / s
    return x + up * noise_sampler(x) if up > 0 else x


def _ancestral_loop(denoise, x, sigmas, eta: float, noise_sampler, extra_args: dict, callback, corrector=None):
    # The loop shared by ``ancestral`` and ``pc``: one ancestral step per level, then ``corrector(x, sigma_next)``
    # (skipped at sigma = 0) where a sampler refines the new level.
    sigmas = sigmas.double()
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, _sigma_batch(sigmas[i], x), **extra_args)
        x = _ancestral_update(x, x0, s, s_next, eta, noise_sampler)
        if corrector is not None and s_next > 0:
            x = corrector(x, sigmas[i + 1])
        if callback is not None:
            callback(i, x, x0)
    return x


@torch.no_grad()
def sample_ancestral(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *, eta: float = 1.0,
                     generator: torch.Generator | None = None, noise_sampler: NoiseSampler | None = None,
                     extra_args: dict | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Ancestral sampling (DDPM, Ho et al. 2020, Alg. 2; DiffWave Alg. 2 and, on a short schedule, Alg. 3).

    With ``eta = 1`` it is DDPM's reverse process on the given noise levels; ``eta = 0`` is deterministic DDIM.
    One network call per step.
    """
    return _ancestral_loop(denoise, x, sigmas, eta, noise_sampler or generator_noise(generator), extra_args or {},
                           callback)


@torch.no_grad()
def sample_ddim(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *, eta: float = 0.0,
                generator: torch.Generator | None = None, noise_sampler: NoiseSampler | None = None,
                extra_args: dict | None = None, callback: Callback | None = None) -> torch.Tensor:
    """DDIM (Song, Meng & Ermon 2021, eq. 12), one network call per step; ``eta = 0`` is deterministic.

    Eq. 12 divided by ``sqrt(alpha_bar_{t-1})`` is, in VE form, ``x' = x0 + sqrt(sigma'^2 - sigma_up^2) eps_hat +
    sigma_up z`` with ``eps_hat = (x - x0) / sigma`` and eq. 16's ``sigma_up`` (:func:`ancestral_step_sizes`), which
    is exactly :func:`sample_ancestral`; ``eta = 1`` is DDPM.
    """
    return _ancestral_loop(denoise, x, sigmas, eta, noise_sampler or generator_noise(generator), extra_args or {},
                           callback)


@torch.no_grad()
def sample_dpmpp_2m(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *,
                    generator: torch.Generator | None = None, noise_sampler: NoiseSampler | None = None,
                    extra_args: dict | None = None, callback: Callback | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), deterministic, one network call per step.

    With time ``lambda = -log sigma`` and ``h = lambda' - lambda``, the data-prediction update is
    ``x' = (sigma' / sigma) x - expm1(-h) D_hat`` (their first-order update in VE form, where ``alpha = 1``; with
    ``D_hat = D`` it is DDIM), and the multistep ``D_hat = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}`` with
    ``r = h_{i-1} / h_i`` extrapolates the two latest denoiser outputs. The first step, and the step to
    ``sigma = 0`` (where ``h`` is infinite), are first order (DDIM); the last one simply returns ``D``.
    ``generator`` and ``noise_sampler`` are unused.
    """
    extra_args = extra_args or {}
    sigmas = sigmas.double()
    x0_prev, h_prev = None, None
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, _sigma_batch(sigmas[i], x), **extra_args)
        if s_next == 0:
            x = x0
        else:
            h = math.log(s / s_next)
            d = x0
            if x0_prev is not None:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = (s_next / s) * x - math.expm1(-h) * d
            h_prev = h
        x0_prev = x0
        if callback is not None:
            callback(i, x, x0)
    return x


@torch.no_grad()
def sample_heun(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *,
                generator: torch.Generator | None = None, noise_sampler: NoiseSampler | None = None,
                extra_args: dict | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, "EDM", Alg. 1), deterministic.

    ``d_i = (x_i - D(x_i, sigma_i)) / sigma_i``; Euler to ``sigma_{i+1}``, then average ``d_i`` with the slope there.
    Two network calls per step, one on the step to ``sigma = 0`` (Euler, which lands on ``D``): ``2N - 1`` for N
    steps. ``generator`` and ``noise_sampler`` are unused.
    """
    extra_args = extra_args or {}
    sigmas = sigmas.double()
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, _sigma_batch(sigmas[i], x), **extra_args)
        d = (x - x0) / s  # dx/dsigma, EDM eq. 4 with s(t) = 1
        x_next = x + (s_next - s) * d
        if s_next != 0:
            d_next = (x_next - denoise(x_next, _sigma_batch(sigmas[i + 1], x), **extra_args)) / s_next
            x_next = x + (s_next - s) * (d + d_next) / 2
        x = x_next
        if callback is not None:
            callback(i, x, x0)
    return x


def langevin_step(denoise: Denoise, x: torch.Tensor, sigma: torch.Tensor, snr: float, noise_sampler: NoiseSampler,
                  extra_args: dict) -> torch.Tensor:
    """One Langevin corrector step at noise level ``sigma`` (Song et al. 2021, Alg. 4/5), one network call.

    ``g = (D(x) - x) / sigma^2``, ``z ~ N(0, I)``, ``eps = 2 (snr sqrt(d) / ||g||)^2`` per example,
    ``x <- x + eps g + sqrt(2 eps) z``. ``||z||`` is replaced by its expectation ``sqrt(d)`` (d = elements per example),
    as the paper advises for small batches, and ``||g||`` is per example so results do not depend on batch company.
    ``d / ||g||^2`` estimates the variance of ``p_sigma``; it is capped at four times the sample's own second moment
    plus ``sigma^2`` (never reached with a sensible score), and a zero score makes no move, so that an untrained,
    zero-initialised network (``D(x) = x``, ``g = 0``) cannot produce an infinite step.
    """
    s = float(sigma)
    g = (denoise(x, _sigma_batch(sigma, x), **extra_args) - x) / s**2  # score
    z = noise_sampler(x)
    d = x[0].numel()
    g_sq = g.flatten(1).to(_real_dtype(x)).pow(2).sum(1)  # ||g||^2 [B]
    x_sq = x.flatten(1).to(_real_dtype(x)).pow(2).mean(1)  # [B]
    var = torch.where(g_sq > 0, d / g_sq, torch.zeros_like(g_sq)).minimum(4 * (x_sq + s**2))
    step = append_dims(2 * snr**2 * var, x.ndim).to(x.dtype)
    return x + step * g + (2 * step).sqrt() * z


@torch.no_grad()
def sample_pc(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *, snr: float = 0.16, n_corrector: int = 1,
              generator: torch.Generator | None = None, noise_sampler: NoiseSampler | None = None,
              extra_args: dict | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Predictor-corrector sampling for the VP SDE (Song et al. 2021, Appendix G, Alg. 3 with the corrector of Alg. 5).

    Predictor: one ancestral step (DDPM posterior, score-SDE's "ancestral sampling" predictor, exact on a respaced
    grid); corrector: ``n_corrector`` Langevin steps (:func:`langevin_step`) at the new level, with signal-to-noise
    ratio ``snr`` (0.16 as in score-SDE's released configs; the paper's Table 5 finds 0.01 best for VP models at
    1000 steps). Alg. 5's factor ``alpha_i = 1 - beta_i`` is dropped: it is within 5% of 1 on the linear training
    schedules, and a respaced grid has no per-step beta of its own (the Langevin update is the same in VE and VP
    coordinates up to this factor). No corrector at ``sigma = 0``, where the last predictor step returns ``D``.
    ``1 + n_corrector`` network calls per step, 1 on the step to 0.
    """
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or generator_noise(generator)

    def corrector(x, sigma):
        for _ in range(n_corrector):
            x = langevin_step(denoise, x, sigma, snr, noise_sampler, extra_args)
        return x

    return _ancestral_loop(denoise, x, sigmas, 1.0, noise_sampler, extra_args, callback, corrector)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ancestral,
    "fast": sample_ancestral,
    "ddim": sample_ddim,
    "dpmpp": sample_dpmpp_2m,
    "heun": sample_heun,
    "pc": sample_pc,
}



def with_grad(sampler: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``sampler`` (a value of ``SAMPLERS``) with autograd: the same function without its ``torch.no_grad``, so that
    a loss on its output reaches the network through every step (few-step fine-tuning, ``training/fewstep.py``).
    The arithmetic is the sampler's own, so its output equals the no-grad call's."""
    return getattr(sampler, "__wrapped__", sampler)  # torch.no_grad() wraps with functools.wraps


# Samplers that draw no noise (ddim with its default eta = 0): from the same starting x they give the same output
# whatever the generator.
DETERMINISTIC = ("ddim", "dpmpp", "heun")
