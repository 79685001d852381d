"""DiffWave inference with one Triton kernel per residual layer (Kong et al. 2021, Fig. 2; ``docs/performance.md``).

The eager path (``ResidualLayer.forward``) builds, per layer, a ``[B, T, 3C + n_mels]`` tensor of the three shifted
taps and the mel, multiplies it by one ``[2C, 3C + n_mels]`` weight, gates, multiplies again and then updates the
residual stream and the skip sum: about 2 KB per sample per layer goes through memory. Here one program handles
one batch row and ``BLOCK_T`` time steps of one layer; it reads x, the mel and the skip sum, writes x and the skip
sum, and keeps everything in between on chip:

    h    = sum_k W_k x[t + (k - 1) d] + W_mel mel[t] + b + sum_k [t + (k - 1) d in 0..T) W_k s   # the dilated taps
    z    = sigmoid(h_gate) * tanh(h_filter)                                                   # the gated unit
    r, q = W_out z + b_out                                                                    # residual, skip
    x'   = (x + r) / sqrt(2);   skip += q
    eps  = W_o relu(W_s skip / sqrt(L) + b_s) + b_o                                           # last layer only

``s [B, C]`` is the layer's projection of the step embedding. The convolution pads x with zeros after adding s, so
a tap outside ``[0, T)`` contributes nothing, not ``W_k s``: the kernel adds the float32 vectors ``W_k s``
(computed in torch per call, tiny) only where the tap is inside, and multiplies the raw x tiles.

The first product is one ``[BLOCK_T, K] x [K, 2C]`` matrix product with ``K = 3C + n_mels`` (the mel padded to a
multiple of C), accumulated over ``K / C`` chunks in a loop that Triton software-pipelines: the next chunk's tile
loads while the tensor cores work on this one, so that loads and products overlap instead of waiting on each
other (``docs/performance.md``). Gate and filter are one accumulator
with interleaved columns (g0, f0, g1, f1, ...), as are the residual and skip halves of the output product, so that
splitting them is a register reshape.

Layout: activations channels-last, x ``[B, T, C]`` in ``dtype`` (bf16), the skip sum ``[B, T, C]`` in float16
(float32 when ``dtype`` is float32; each layer adds to it in float32 registers, and float16 keeps 3 more bits than
bf16), the mel ``[B, T, n_mels]`` in ``dtype``. Two x buffers are ping-ponged, because a tile reads its neighbours
at ``t - d`` and ``t + d`` while other programs write theirs.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # the package works without triton; only this module's kernel needs it
    triton = tl = None


def available() -> bool:
    """True when Triton imports and a CUDA device is present, i.e. ``FusedDiffWave`` can run on the GPU."""
    return triton is not None and torch.cuda.is_available()


if triton is not None:

    @triton.jit
    def _layer_kernel(x_in, x_out, skip, cond, bias, tap_step, w_in, w_out, b_out, skip_w, skip_b, out_w, out_b,
                      eps, T, dilation, n_mels, scale,
                      C: tl.constexpr, BLOCK_T: tl.constexpr, CHUNKS: tl.constexpr, STAGES: tl.constexpr,
                      FIRST: tl.constexpr, LAST: tl.constexpr, PRECISION: tl.constexpr):
        # x_in, x_out [B, T, C]; skip [B, T, C] f16 or f32; cond [B, T, n_mels]; bias [B, 2C] f32 (b + W_1 s);
        # tap_step [B, 2, 2C] f32 (W_0 s, W_2 s); w_in [CHUNKS * C, 2C] (taps 0-2, then the mel C rows at a time);
        # w_out [C, 2C]; b_out [2C] f32. Every 2C axis interleaves its two halves. The last layer also applies the
        # network's output head to the finished skip sum: skip_w [C(in), C] in the skip dtype, skip_b [C] f32,
        # out_w [C] f32, out_b [1] f32, and writes eps [B, T] f32.
        b = tl.program_id(1).to(tl.int64)
        t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        c = tl.arange(0, C)
        n2 = tl.arange(0, 2 * C)
        inside = t < T
        row = x_in + b * T * C
        acc = tl.zeros((BLOCK_T, 2 * C), tl.float32)
        for k in tl.range(0, CHUNKS, num_stages=STAGES):
            # Chunk k < 3 is tap k of x (rows t + (k - 1) d, zero outside [0, T)); chunk k >= 3 is mel channels
            # (k - 3) C ... (k - 2) C. Both pointers are formed and one is selected, so the loop body has no
            # branch and Triton can pipeline its loads.
            is_tap = k < 3
            tk = t + (k - 1) * dilation
            m = (k - 3) * C + c
            ok = tl.where(is_tap, ((tk >= 0) & (tk < T))[:, None] & (c >= 0)[None, :],
                          inside[:, None] & (m < n_mels)[None, :])
            src = tl.where(is_tap, row + tk[:, None] * C + c[None, :],
                           cond + b * T * n_mels + t[:, None] * n_mels + m[None, :])
            a = tl.load(src, mask=ok, other=0.0)
            acc = tl.dot(a, tl.load(w_in + (k * C + c)[:, None] * (2 * C) + n2[None, :]), acc,
                         input_precision=PRECISION)
        acc += tl.load(bias + b * 2 * C + n2)[None, :]
        acc += tl.where((t - dilation >= 0)[:, None], tl.load(tap_step + b * 4 * C + n2)[None, :], 0.0)
        acc += tl.where((t + dilation < T)[:, None], tl.load(tap_step + b * 4 * C + 2 * C + n2)[None, :], 0.0)
        gate, filt = tl.split(tl.reshape(acc, (BLOCK_T, C, 2)))
        z = (tl.sigmoid(gate) * (2.0 * tl.sigmoid(2.0 * filt) - 1.0)).to(w_out.dtype.element_ty)  # tanh via sigmoid
        o = tl.dot(z, tl.load(w_out + c[:, None] * (2 * C) + n2[None, :]), input_precision=PRECISION)
        r, q = tl.split(tl.reshape(o + tl.load(b_out + n2)[None, :], (BLOCK_T, C, 2)))
        offs = b * T * C + t[:, None] * C + c[None, :]
        if not FIRST:
            q += tl.load(skip + offs, mask=inside[:, None], other=0.0).to(tl.float32)
        if LAST:  # eps = W_o relu(W_s skip / sqrt(L) + b_s) + b_o: the finished skip sum never goes to memory
            u = tl.dot((q * scale).to(skip_w.dtype.element_ty), tl.load(skip_w + c[:, None] * C + c[None, :]),
                       input_precision=PRECISION)
            u = tl.maximum(u + tl.load(skip_b + c)[None, :], 0.0)
            e = tl.sum(u * tl.load(out_w + c)[None, :], axis=1) + tl.load(out_b)
            tl.store(eps + b * T + t, e, mask=inside)
        else:
            tl.store(skip + offs, q.to(skip.dtype.element_ty), mask=inside[:, None])
            x_c = tl.load(row + t[:, None] * C + c[None, :], mask=inside[:, None], other=0.0).to(tl.float32)
            tl.store(x_out + offs, ((x_c + r) * 0.7071067811865476).to(x_out.dtype.element_ty), mask=inside[:, None])

    _INTERPRETED = not isinstance(_layer_kernel, triton.runtime.JITFunction)  # TRITON_INTERPRET=1 at import


def launch_config(channels: int) -> tuple[int, int, int]:
    """``(BLOCK_T, num_warps, stages)``: 64-step tiles, 8 warps, 3 pipeline stages, the fastest choice of
    ``bench/kernel_check.py --sweep`` on an H100 (timings of the others in ``docs/performance.md``)."""
    return 64, 8, 3


def _interleave(w: torch.Tensor) -> torch.Tensor:
    """``[..., 2, C]`` (two halves) -> ``[..., 2C]`` with columns ``a0, b0, a1, b1, ...``."""
    return w.transpose(-1, -2).reshape(*w.shape[:-2], -1)


class FusedDiffWave(nn.Module):
    """``net(x, t, cond=...)`` of a ``DiffWave`` with each residual layer one Triton kernel (inference only).

    The layer weights are packed once, at construction, in ``dtype``; rebuild after changing ``net``'s weights.
    The embeddings, mel upsampler and input projection run from ``net`` itself; the last layer's kernel applies
    the output head (skip projection in float16, or float32 for a float32 kernel; the output projection in
    float32, since the output is eps, which a sampler multiplies by a large sigma).
    Move it with ``.to(device)``; the kernel dtype is the ``dtype`` argument, not ``.to(dtype)``."""

    def __init__(self, net: nn.Module, dtype: torch.dtype = torch.bfloat16, block_t: int | None = None,
                 num_warps: int | None = None, stages: int | None = None):
        super().__init__()
        if triton is None:
            raise ImportError("FusedDiffWave needs triton; install it (pip install triton) or use the eager net")
        if dtype not in (torch.bfloat16, torch.float16, torch.float32):
            raise ValueError(f"dtype {dtype} is not supported; use torch.bfloat16, torch.float16 or torch.float32")
        C, L = net.residual_channels, len(net.layers)
        if C < 16 or C & (C - 1):
            raise ValueError(f"residual_channels={C}: the kernel needs a power of two >= 16 (tl.dot's minimum)")
        self.net, self.dtype, self.channels = net, dtype, C
        # The skip sum is the largest stream (read and written by every layer): float16 halves it (about a quarter
        # of the kernel's traffic); a float32 kernel keeps it float32, as the exact reference for the tests.
        self.skip_dtype = torch.float32 if dtype == torch.float32 else torch.float16
        self.n_mels = net.n_mels  # 0: unconditional
        self.chunks = 3 + -(-self.n_mels // C)  # the taps, then the mel padded to whole chunks of C rows
        self.dilations = [layer.dilation for layer in net.layers]
        default = launch_config(C)
        self.block_t, self.num_warps, self.stages = block_t or default[0], num_warps or default[1], \
            stages or default[2]
        self._cond_src = self._cond_version = self._cond_cast = None
        with torch.no_grad():
            self._pack(net, C, L)

    def _pack(self, net, C: int, L: int) -> None:
        layers, f32 = net.layers, torch.float32

        def buf(name, value, dtype):
            self.register_buffer(name, value.to(dtype).contiguous(), persistent=False)

        # Conv weight [2C(out: gate, filter), C(in), 3(k)] -> [L, 3(k), C(in), 2(half), C(out)]
        taps = torch.stack([layer.dilated_conv.weight for layer in layers]).view(L, 2, C, C, 3).permute(0, 4, 3, 1, 2)
        rows = [_interleave(taps)]  # [L, 3, C, 2C]
        b = torch.stack([layer.dilated_conv.bias for layer in layers])  # [L, 2C]
        if self.n_mels:
            m = torch.stack([layer.cond_proj.weight[:, :, 0] for layer in layers])  # [L, 2C, n_mels]
            m = _interleave(m.view(L, 2, C, self.n_mels).permute(0, 3, 1, 2))  # [L, n_mels, 2C]
            rows.append(F.pad(m, (0, 0, 0, (self.chunks - 3) * C - self.n_mels)).view(L, -1, C, 2 * C))
            b = b + torch.stack([layer.cond_proj.bias for layer in layers])
        buf("w_in", torch.cat(rows, 1).view(L, self.chunks * C, 2 * C), self.dtype)
        buf("w_tap", taps, f32)  # for the per-call step terms W_k s
        buf("b_in", _interleave(b.view(L, 2, C)), f32)
        o = torch.stack([layer.out_proj.weight[:, :, 0] for layer in layers])  # [L, 2C(residual, skip), C(in)]
        buf("w_out", _interleave(o.view(L, 2, C, C).permute(0, 3, 1, 2)), self.dtype)  # [L, C(in), 2C]
        buf("b_out", _interleave(torch.stack([layer.out_proj.bias for layer in layers]).view(L, 2, C)), f32)
        # All layers' step projections as one [L * C, E] linear: one small GEMM instead of L.
        buf("step_w", torch.cat([layer.step_proj.weight for layer in layers]), f32)
        buf("step_b", torch.cat([layer.step_proj.bias for layer in layers]), f32)
        buf("in_w", net.input_proj.weight[:, 0, 0], f32)
        buf("in_b", net.input_proj.bias, f32)
        buf("skip_w", net.skip_proj.weight[:, :, 0].T, self.skip_dtype)  # [C(in), C(out)]
        buf("skip_b", net.skip_proj.bias, f32)
        buf("out_w", net.output_proj.weight[0, :, 0], f32)  # [C]
        buf("out_b", net.output_proj.bias, f32)  # [1]

    def _channels_last(self, cond: torch.Tensor) -> torch.Tensor:
        """``cond [B, n_mels, T]`` -> ``[B, T, n_mels]`` in ``dtype``, once per sampling call: a sampler passes the
        same object at every step. Under CUDA graph capture the cast is always recorded, so a graph whose static
        cond is refilled between replays sees the new values."""
        capturing = cond.is_cuda and torch.cuda.is_current_stream_capturing()
        if not capturing and cond is self._cond_src and cond._version == self._cond_version:
            return self._cond_cast
        B, M, T = cond.shape
        out = torch.empty(B, T, M, device=cond.device, dtype=self.dtype)
        out.copy_(cond.transpose(1, 2))
        self._cond_src, self._cond_version, self._cond_cast = cond, cond._version, out
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor, mel: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, 1, T]``, ``t [B]`` -> float32 ``[B, 1, T]``; give ``mel [B, n_mels, T/hop]`` or its ``cond``."""
        net, C, L = self.net, self.channels, len(self.dilations)
        if not x.is_cuda and not _INTERPRETED:
            raise RuntimeError("FusedDiffWave runs on CUDA tensors (move it with .to('cuda')); on the CPU set "
                               "TRITON_INTERPRET=1 before importing audiodiff.kernels.diffwave_triton")
        if self.n_mels and cond is None:
            if mel is None:
                raise ValueError("this DiffWave is mel-conditioned: pass mel= or cond=")
            cond = net.upsample(mel)
        B, _, T = x.shape
        emb = net.embed(t, class_labels)  # [B, E]
        s = F.linear(emb.float(), self.step_w, self.step_b).view(B, L, C).transpose(0, 1)  # [L, B, C]
        ws = torch.einsum("lbi,lkiho->lbkoh", s, self.w_tap).reshape(L, B, 3, 2 * C)  # W_k s, interleaved
        bias = (self.b_in[:, None] + ws[:, :, 1]).contiguous()  # the centre tap is inside wherever t is
        tap_step = ws[:, :, 0::2].contiguous()  # [L, B, 2, 2C]: the outer taps, added where inside
        h = F.relu(x.float().transpose(1, 2) * self.in_w + self.in_b).to(self.dtype).contiguous()  # [B, T, C]
        h_next = torch.empty_like(h)
        skip = torch.empty(B, T, C, device=x.device, dtype=self.skip_dtype)
        cond_cl = self._channels_last(cond) if self.n_mels else h  # any pointer will do without a mel
        eps = torch.empty(B, 1, T, device=x.device, dtype=torch.float32)
        grid = (triton.cdiv(T, self.block_t), B)
        precision = "ieee" if self.dtype == torch.float32 else "tf32"  # tf32 applies to fp32 inputs only
        for i, d in enumerate(self.dilations):
            _layer_kernel[grid](
                h, h_next, skip, cond_cl, bias[i], tap_step[i], self.w_in[i], self.w_out[i], self.b_out[i],
                self.skip_w, self.skip_b, self.out_w, self.out_b, eps, T, d, self.n_mels, 1 / math.sqrt(L),
                C=C, BLOCK_T=self.block_t, CHUNKS=self.chunks, STAGES=self.stages, FIRST=i == 0, LAST=i == L - 1,
                PRECISION=precision, num_warps=self.num_warps)
            h, h_next = h_next, h
        return eps
