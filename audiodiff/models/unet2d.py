"""A small 2-D U-Net for spectrogram images (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Appendix B;
with the refinements of Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", sec. 3-4).

Residual blocks (GroupNorm, SiLU, 3x3 convolution) receive the step embedding as a per-channel bias (DDPM); levels
are separated by stride-2 convolutions on the way down and nearest-neighbour upsampling plus a 3x3 convolution on
the way up; the middle block at the lowest resolution is residual / self-attention / residual, and the levels named
in ``attention_levels`` add self-attention after each of their blocks. Each level keeps one skip connection.
The residual branches' last convolution, the attention projection and the output convolution start at zero, so the
untrained network outputs 0 and each block starts as the identity (Nichol & Dhariwal 2021; Goyal et al. 2017).

The network maps ``(x_t [B, C, H, W], t [B], class_labels [B] or None) -> eps or v [B, C, H, W]`` and knows nothing
of the diffusion process. Any ``H, W`` works: the input is zero-padded on the bottom/right to a multiple of
``2 ** (levels - 1)`` and the output cropped back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from audiodiff.models.embeddings import ClassEmbedding, StepEmbedding


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # The largest group count <= groups that divides the channels: tiny test widths need not be multiples of 32.
    g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``h + f(h, emb)`` with ``f`` = GN, SiLU, conv, + Linear(emb), GN, SiLU, dropout, zero-initialised conv."""

    def __init__(self, cin: int, cout: int, embed_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(embed_dim, cout)
        self.norm2, self.conv2 = _norm(cout, groups), _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, cout, H, W]
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions, residual, with a zero-initialised output."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        # [B, heads, HW, C / heads] each
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class Level(nn.Module):
    """``blocks`` residual blocks at one resolution, each followed by self-attention when ``attention``."""

    def __init__(self, cin: int, cout: int, blocks: int, embed_dim: int, groups: int, dropout: float,
                 attention: bool, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, embed_dim, groups, dropout)
                                    for i in range(blocks))
        self.attns = nn.ModuleList(SelfAttention(cout, heads, groups) if attention else nn.Identity()
                                   for _ in range(blocks))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block, attn in zip(self.blocks, self.attns):
            x = attn(block(x, emb))
        return x


class UNet2D(nn.Module):
    """The U-Net backbone; ``num_classes > 0`` makes it class-conditional (label -1 is the null class).

    ``channel_mults[i] * channels`` is the width of level ``i`` (level 0 at full resolution); there are
    ``len(channel_mults) - 1`` downsamplings. ``blocks_per_level`` residual blocks per level on each side.
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, channel_mults=(1, 2, 2, 4),
                 blocks_per_level: int = 2, attention_levels=(), embed_dim: int = 256, num_classes: int = 0,
                 heads: int = 4, groups: int = 32, dropout: float = 0.0):
        super().__init__()
        mults = tuple(int(m) for m in channel_mults)
        if not mults or min(mults) < 1:
            raise ValueError(f"channel_mults must be positive integers, got {channel_mults!r}")
        bad = [lv for lv in attention_levels if not 0 <= lv < len(mults)]
        if bad:
            raise ValueError(f"attention_levels {bad} out of range for {len(mults)} levels (0..{len(mults) - 1})")
        self.in_channels, self.levels = in_channels, len(mults)
        widths = [channels * m for m in mults]
        self.step_embedding = StepEmbedding(embed_dim)
        self.class_embedding = ClassEmbedding(num_classes, embed_dim) if num_classes else None
        self.input_conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        args = dict(blocks=blocks_per_level, embed_dim=embed_dim, groups=groups, dropout=dropout, heads=heads)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = channels
        for i, w in enumerate(widths):
            self.down.append(Level(cin, w, attention=i in attention_levels, **args))
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            cin = w
        self.mid = nn.ModuleList([ResBlock(cin, cin, embed_dim, groups, dropout), SelfAttention(cin, heads, groups),
                                  ResBlock(cin, cin, embed_dim, groups, dropout)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            self.up.append(Level(cin + widths[i], widths[i], attention=i in attention_levels, **args))
            cin = widths[i]
            if i > 0:
                self.upsample.append(nn.Conv2d(cin, cin, 3, padding=1))
        self.out_norm = _norm(cin, groups)
        self.output_conv = _zero(nn.Conv2d(cin, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, H, W]``, ``t [B]`` (fractional steps allowed) -> ``[B, C, H, W]``."""
        H, W = x.shape[-2:]
        m = 2 ** (self.levels - 1)
        x = F.pad(x, (0, -W % m, 0, -H % m))  # [B, C, H', W'] with H', W' multiples of m
        emb = self.step_embedding(t)  # [B, E]
        if self.class_embedding is not None:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), -1, device=x.device, dtype=torch.long)
            emb = emb + self.class_embedding(class_labels)
        h = self.input_conv(x)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for j, level in enumerate(self.up):
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.upsample):
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.output_conv(F.silu(self.out_norm(h)))
        return out[..., :H, :W]
