"""Preconditioning: wrap a backbone ``net(x_vp, t, **cond)`` into a denoiser ``D(x, sigma) -> x0``.

The samplers speak the variance-exploding language of Karras et al. (2022, "EDM", Table 1): ``x = x0 + sigma eps``
and a denoiser that returns an estimate of ``x0``. Backbones are trained in the VP scaling of DDPM/DiffWave and
conditioned on a (fractional) step index; this wrapper is the only place that converts between the two:

    x_vp  = x / sqrt(1 + sigma^2)          (c_in)
    t     = schedule.t_from_sigma(sigma)   (c_noise: DiffWave's alignment)
    eps-prediction:  x0 = x - sigma * eps_hat
    v-prediction:    v = alpha eps - s x0 with alpha = 1 / sqrt(1 + sigma^2), s = sigma alpha (Salimans & Ho 2022),
                     so x0 = alpha x_vp - s v.

``loss`` is the matching training objective, one value per example (the loop reduces).

A shaped prior (noise ``L z`` with ``z`` standard: PriorGrad's ``L = diag(std)``, Lee et al. 2022; SpecGrad's
time-varying filter, Koizumi et al. 2022) is a change of coordinates: with ``prior`` among the keyword arguments, an
object with ``apply(z) = L z`` and ``whiten(x) = L^-1 x`` (``Diagonal`` here; ``audio/prior.py``), ``x`` is
``y = L^-1 x_data`` and the backbone sees ``L y``, so the samplers, which only ever see ``y``, start from and
inject standard noise as before, and the caller applies ``L`` to their result. The eps (or v) the backbone predicts
is the whitened one, so the loss on it is ``||eps - eps_hat||^2`` in the norm of ``Sigma^-1 = (L L^T)^-1``
(PriorGrad's, and SpecGrad's ``L^-1`` weighting; and its L1 analogue).
"""

from __future__ import annotations

import torch

from audiodiff.diffusion.schedules import DiscreteSchedule, append_dims

PREDICTIONS = ("eps", "v")


class Diagonal:
    """``L = diag(std)``: PriorGrad's prior, ``std`` broadcast against the signal."""

    def __init__(self, std: torch.Tensor):
        self.std = std

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.std
LOSSES = ("l1", "l2")


class Denoiser:
    """``D(x, sigma, **cond) -> x0`` around a VP backbone trained with ``prediction`` ("eps" or "v")."""

    def __init__(self, net, schedule: DiscreteSchedule, prediction: str = "eps", loss: str = "l1"):
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
        self.net = net
        self.schedule = schedule
        self.prediction = prediction
        self.loss_type = loss

    @property
    def sigma_max(self) -> float:
        return self.schedule.sigma_max

    def _scalings(self, sigma: torch.Tensor, x: torch.Tensor):
        sigma = append_dims(sigma.to(torch.float32), x.ndim)
        alpha = (1 + sigma**2).rsqrt()  # sqrt(alpha_bar)
        return sigma, alpha

    def raw(self, x: torch.Tensor, sigma: torch.Tensor, prior=None, **cond) -> torch.Tensor:
        """The backbone's own output (eps or v) at VE input ``x`` (``L^-1 x`` with a shaped ``prior``) and noise
        level ``sigma`` ``[B]``."""
        return self._backbone(x if prior is None else prior.apply(x), sigma, **cond)

    def _backbone(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """The backbone at VE input ``x`` in the data's coordinates."""
        _, alpha = self._scalings(sigma, x)
        t = self.schedule.t_from_sigma(sigma).to(torch.float32)
        return self.net((x * alpha).to(x.dtype), t, **cond)

    def x0_from_raw(self, x: torch.Tensor, sigma: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        s, alpha = self._scalings(sigma, x)
        out = out.to(x.dtype)
        if self.prediction == "eps":
            return x - s * out
        return alpha * (alpha * x) - (s * alpha) * out  # alpha x_vp - sigma_vp v

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        return self.x0_from_raw(x, sigma, self.raw(x, sigma, **cond))

    def loss(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, prior=None, with_x0: bool = False,
             **cond):
        """Per-example training loss at noise levels ``sigma [B]`` with standard Gaussian ``noise`` shaped like
        ``x0``, shaped by the ``prior``'s ``L`` when given. ``with_x0``: also return the denoised estimate of ``x0``
        (in the data's coordinates), for auxiliary losses."""
        s, alpha = self._scalings(sigma, x0)
        if prior is None or self.prediction == "eps":
            # The backbone's input L (L^-1 x0 + s noise) is x0 + s L noise: eps needs no whitened data, so no
            # inverse (the envelope prior's costs 16 filter pairs).
            x = x0 + s * (noise if prior is None else prior.apply(noise))
            out = self._backbone(x, sigma, **cond).float()
            target = noise if self.prediction == "eps" else alpha * noise - (s * alpha) * x0
        else:
            y0 = prior.whiten(x0)  # whitened data (PriorGrad)
            y = y0 + s * noise
            out = self.raw(y, sigma, prior=prior, **cond).float()
            target = alpha * noise - (s * alpha) * y0
        err = out - target.float()
        err = err.abs() if self.loss_type == "l1" else err.square()
        loss = err.flatten(1).mean(1)
        if not with_x0:
            return loss
        if prior is None:
            return loss, self.x0_from_raw(x.float(), sigma, out)
        if self.prediction == "eps":
            return loss, x.float() - s * prior.apply(out)  # L (y - s eps_hat)
        return loss, prior.apply(self.x0_from_raw(y.float(), sigma, out))

    def sample_training_sigma(self, batch: int, generator=None, device=None) -> torch.Tensor:
        """Noise levels of uniformly drawn integer training steps (DiffWave Algorithm 1)."""
        t = torch.randint(0, self.schedule.num_steps, (batch,), generator=generator, device=generator.device
                          if generator is not None else device)
        return self.schedule.sigmas.to(t.device)[t].float()
