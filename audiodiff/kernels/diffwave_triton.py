"""DiffWave inference with one Triton kernel per residual layer (Kong et al. 2021, Fig. 2; ``docs/performance.md``).

The eager path (``ResidualLayer.forward``) builds, per layer, a ``[B, T, 3C + n_mels]`` tensor of the three shifted
taps and the mel, multiplies it by one ``[2C, 3C + n_mels]`` weight, gates, multiplies again and then updates the
residual stream and the skip sum: about 2 KB per sample per layer goes through memory. Here one program handles
one batch row and ``BLOCK_T`` time steps of one layer; it reads x, the mel and the skip sum, writes x and the skip
sum, and keeps everything in between in registers:

    h    = sum_k W_k (x[t + (k - 1) d] + s) + W_mel mel[t] + b     # k = 0, 1, 2: the dilated taps
    z    = sigmoid(h[:C]) * tanh(h[C:])                            # the gated unit
    r, q = W_out z + b_out                                         # residual [C], skip [C]
    x'   = (x + r) / sqrt(2);   skip += q

``s [B, C]`` is the layer's projection of the step embedding (tiny, so computed in torch), and x is zero outside
``[0, T)``: the convolution's zero padding, applied after the step is added, so the padded taps are 0, not s.

Layout: activations channels-last, x ``[B, T, C]`` in ``dtype`` (bf16), the skip sum ``[B, T, C]`` in float16 (float32
when ``dtype`` is float32; each layer adds to it in float32 registers, and float16 keeps 3 more bits than bf16), the
mel ``[B, T, n_mels]`` in ``dtype``. Weights are transposed to ``[in, out]`` and split into the gate and filter (or
residual and skip) halves, so every product is one ``tl.dot`` of ``[BLOCK_T, in]`` by ``[in, C]`` accumulated in
float32; the mel's ``in`` is padded to a power of two with zero rows. Two x buffers are ping-ponged, because a tile
reads its neighbours at ``t - d`` and ``t + d`` while other programs write theirs.
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
    def _tap_dot(row, s, tk, T, w, acc_g, acc_f, c, C: tl.constexpr, PRECISION: tl.constexpr):
        # One dilated tap: rows x[tk] (+ step) times the tap's gate and filter weights [C, C] each.
        ok = (tk >= 0) & (tk < T)
        xk = tl.load(row + tk[:, None] * C + c[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
        xk = tl.where(ok[:, None], xk + s[None, :], 0.0).to(w.dtype.element_ty)  # zero padding after the step
        acc_g = tl.dot(xk, tl.load(w + c[:, None] * C + c[None, :]), acc_g, input_precision=PRECISION)
        acc_f = tl.dot(xk, tl.load(w + C * C + c[:, None] * C + c[None, :]), acc_f, input_precision=PRECISION)
        return acc_g, acc_f

    @triton.jit
    def _layer_kernel(x_in, x_out, skip, cond, step, w_tap, w_mel, b_in, w_out, b_out, T, dilation, n_mels,
                      C: tl.constexpr, M_PAD: tl.constexpr, BLOCK_T: tl.constexpr, HAS_COND: tl.constexpr,
                      FIRST: tl.constexpr, LAST: tl.constexpr, PRECISION: tl.constexpr):
        # x_in, x_out [B, T, C]; skip [B, T, C] f16 or f32; cond [B, T, n_mels]; step [B, C] f32;
        # w_tap [3, 2, C, C]; w_mel [2, M_PAD, C]; b_in [2, C] f32; w_out [2, C, C]; b_out [2, C] f32
        b = tl.program_id(1).to(tl.int64)
        t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        c = tl.arange(0, C)
        inside = t < T
        row = x_in + b * T * C
        s = tl.load(step + b * C + c)
        acc_g = tl.zeros((BLOCK_T, C), tl.float32)
        acc_f = tl.zeros((BLOCK_T, C), tl.float32)
        # The centre tap, kept unshifted (and without the step) for the residual connection.
        x_c = tl.load(row + t[:, None] * C + c[None, :], mask=inside[:, None], other=0.0).to(tl.float32)
        x1 = tl.where(inside[:, None], x_c + s[None, :], 0.0).to(w_tap.dtype.element_ty)
        acc_g = tl.dot(x1, tl.load(w_tap + 2 * C * C + c[:, None] * C + c[None, :]), acc_g, input_precision=PRECISION)
        acc_f = tl.dot(x1, tl.load(w_tap + 3 * C * C + c[:, None] * C + c[None, :]), acc_f, input_precision=PRECISION)
        acc_g, acc_f = _tap_dot(row, s, t - dilation, T, w_tap, acc_g, acc_f, c, C, PRECISION)
        acc_g, acc_f = _tap_dot(row, s, t + dilation, T, w_tap + 4 * C * C, acc_g, acc_f, c, C, PRECISION)
        if HAS_COND:
            m = tl.arange(0, M_PAD)
            mel = tl.load(cond + b * T * n_mels + t[:, None] * n_mels + m[None, :],
                          mask=inside[:, None] & (m[None, :] < n_mels), other=0.0)
            acc_g = tl.dot(mel, tl.load(w_mel + m[:, None] * C + c[None, :]), acc_g, input_precision=PRECISION)
            acc_f = tl.dot(mel, tl.load(w_mel + M_PAD * C + m[:, None] * C + c[None, :]), acc_f,
                           input_precision=PRECISION)
        acc_g += tl.load(b_in + c)[None, :]
        acc_f += tl.load(b_in + C + c)[None, :]
        z = tl.sigmoid(acc_g) * (2.0 * tl.sigmoid(2.0 * acc_f) - 1.0)  # sigmoid(gate) * tanh(filter)
        z = z.to(w_out.dtype.element_ty)
        offs = b * T * C + t[:, None] * C + c[None, :]
        q = tl.dot(z, tl.load(w_out + C * C + c[:, None] * C + c[None, :]), input_precision=PRECISION)
        q += tl.load(b_out + C + c)[None, :]
        if FIRST:
            tl.store(skip + offs, q.to(skip.dtype.element_ty), mask=inside[:, None])
        else:
            old = tl.load(skip + offs, mask=inside[:, None], other=0.0).to(tl.float32)
            tl.store(skip + offs, (old + q).to(skip.dtype.element_ty), mask=inside[:, None])
        if not LAST:  # the last layer's residual output is never read
            r = tl.dot(z, tl.load(w_out + c[:, None] * C + c[None, :]), input_precision=PRECISION)
            r += tl.load(b_out + c)[None, :]
            tl.store(x_out + offs, ((x_c + r) * 0.7071067811865476).to(x_out.dtype.element_ty), mask=inside[:, None])

    _INTERPRETED = not isinstance(_layer_kernel, triton.runtime.JITFunction)  # TRITON_INTERPRET=1 at import


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def launch_config(channels: int) -> tuple[int, int]:
    """``(BLOCK_T, num_warps)``. Measured on an H100 (``bench/kernel_check.py --sweep``, 10 s clip, graph replay):
    C = 64 takes 4.0 ms per forward at (64, 4) against 5.1-7.0 ms for the other tiles of 32-128 steps and 2-8
    warps; C = 128 takes 12.0 ms at (64, 4) and 13.5 at (32, 4). Larger tiles, or fewer warps, leave the two
    float32 ``[BLOCK_T, C]`` accumulators too few registers: (128, 2) spills and runs 25x slower."""
    return 64, 4


class FusedDiffWave(nn.Module):
    """``net(x, t, cond=...)`` of a ``DiffWave`` with each residual layer one Triton kernel (inference only).

    The layer weights are packed once, at construction, in ``dtype``; rebuild after changing ``net``'s weights.
    The embeddings, mel upsampler and input projection run from ``net`` itself; the skip and output projections
    run in float32 (the output is eps, which a sampler multiplies by a large sigma).
    Move it with ``.to(device)``; the kernel dtype is the ``dtype`` argument, not ``.to(dtype)``."""

    def __init__(self, net: nn.Module, dtype: torch.dtype = torch.bfloat16, block_t: int | None = None,
                 num_warps: int | None = None):
        super().__init__()
        if triton is None:
            raise ImportError("FusedDiffWave needs triton; install it (pip install triton) or use the eager net")
        if dtype not in (torch.bfloat16, torch.float16, torch.float32):
            raise ValueError(f"dtype {dtype} is not supported; use torch.bfloat16, torch.float16 or torch.float32")
        layers = net.layers
        C, L = layers[0].dilated_conv.in_channels, len(layers)
        if C < 16 or C & (C - 1):
            raise ValueError(f"residual_channels={C}: the kernel needs a power of two >= 16 (tl.dot's minimum)")
        self.net, self.dtype, self.channels = net, dtype, C
        # The skip sum is the largest stream (read and written by every layer): float16 halves it (about a quarter
        # of the kernel's traffic); a float32 kernel keeps it float32, as the exact reference for the tests.
        self.skip_dtype = torch.float32 if dtype == torch.float32 else torch.float16
        self.n_mels = net.n_mels if layers[0].cond_proj is not None else 0
        self.m_pad = max(16, _pow2(self.n_mels))
        self.dilations = [layer.dilation for layer in layers]
        default_block, default_warps = launch_config(C)
        self.block_t, self.num_warps = block_t or default_block, num_warps or default_warps
        self._cond_src = self._cond_version = self._cond_cast = None
        with torch.no_grad():
            self._pack(net, C, L)

    def _pack(self, net, C: int, L: int) -> None:
        layers, f32 = net.layers, torch.float32

        def buf(name, value, dtype):
            self.register_buffer(name, value.to(dtype).contiguous(), persistent=False)

        # Conv weight [2C(out: gate, filter), C(in), 3(k)] -> [L, 3(k), 2(half), C(in), C(out)]
        w = torch.stack([layer.dilated_conv.weight for layer in layers])
        buf("w_tap", w.view(L, 2, C, C, 3).permute(0, 4, 1, 3, 2), self.dtype)
        b = torch.stack([layer.dilated_conv.bias for layer in layers])  # [L, 2C]
        if self.n_mels:
            m = torch.stack([layer.cond_proj.weight[:, :, 0] for layer in layers])  # [L, 2C, n_mels]
            m = F.pad(m.view(L, 2, C, self.n_mels).transpose(2, 3), (0, 0, 0, self.m_pad - self.n_mels))
            buf("w_mel", m, self.dtype)  # [L, 2, M_PAD, C], zero rows beyond n_mels
            b = b + torch.stack([layer.cond_proj.bias for layer in layers])
        else:
            buf("w_mel", w.new_zeros(L, 2, self.m_pad, C), self.dtype)  # never read (HAS_COND off)
        buf("b_in", b.view(L, 2, C), f32)
        o = torch.stack([layer.out_proj.weight[:, :, 0] for layer in layers])  # [L, 2C(residual, skip), C]
        buf("w_out", o.view(L, 2, C, C).transpose(2, 3), self.dtype)  # [L, 2, C(in), C(out)]
        buf("b_out", torch.stack([layer.out_proj.bias for layer in layers]).view(L, 2, C), f32)
        # All layers' step projections as one [L * C, E] linear: one small GEMM instead of L.
        buf("step_w", torch.cat([layer.step_proj.weight for layer in layers]), f32)
        buf("step_b", torch.cat([layer.step_proj.bias for layer in layers]), f32)
        buf("in_w", net.input_proj.weight[:, 0, 0], f32)
        buf("in_b", net.input_proj.bias, f32)
        buf("skip_w", net.skip_proj.weight[:, :, 0], f32)
        buf("skip_b", net.skip_proj.bias, f32)
        buf("out_w", net.output_proj.weight[:, :, 0], f32)
        buf("out_b", net.output_proj.bias, f32)

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
        steps = F.linear(emb.float(), self.step_w, self.step_b).view(B, L, C).transpose(0, 1).contiguous()  # [L,B,C]
        h = F.relu(x.float().transpose(1, 2) * self.in_w + self.in_b).to(self.dtype).contiguous()  # [B, T, C]
        h_next = torch.empty_like(h)
        skip = torch.empty(B, T, C, device=x.device, dtype=self.skip_dtype)
        cond_cl = self._channels_last(cond) if self.n_mels else h  # any pointer will do when HAS_COND is off
        grid = (triton.cdiv(T, self.block_t), B)
        precision = "ieee" if self.dtype == torch.float32 else "tf32"  # tf32 applies to fp32 inputs only
        for i, d in enumerate(self.dilations):
            _layer_kernel[grid](
                h, h_next, skip, cond_cl, steps[i], self.w_tap[i], self.w_mel[i], self.b_in[i], self.w_out[i],
                self.b_out[i], T, d, self.n_mels, C=C, M_PAD=self.m_pad, BLOCK_T=self.block_t,
                HAS_COND=bool(self.n_mels), FIRST=i == 0, LAST=i == L - 1, PRECISION=precision,
                num_warps=self.num_warps)
            h, h_next = h_next, h
        out = F.relu(F.linear(skip.float() * (1 / math.sqrt(L)), self.skip_w, self.skip_b))
        return F.linear(out, self.out_w, self.out_b).transpose(1, 2)  # [B, 1, T] float32
