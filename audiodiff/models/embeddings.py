"""Embeddings shared by the backbones: a continuous step embedding and a class embedding with a null token."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def sinusoidal(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[B]`` step indices -> ``[B, dim]`` sin/cos features (Vaswani et al. 2017; DiffWave, Appendix C)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class StepEmbedding(nn.Module):
    """Step index ``t [B]`` -> ``[B, dim]``: sinusoid then a two-layer SiLU MLP (DiffWave's diffusion embedding)."""

    def __init__(self, dim: int = 512, features: int = 128):
        super().__init__()
        self.features = features
        self.proj1 = nn.Linear(features, dim)
        self.proj2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # Fractional steps (fast sampling) lerp the features of the neighbouring integer steps, as the reference
        # DiffWave does with its embedding table: the network only ever sees features it was trained on.
        lo = t.float().floor()
        frac = (t.float() - lo)[:, None]
        x = torch.lerp(sinusoidal(lo, self.features), sinusoidal(lo + 1, self.features), frac)
        x = x.to(self.proj1.weight.dtype)
        return F.silu(self.proj2(F.silu(self.proj1(x))))


class ClassEmbedding(nn.Module):
    """Class labels ``[B]`` -> ``[B, dim]``; label ``num_classes`` (or -1) is the learned null token used by
    classifier-free guidance (Ho & Salimans 2022)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
        return self.table(labels)
