"""DiffWave (Kong et al. 2021, "DiffWave: A Versatile Diffusion Model for Audio Synthesis", Fig. 2).

A stack of residual layers with dilated 3-tap convolutions (dilation ``2 ** (i % cycle)``), gated tanh/sigmoid
units, a per-layer projection of the step embedding, a per-layer 1x1 projection of the upsampled mel, and skip
connections summed and scaled by ``1 / sqrt(layers)``. BASE: 30 layers, 64 channels, cycle 10; LARGE: 128 channels.

Unlike the reference implementation, whose mel upsampler is hard-wired to hop 256, the upsampler here factors any
hop size into two transposed-convolution stages (e.g. 256 = 16 x 16, 300 = 15 x 20, 200 = 10 x 20).
The network maps ``(x_t [B, 1, T], t [B], mel [B, n_mels, T / hop]) -> eps or v [B, 1, T]``; it knows nothing
of the diffusion process. Pass ``cond=model.upsample(mel)`` to reuse the upsampled mel across sampling steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from audiodiff.models.embeddings import ClassEmbedding, StepEmbedding


def split_hop(hop: int) -> tuple[int, int]:
    """Two factors of ``hop`` whose product is ``hop``, as close to sqrt(hop) as possible."""
    best = 1
    for f in range(1, int(math.isqrt(hop)) + 1):
        if hop % f == 0:
            best = f
    return best, hop // best


class MelUpsampler(nn.Module):
    """``[B, n_mels, F] -> [B, n_mels, F * hop]`` with two transposed 2-D convolutions (stride f1, then f2).

    The parameters are ``nn.ConvTranspose2d``'s (so checkpoints keep their layout), but a stage is computed as
    what it is: each output sample is the sum of two kernel columns times two neighbouring input frames, over
    three mel bands, because cuDNN's one-channel transposed convolution is slow on a GPU and these products and
    shifted additions are not (``docs/performance.md``)."""

    def __init__(self, hop_length: int):
        super().__init__()
        self.hop_length = hop_length
        self.stages = nn.ModuleList()
        for f in split_hop(hop_length):
            if f == 1:
                continue
            # Output length (F - 1) * f - 2 * (f // 2) + k = F * f  with  k = f + 2 * (f // 2).
            self.stages.append(nn.ConvTranspose2d(1, 1, (3, f + 2 * (f // 2)), stride=(1, f), padding=(1, f // 2)))

    @staticmethod
    def _stage(x: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
        """``conv(x[:, None])[:, 0]`` for ``x [B, M, F]``: ``[B, M, F * f]``."""
        f, pad = conv.stride[1], conv.padding[1]
        w = conv.weight[0, 0]  # [3, k], k = 2f (even f) or 2f - 1 (odd f)
        w = F.pad(w, (0, 2 * f - w.shape[1]))  # [3, 2f]
        M = x.shape[1]
        rows = F.pad(x, (0, 0, 1, 1))  # band y takes rows y + 1, y, y - 1 with kernel rows 0, 1, 2
        taps = torch.stack([rows[:, 2 - i:2 - i + M] for i in range(3)], -1)  # [B, M, F, 3]
        # Input frame j adds (taps @ w[:, :f])[j] at samples j*f - pad + [0, f) and (taps @ w[:, f:])[j] one frame
        # later; the two halves are made one at a time, so memory peaks at twice the output, not three times.
        out = F.pad(taps @ w[:, :f], (0, 0, 0, 1))  # [B, M, F + 1, f]
        out[..., 1:, :] += taps @ w[:, f:]
        out = out.flatten(2)[..., pad:pad + x.shape[-1] * f]
        return out + conv.bias

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            # Not compiled: inside a compiled training step Inductor fuses the upsampler into every layer's
            # concatenation and recomputes it once per layer (docs/performance.md); run eagerly it is computed once.
            # (Disabled here, not by a decorator, which would import torch._dynamo, slow to import, with this
            # module.)
            return torch.compiler.disable(self._upsample)(mel)
        return self._upsample(mel)

    def _upsample(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel
        for conv in self.stages:
            x = F.leaky_relu(self._stage(x, conv), 0.4)
        # Stored channels-last (the residual layers read [B, T, n_mels]); the shape stays [B, n_mels, T].
        return x.transpose(1, 2).contiguous().transpose(1, 2)


class ResidualLayer(nn.Module):
    """One gated residual layer. The parameters are DiffWave's convolutions (so checkpoints keep their layout); the
    computation runs channels-last, ``[B, T, C]``: the 3-tap dilated convolution is three time-shifted views of
    one padded input, concatenated with the mel and multiplied by one fused ``[2C, 3C + n_mels]`` weight. That is
    a single large GEMM per layer instead of a dilated convolution plus a 1x1 convolution (see
    ``docs/performance.md``); the arithmetic is the same, so outputs agree with ``F.conv1d`` to rounding."""

    def __init__(self, channels: int, dilation: int, embed_dim: int, n_mels: int | None):
        super().__init__()
        self.dilation = dilation
        self.dilated_conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.step_proj = nn.Linear(embed_dim, channels)
        self.cond_proj = nn.Conv1d(n_mels, 2 * channels, 1) if n_mels else None
        self.out_proj = nn.Conv1d(channels, 2 * channels, 1)

    def fused_input_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``([2C, 3C + n_mels], [2C])``: the three conv taps and the mel projection side by side."""
        w, b = self.dilated_conv.weight, self.dilated_conv.bias  # [2C, C, 3]
        parts = [w[:, :, 0], w[:, :, 1], w[:, :, 2]]
        if self.cond_proj is not None:
            parts.append(self.cond_proj.weight[:, :, 0])
            b = b + self.cond_proj.bias
        return torch.cat(parts, 1), b

    def forward(self, x, step, cond):
        # x [B, T, C]; step [B, C] (this layer's projection of the step embedding); cond [B, T, n_mels] or None
        T, d = x.shape[1], self.dilation
        y = F.pad(x + step[:, None], (0, 0, d, d))  # zero padding, as the convolution's
        taps = [y[:, :T], y[:, d:d + T], y[:, 2 * d:]]  # x[t - d], x[t], x[t + d]
        w, b = self.fused_input_weight()
        h = F.linear(torch.cat(taps + ([cond] if cond is not None else []), -1), w, b)  # [B, T, 2C]
        gate, filt = h.chunk(2, dim=-1)
        h = F.linear(torch.sigmoid(gate) * torch.tanh(filt), self.out_proj.weight[:, :, 0], self.out_proj.bias)
        residual, skip = h.chunk(2, dim=-1)
        return (x + residual) * (1 / math.sqrt(2)), skip

    def forward_conv(self, x, step, cond):
        """The same layer channels-first, as DiffWave's convolutions (x [B, C, T]; cond [B, n_mels, T] or None):
        eager training uses it, because cuDNN's backward beats the concatenation's (docs/performance.md)."""
        y = self.dilated_conv(x + step.unsqueeze(-1))  # [B, 2C, T]
        if self.cond_proj is not None:
            y = y + self.cond_proj(cond)
        gate, filt = y.chunk(2, dim=1)
        y = self.out_proj(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = y.chunk(2, dim=1)
        return (x + residual) * (1 / math.sqrt(2)), skip


class DiffWave(nn.Module):
    """The DiffWave backbone; ``n_mels=0`` makes it unconditional, ``num_classes > 0`` class-conditional."""

    def __init__(self, n_mels: int = 80, hop_length: int = 256, residual_layers: int = 30,
                 residual_channels: int = 64, dilation_cycle: int = 10, embed_dim: int = 512,
                 num_classes: int = 0, mel_shift: float = 0.0, mel_scale: float = 1.0, init: str = "torch"):
        super().__init__()
        # The mel is read as (mel + mel_shift) * mel_scale: an affine map the first layer could learn, but whose
        # scale sets how fast it does (a log-mel centred near -5 with a span of 11 feeds the gates large offsets).
        self.mel_shift, self.mel_scale = mel_shift, mel_scale
        # What a kernel built from this network needs (kernels/diffwave_triton.py, fastpath.fused_kernel_fits)
        self.n_mels, self.hop_length, self.residual_channels = n_mels, hop_length, residual_channels
        self.input_proj = nn.Conv1d(1, residual_channels, 1)
        self.step_embedding = StepEmbedding(embed_dim)
        self.class_embedding = ClassEmbedding(num_classes, embed_dim) if num_classes else None
        self.upsampler = MelUpsampler(hop_length) if n_mels else None
        self.layers = nn.ModuleList(
            ResidualLayer(residual_channels, 2 ** (i % dilation_cycle), embed_dim, n_mels or None)
            for i in range(residual_layers)
        )
        self.skip_proj = nn.Conv1d(residual_channels, residual_channels, 1)
        self.output_proj = nn.Conv1d(residual_channels, 1, 1)
        if init == "kaiming":  # the reference DiffWave's He-normal convolutions (torch's default is ~2.4x smaller)
            for m in self.modules():
                if isinstance(m, nn.Conv1d):
                    nn.init.kaiming_normal_(m.weight)
        elif init != "torch":
            raise ValueError(f"unknown init {init!r}; expected 'torch' or 'kaiming'")
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def upsample(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, F] -> [B, n_mels, F * hop]``: the per-call conditioning, reusable across steps."""
        if self.mel_shift != 0.0 or self.mel_scale != 1.0:
            mel = (mel + self.mel_shift) * self.mel_scale
        return self.upsampler(mel)

    def embed(self, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, E]``: the step embedding, plus the class embedding (the null class when no labels are given)."""
        emb = self.step_embedding(t)
        if self.class_embedding is not None:
            if class_labels is None:
                class_labels = torch.full((t.shape[0],), -1, device=t.device, dtype=torch.long)
            emb = emb + self.class_embedding(class_labels)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, mel: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, 1, T]``, ``t [B]`` -> ``[B, 1, T]``; give ``mel [B, n_mels, T/hop]`` or its ``cond``."""
        if self.upsampler is not None and cond is None:
            if mel is None:
                raise ValueError("this DiffWave is mel-conditioned: pass mel= or cond=")
            cond = self.upsample(mel)
        emb = self.embed(t, class_labels)  # [B, E]
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return self._forward_conv(x, emb, cond)  # eager training: the convolutions' backward is faster
        cond = cond.transpose(1, 2) if cond is not None else None  # [B, T, n_mels]
        h = F.relu(x.transpose(1, 2) * self.input_proj.weight[:, 0, 0] + self.input_proj.bias)  # [B, T, C]
        skip = 0
        for layer in self.layers:
            h, s = layer(h, layer.step_proj(emb), cond)
            skip = skip + s
        h = F.relu(F.linear(skip * (1 / math.sqrt(len(self.layers))), self.skip_proj.weight[:, :, 0],
                            self.skip_proj.bias))
        return F.linear(h, self.output_proj.weight[:, :, 0], self.output_proj.bias).transpose(1, 2)  # [B, 1, T]

    def _forward_conv(self, x, emb, cond):
        h = F.relu(self.input_proj(x))  # [B, C, T]
        skip = 0
        for layer in self.layers:
            h, s = layer.forward_conv(h, layer.step_proj(emb), cond)
            skip = skip + s
        h = F.relu(self.skip_proj(skip * (1 / math.sqrt(len(self.layers)))))
        return self.output_proj(h)
