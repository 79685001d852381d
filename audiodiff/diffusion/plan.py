"""Noise levels for a sampler and a step count: the single place where "sampler NAME, N steps" becomes sigmas.

``steps`` is always the number of sigma intervals N (``sigmas`` has N + 1 entries, the last 0); the network calls
that costs depend on the sampler (see ``samplers.py``: 2N - 1 for ``heun``, N + n_corrector (N - 1) for ``pc``).

- ``ddpm``, ``ddim``, ``dpmpp``, ``pc`` (spacing ``respaced``): N training steps evenly respaced from the T of the
  training schedule, from step T-1 down to step 0 (N = T with ``ddpm``: DiffWave Alg. 2 / DDPM Alg. 2). Every
  network call lands on an integer training step, the only ones the network was trained on.
- ``heun`` (spacing ``karras``): EDM's eq. 5 levels with rho = 7 between the schedule's ``sigma_min`` (step 0) and
  ``sigma_max`` (step T-1), the discretisation Heun's method was tuned with (EDM sec. 3); off-grid levels reach the
  network at fractional steps through ``DiscreteSchedule.t_from_sigma``. ``spacing="respaced"`` keeps it on grid.
- ``fast``: a short variance schedule ``betas`` of length N (DiffWave Alg. 3); default
  ``[1e-4, 1e-3, 0.01, 0.05, 0.2, 0.5]`` for N = 6, a tuned schedule when the model ships one for N, otherwise
  N betas spaced geometrically between 1e-4 and 0.5 (the default is close to geometric). Its steps reach the
  network at fractional indices through ``DiscreteSchedule.t_from_sigma``, i.e. DiffWave's alignment formula.
  Passing ``betas`` uses them with any sampler. A short schedule noisier than the training schedule's last step is
  refused (the reference DiffWave finds no aligned step for it either); with DiffWave BASE (T = 50, 1e-4..0.05) the
  geometric fallback hits that at N = 14.
"""

from __future__ import annotations

import torch

from audiodiff.diffusion.samplers import SAMPLERS
from audiodiff.diffusion.schedules import (
    DIFFWAVE_FAST_BETAS,
    DiscreteSchedule,
    explicit_betas,
    karras_sigmas,
    loglinear_sigmas,
    sigmas_from_betas,
)
from audiodiff.errors import AudiodiffError

SPACINGS = ("respaced", "karras", "loglinear")
DEFAULT_SPACING = {"heun": "karras"}  # every other sampler but fast: "respaced"


def check_sampler(sampler) -> str:
    """``sampler`` if it names one of ``SAMPLERS``, else one line listing them: the one check of a sampler name."""
    if sampler not in SAMPLERS:
        raise AudiodiffError(f"unknown sampler {sampler!r}; expected one of {', '.join(sorted(SAMPLERS))}")
    return sampler


def fast_betas(steps: int, tuned: dict | None = None) -> list[float]:
    """The short variance schedule used by ``fast`` for ``steps`` steps."""
    if tuned and str(steps) in tuned:
        return list(tuned[str(steps)])
    if steps == len(DIFFWAVE_FAST_BETAS):
        return list(DIFFWAVE_FAST_BETAS)
    if steps == 1:
        return [0.5]
    return torch.logspace(-4, torch.log10(torch.tensor(0.5)).item(), steps, dtype=torch.float64).tolist()


def respaced_sigmas(steps: int, schedule: DiscreteSchedule) -> torch.Tensor:
    """Noise levels of ``steps`` training steps evenly respaced from T-1 down to 0 (decreasing, no final 0)."""
    idx = torch.linspace(schedule.num_steps - 1, 0, steps, dtype=torch.float64).round().long()
    return schedule.sigmas[idx]


def sigmas_for(sampler: str, steps: int, schedule: DiscreteSchedule, betas=None, tuned: dict | None = None, *,
               spacing: str | None = None) -> torch.Tensor:
    """Decreasing noise levels ``[steps + 1]`` ending in 0 for ``sampler`` with ``steps`` intervals.

    ``spacing`` (``respaced``, ``karras`` or ``loglinear``) overrides the sampler's default; it does not apply to
    ``fast`` or to explicit ``betas``.
    """
    check_sampler(sampler)
    if steps < 1:
        raise AudiodiffError(f"steps must be at least 1, got {steps}")
    if sampler == "fast" or betas is not None:
        if spacing is not None:
            raise AudiodiffError(f"spacing={spacing!r} does not apply to a fast (explicit beta) schedule; drop it")
        try:
            b = explicit_betas(betas if betas is not None else fast_betas(steps, tuned))
        except ValueError as err:
            raise AudiodiffError(f"fast schedule: {err}") from None
        sig = sigmas_from_betas(b).flip(0)
        if sig[0] > schedule.sigma_max * (1 + 1e-6):
            # Beyond the last training step t_from_sigma would clamp to T-1 and the network would under-denoise.
            raise AudiodiffError(
                f"{sampler}: the short schedule for {len(b)} steps reaches sigma {float(sig[0]):.3g}, above the "
                f"model's sigma_max {schedule.sigma_max:.3g} (alpha_bar {float(1 / (1 + sig[0] ** 2)):.3g} < "
                f"{1 / (1 + schedule.sigma_max ** 2):.3g}); use fewer steps, smaller betas, or the ddim sampler")
        return torch.cat([sig, sig.new_zeros(1)])
    spacing = spacing or DEFAULT_SPACING.get(sampler, "respaced")
    if spacing == "respaced":
        T = schedule.num_steps
        if steps > T:
            raise AudiodiffError(f"{sampler}: at most {T} steps for this model's schedule, got {steps}")
        sig = respaced_sigmas(steps, schedule)
    elif spacing == "karras":
        sig = karras_sigmas(steps, schedule.sigma_min, schedule.sigma_max)
    elif spacing == "loglinear":
        sig = loglinear_sigmas(steps, schedule.sigma_min, schedule.sigma_max)
    else:
        raise AudiodiffError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    return torch.cat([sig, sig.new_zeros(1)])
