"""Noise schedules as pure functions, and the one adapter between discrete steps and noise levels.

Notation. A discrete variance-preserving (VP) schedule has betas ``beta_t`` (t = 0..T-1),
``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` (DDPM, Ho et al. 2020, eq. 4) and
``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``. Inside audiodiff the sampler works with the noise level
``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` of the variance-exploding view ``x = x_0 + sigma eps``
(Karras et al. 2022, "EDM", sec. 2); ``x_vp = x / sqrt(1 + sigma^2)``.

The network is conditioned on a continuous step index ``t``. ``DiscreteSchedule.t_from_sigma`` maps any noise level
to a fractional ``t`` by interpolating linearly in ``sqrt(alpha_bar)`` between the two neighbouring training steps:
exactly DiffWave's fractional-step alignment (Kong et al. 2021, Appendix B), here used by every sampler and by
training alike, so the two cannot drift apart.

Continuous noise levels for samplers that do not need the training grid: ``karras_sigmas`` (EDM, eq. 5) and
``loglinear_sigmas`` (uniform in ``log sigma``, the "time uniform" grid of DPM-Solver, Lu et al. 2022, sec. 3.3).
"""

from __future__ import annotations

import math

import torch

# DiffWave's 6-step fast-sampling variance schedule (Kong et al. 2021, Appendix B).
DIFFWAVE_FAST_BETAS = (1e-4, 1e-3, 0.01, 0.05, 0.2, 0.5)


def explicit_betas(betas) -> torch.Tensor:
    """An explicit beta list (e.g. a recipe's or a tuned fast schedule) as a float64 tensor, validated.

    Raises ``ValueError`` naming the problem unless ``betas`` is a non-empty 1-D sequence with every entry in (0, 1).
    """
    b = torch.as_tensor(betas, dtype=torch.float64)
    if b.ndim != 1 or len(b) == 0:
        raise ValueError(f"betas must be a non-empty 1-D list, got shape {tuple(b.shape)}")
    if not ((b > 0) & (b < 1)).all():
        raise ValueError(f"betas must lie in (0, 1), got {b.tolist()}")
    return b


def linear_betas(steps: int = 50, start: float = 1e-4, end: float = 0.05) -> torch.Tensor:
    """DiffWave's linear schedule: T=50 with 1e-4..0.05 (BASE), or T=200 with 1e-4..0.02."""
    return torch.linspace(start, end, steps, dtype=torch.float64)


