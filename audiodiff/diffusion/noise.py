"""Counter-based Gaussian noise: a pure function of (seed, draw, row, position).

Chunked synthesis of a long signal must give every sample the same noise whichever chunk computes it, and the
noise must be cheap to make on the GPU inside a captured graph. A hash of the sample's coordinates does both:
splitmix64 (Steele et al. 2014) on int64 with wrapping arithmetic, 24-bit uniforms, Box-Muller.
"""

from __future__ import annotations

import torch

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64
_M1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_M2 = -7723592293110705685  # 0x94D049BB133111EB


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    return (z >> k) & ((1 << (64 - k)) - 1)  # logical shift on int64


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on int64 tensors (wrapping multiply)."""
    z = x + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def hashed_normal(shape, seed: int, draw: int, offsets=None, rows=None, device=None) -> torch.Tensor:
    """Standard normal noise of ``shape [..., T]``. With ``R`` the flattened leading dimensions, element
    ``(r, t)`` depends only on ``(seed, draw, rows[r], offsets[r] + t)``; ``rows`` defaults to ``0..R-1`` and
    ``offsets`` to zeros (ints or ``[R]`` tensors). ``seed`` is an int or a 0-d int64 tensor on ``device``."""
    n_rows = 1
    for n in shape[:-1]:
        n_rows *= n
    rows = torch.arange(n_rows, device=device) if rows is None else torch.as_tensor(rows, device=device)
    offsets = torch.zeros(n_rows, dtype=torch.int64, device=device) if offsets is None \
        else torch.as_tensor(offsets, device=device).expand(n_rows)
    pos = offsets.to(torch.int64)[:, None] + torch.arange(shape[-1], device=device, dtype=torch.int64)  # [R, T]
    seed = torch.as_tensor(seed, dtype=torch.int64, device=device)  # a device tensor passes through (CUDA graphs)
    base = splitmix64(seed * 65_537 + draw)
    key = splitmix64(base + rows.to(torch.int64)[:, None] * 0x5851F42D)  # [R, 1]
    z = splitmix64(key + pos * 2)
    w = splitmix64(key + pos * 2 + 1)
    u1 = (_shr(z, 40).float() + 0.5) * 2.0**-24
    u2 = _shr(w, 40).float() * 2.0**-24
    out = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)
    return out.reshape(shape)


def positional_noise(seed: int, offsets=None, rows=None):
    """A noise sampler for the samplers: call ``k`` returns draw ``k`` of position-indexed noise shaped like x."""
    state = {"draw": 0}

    def sample(x: torch.Tensor) -> torch.Tensor:
        state["draw"] += 1
        return hashed_normal(x.shape, seed, state["draw"], offsets, rows, device=x.device).to(x.dtype)

    return sample
