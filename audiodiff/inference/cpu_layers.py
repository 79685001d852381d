"""The CPU fast path of a mel-conditioned DiffWave: the residual layers run a time tile at a time.

On the CPU a residual layer is one GEMM of ``[T, 3C + n_mels] x [3C + n_mels, 2C]`` (``models/diffwave.py``'s
channels-last form), the gated unit, a second GEMM and the residual and skip sums. The GEMMs are under half of the
time; the rest is elementwise work and the concatenation of the taps, each a pass over ``[T, 2C]`` or wider arrays
that for a chunk of 1,024 frames are hundreds of MB, so they run at memory speed. ``TiledDiffWave`` runs the same
arithmetic on tiles of ``tile`` samples (default 8,192: ~9 MB of taps, ~1 MB per residual array), so each tile's
intermediate arrays stay in the caches between one operation and the next: 25-35% less time per network call on
the 2-core AMD EPYC of ``docs/benchmarks.md``. A tile's rows of a GEMM are the same dot products as the whole
array's, so the result equals the eager network's to float32 rounding (bitwise where the BLAS picks the same
kernel for both shapes, as measured there).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

TILE = 8192  # samples per tile


class TiledDiffWave(nn.Module):
    """``net(x, t, cond=...)`` of a mel-conditioned ``DiffWave`` with its layers run tile by tile (module
    docstring); it reads the weights of ``net`` (no copy), so it follows them."""

    def __init__(self, net: nn.Module, tile: int = TILE):
        super().__init__()
        self.net, self.tile = net, tile

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, mel: torch.Tensor | None = None) -> torch.Tensor:
        net = self.net
        if cond is None:
            cond = net.upsample(mel)
        emb = net.embed(t, class_labels)  # [B, E]
        cond = cond.transpose(1, 2)  # [B, T, n_mels] (stored channels-last by the upsampler)
        h = F.relu(x.transpose(1, 2) * net.input_proj.weight[:, 0, 0] + net.input_proj.bias)  # [B, T, C]
        B, T, C = h.shape
        pad = max(layer.dilation for layer in net.layers)
        y = h.new_zeros(B, T + 2 * pad, C)  # h + step, zero-padded as the dilated convolution pads
        taps = h.new_empty(B, min(self.tile, T), 3 * C + cond.shape[-1])
        skip = torch.zeros_like(h)
        for layer in net.layers:
            d = layer.dilation
            torch.add(h, layer.step_proj(emb)[:, None], out=y[:, pad:pad + T])
            w, b = layer.fused_input_weight()
            w_out, b_out = layer.out_proj.weight[:, :, 0], layer.out_proj.bias
            out = torch.empty_like(h)
            for s in range(0, T, self.tile):
                e = min(T, s + self.tile)
                part = taps[:, :e - s]
                part[..., :C] = y[:, pad + s - d:pad + e - d]  # x[t - d], x[t], x[t + d], mel
                part[..., C:2 * C] = y[:, pad + s:pad + e]
                part[..., 2 * C:3 * C] = y[:, pad + s + d:pad + e + d]
                part[..., 3 * C:] = cond[:, s:e]
                gate, filt = F.linear(part, w, b).chunk(2, dim=-1)
                z = F.linear(torch.sigmoid(gate).mul_(torch.tanh(filt)), w_out, b_out)
                residual, skipped = z.chunk(2, dim=-1)
                torch.add(h[:, s:e], residual, out=out[:, s:e]).mul_(1 / math.sqrt(2))
                skip[:, s:e] += skipped
            h = out
        h = F.relu(F.linear(skip * (1 / math.sqrt(len(net.layers))), net.skip_proj.weight[:, :, 0],
                            net.skip_proj.bias))
        return F.linear(h, net.output_proj.weight[:, :, 0], net.output_proj.bias).transpose(1, 2)  # [B, 1, T]


def fits(net: nn.Module) -> bool:
    """Whether ``TiledDiffWave`` can run ``net``: a mel-conditioned DiffWave."""
    from audiodiff.models.diffwave import DiffWave

    return isinstance(net, DiffWave) and net.upsampler is not None and len(net.layers) > 0
