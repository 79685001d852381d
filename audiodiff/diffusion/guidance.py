"""Classifier-free guidance (Ho & Salimans 2022): a denoiser wrapper for sampling and label dropout for training.

Sampling (eq. 6): ``eps~ = (1 + w) eps(x, c) - w eps(x)``. We write it with the guidance scale ``s = 1 + w`` on the
denoiser output, ``D~ = D_u + s (D_c - D_u)``; since ``x0 = x - sigma eps`` is affine in ``eps`` with the same ``x``
and ``sigma`` in both terms, mixing ``x0`` estimates is exactly mixing ``eps`` (or ``v``) predictions. ``s = 1`` is the
conditional model, ``s = 0`` the unconditional one, ``s > 1`` pushes samples toward the condition.

Training (Alg. 1): the condition is replaced by the null token with probability ``p_uncond``, so one network
learns both. Class labels use ``NULL_LABEL = -1``, which the backbones' ``ClassEmbedding`` maps to its learned null
class.
"""

from __future__ import annotations

from typing import Callable

import torch

from audiodiff.diffusion.schedules import append_dims

Denoise = Callable[..., torch.Tensor]

NULL_LABEL = -1


def drop_labels(labels: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``NULL_LABEL`` with probability ``p`` (Ho & Salimans 2022, Alg. 1, line 3).

    ``generator`` must live on ``labels.device``; ``p = 0`` returns the labels unchanged, ``p = 1`` all null.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"label dropout probability must lie in [0, 1], got {p}")
    keep = torch.rand(labels.shape, generator=generator, device=labels.device) >= p
    return torch.where(keep, labels, torch.full_like(labels, NULL_LABEL))


def _null_kwargs(cond: dict, null_cond: dict, batch: int, device) -> dict:
    # The unconditional call's keyword arguments: cond with null_cond applied. A None value removes the key; a
    # scalar is broadcast to the conditional tensor's shape (or to [B] when cond lacks the key).
    out = dict(cond)
    for key, value in null_cond.items():
        if value is None:
            out.pop(key, None)
        elif torch.is_tensor(value) and value.ndim > 0:
            out[key] = value
        elif torch.is_tensor(cond.get(key)):
            out[key] = torch.as_tensor(value, dtype=cond[key].dtype, device=cond[key].device).expand_as(cond[key])
        else:
            out[key] = torch.full((batch,), value, device=device)
    return out


def _batchable(cond: dict, uncond: dict, batch: int) -> bool:
    # One call on [2B] works when both sides pass the same keys, each a per-example tensor of matching shape, or the
    # very same non-tensor object.
    if cond.keys() != uncond.keys():
        return False
    for key, a in cond.items():
        b = uncond[key]
        if a is b and not torch.is_tensor(a):
            continue
        if not (torch.is_tensor(a) and torch.is_tensor(b) and a.ndim > 0 and a.shape == b.shape
                and a.shape[0] == batch):
            return False
    return True


def guided(denoise: Denoise, scale: float | torch.Tensor, null_cond: dict, *, batched: bool = True) -> Denoise:
    """Wrap ``denoise(x, sigma, **cond)`` into ``D_u + scale (D_c - D_u)`` (classifier-free guidance).

    ``null_cond`` says how to make the unconditional call from the conditional keyword arguments, e.g.
    ``{"class_labels": NULL_LABEL}``; keys absent from it (a vocoder's ``mel``) are shared by both calls.
    ``scale`` is a number or a per-example tensor ``[B]``. When ``batched`` and the arguments allow it, both branches
    run as one network call on a ``[2B]`` batch; otherwise as two calls. ``scale == 1`` makes only the conditional
    call and ``scale == 0`` only the unconditional one, so both are exact.
    """

    def guided_denoise(x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        uncond = _null_kwargs(cond, null_cond, x.shape[0], x.device)
        if not torch.is_tensor(scale) and scale == 1:
            return denoise(x, sigma, **cond)
        if not torch.is_tensor(scale) and scale == 0:
            return denoise(x, sigma, **uncond)
        if batched and _batchable(cond, uncond, x.shape[0]):
            both = {k: torch.cat([v, uncond[k]]) if torch.is_tensor(v) else v for k, v in cond.items()}
            d_cond, d_uncond = denoise(torch.cat([x, x]), torch.cat([sigma, sigma]), **both).chunk(2)
        else:
            d_cond, d_uncond = denoise(x, sigma, **cond), denoise(x, sigma, **uncond)
        s = append_dims(scale.to(x.device), x.ndim) if torch.is_tensor(scale) else scale
        return d_uncond + s * (d_cond - d_uncond)

    return guided_denoise