def cosine_betas(steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021), eq. 17, betas clipped at ``max_beta``."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """Cumulative product ``prod (1 - beta)``."""
    return torch.cumprod(1 - torch.as_tensor(betas, dtype=torch.float64), dim=0)


def betas_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`alpha_bar_from_betas`."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    return 1 - alpha_bar / prev


def sigma_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """``sigma = sqrt((1 - alpha_bar) / alpha_bar)``."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def alpha_bar_from_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """``alpha_bar = 1 / (1 + sigma^2)``."""
    return 1 / (1 + sigma**2)


def sigmas_from_betas(betas) -> torch.Tensor:
    """Noise level ``sigma_t`` of every step of a beta schedule (increasing)."""
    return sigma_from_alpha_bar(alpha_bar_from_betas(betas))


def betas_from_sigmas(sigmas) -> torch.Tensor:
    """Inverse of :func:`sigmas_from_betas`: the betas whose steps have noise levels ``sigmas`` (increasing)."""
    return betas_from_alpha_bar(alpha_bar_from_sigma(torch.as_tensor(sigmas, dtype=torch.float64)))


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """``n`` decreasing noise levels from ``sigma_max`` to ``sigma_min`` (Karras et al. 2022, "EDM", eq. 5).

    ``sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``; EDM's final
    ``sigma_N = 0`` is not included (``plan.sigmas_for`` appends it). ``n = 1`` gives ``[sigma_max]``.
    """
    if n < 1 or not 0 < sigma_min <= sigma_max:
        raise ValueError(f"karras_sigmas needs n >= 1 and 0 < sigma_min <= sigma_max, got {n}, {sigma_min}, "
                         f"{sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0], sigmas[-1] = sigma_max, sigma_min if n > 1 else sigma_max  # exact endpoints despite the rho-th powers
    return sigmas


def loglinear_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """``n`` decreasing noise levels evenly spaced in ``log sigma`` (``karras_sigmas`` as ``rho -> inf``)."""
    if n < 1 or not 0 < sigma_min <= sigma_max:
        raise ValueError(f"loglinear_sigmas needs n >= 1 and 0 < sigma_min <= sigma_max, got {n}, {sigma_min}, "
                         f"{sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    sigmas = torch.exp(math.log(sigma_max) + ramp * (math.log(sigma_min) - math.log(sigma_max)))
    sigmas[0], sigmas[-1] = sigma_max, sigma_min if n > 1 else sigma_max
    return sigmas


SCHEDULES = ("linear", "cosine")  # the names make_betas knows


def make_betas(name: str, steps: int, **kwargs) -> torch.Tensor:
    """Betas of a named schedule: ``linear`` (DiffWave) or ``cosine``."""
    if name == "linear":
        return linear_betas(steps, **kwargs)
    if name == "cosine":
        return cosine_betas(steps, **kwargs)
    raise ValueError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")


class DiscreteSchedule:
    """The training schedule: betas, ``alpha_bar`` and ``sigma`` per step, and the sigma <-> t adapter."""

    def __init__(self, betas):
        self.betas = explicit_betas(betas)  # [T]; any explicit list in (0, 1) works, not only named schedules
        self.alpha_bar = alpha_bar_from_betas(self.betas)  # [T], decreasing
        self.sigmas = sigma_from_alpha_bar(self.alpha_bar)  # [T], increasing
        # sqrt(alpha_bar) on the grid t = -1 .. T-1, with alpha_bar_{-1} = 1 (no noise).
        self._root = torch.cat([self.alpha_bar.new_ones(1), self.alpha_bar.sqrt()])
        self._root_on: dict = {}  # per-device copies: no host-to-device copy per call (capturable in CUDA graphs)

    def _grid(self, device) -> torch.Tensor:
        device = torch.device(device)
        if device not in self._root_on:
            self._root_on[device] = self._root.to(device)
        return self._root_on[device]

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def sigma_min(self) -> float:
        """Noise level of the first training step (the least noisy level the network was trained on)."""
        return float(self.sigmas[0])

    def t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional step index for noise level ``sigma`` (any shape), DiffWave's alignment formula.

        For ``alpha_bar_{t+1} <= a <= alpha_bar_t``: ``t + (sqrt(alpha_bar_t) - sqrt(a)) /
        (sqrt(alpha_bar_t) - sqrt(alpha_bar_{t+1}))``; clamped to [-1, T-1].
        """
        sigma = torch.as_tensor(sigma)
        root = alpha_bar_from_sigma(sigma.double()).sqrt()
        grid = self._grid(root.device)
        # grid is decreasing; index of the first grid point below root.
        hi = torch.searchsorted(-grid, -root.contiguous(), right=False).clamp(1, len(grid) - 1)
        lo = hi - 1
        frac = (grid[lo] - root) / (grid[lo] - grid[hi])
        t = (lo - 1).double() + frac.clamp(0, 1)
        return t.to(sigma.dtype if sigma.is_floating_point() else torch.float32)

    def sigma_from_t(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`t_from_sigma` (linear in ``sqrt(alpha_bar)`` between grid points)."""
        t = torch.as_tensor(t, dtype=torch.float64).clamp(-1, self.num_steps - 1)
        pos = t + 1
        lo = pos.floor().long().clamp(max=self.num_steps - 1)
        frac = pos - lo
        grid = self._grid(t.device)
        root = grid[lo] + frac * (grid[(lo + 1).clamp(max=self.num_steps)] - grid[lo])
        return sigma_from_alpha_bar(root**2)


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to ``x`` until it has ``ndim`` dims (broadcast per-example values)."""
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))
