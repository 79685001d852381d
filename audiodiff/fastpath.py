"""The inference fast path: the backbone in bf16, replayed from a CUDA graph per input shape.

A sampling call runs the backbone a few times on tensors of one shape, so its kernels can be recorded once and
replayed (``torch.cuda.CUDAGraph``): launching some 400 small kernels per step from Python costs more than the GPU
needs to run them. The wrapper keeps the backbone's call signature, so the ``Denoiser`` and every sampler use it
unchanged. Inputs are copied into the graph's static buffers; the conditioning tensor (the upsampled mel, the same
object for every step of a call) is cast and copied once per call. Outputs are returned as float32 copies.

On the CPU, or with gradients enabled, it simply calls the backbone in the chosen dtype.
See ``docs/performance.md`` for what each part buys.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn


def fused_kernel_fits(net: nn.Module) -> bool:
    """Whether ``kernels/diffwave_triton.py`` can run ``net``: a DiffWave whose channel count is a power of two
    >= 16, with Triton and a GPU present."""
    from audiodiff.kernels import diffwave_triton
    from audiodiff.models.diffwave import DiffWave

    if not isinstance(net, DiffWave) or not diffwave_triton.available():
        return False
    c = net.layers[0].dilated_conv.in_channels
    return c >= 16 and c & (c - 1) == 0


class _Graph:
    def __init__(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
        self.x, self.t = x.clone(), t.clone()
        self.cond = cond.clone() if cond is not None else None
        self.cond_src = None
        kwargs = {"cond": self.cond} if cond is not None else {}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up on a side stream, as torch.cuda.graphs advises
            self.first = net(self.x, self.t, **kwargs).clone()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = net(self.x, self.t, **kwargs)


class FastBackbone(nn.Module):
    """``net(x, t, cond=...)`` evaluated in ``dtype`` (a private copy of the weights), through CUDA graphs on a
    GPU when ``graphs`` is true. Keeps at most ``max_graphs`` shapes (least recently used goes first)."""

    def __init__(self, net: nn.Module, dtype: torch.dtype = torch.bfloat16, graphs: bool = True,
                 max_graphs: int = 4, kernel: bool = False):
        super().__init__()
        if kernel:  # one Triton kernel per residual layer (kernels/diffwave_triton.py); it casts its own inputs
            from audiodiff.kernels.diffwave_triton import FusedDiffWave
            self.net = FusedDiffWave(net, dtype)
        else:
            self.net = copy.deepcopy(net).to(dtype).eval().requires_grad_(False)
        self.kernel = kernel
        self.dtype, self.graphs, self.max_graphs = dtype, graphs, max_graphs
        self._cache: OrderedDict[tuple, _Graph] = OrderedDict()
        self._cond_src = self._cond_cast = None

    def _cast_cond(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        if cond is None:
            return None
        if cond is not self._cond_src:  # one cast per sampling call, not one per step
            self._cond_src, self._cond_cast = cond, cond.to(self.dtype)
        return self._cond_cast

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, **kwargs):
        cond_cast = cond if self.kernel else self._cast_cond(cond)
        x = x if self.kernel else x.to(self.dtype)
        use_graph = self.graphs and x.is_cuda and not kwargs and not torch.is_grad_enabled()
        if not use_graph:
            extra = {"cond": cond_cast} if cond is not None else {}
            return self.net(x, t, **extra, **kwargs).to(torch.float32, copy=True)
        key = (tuple(x.shape), tuple(t.shape), None if cond is None else tuple(cond.shape), x.device)
        graph = self._cache.get(key)
        if graph is None:
            graph = _Graph(self.net, x, t, cond_cast)
            graph.cond_src = cond_cast
            self._cache[key] = graph
            while len(self._cache) > self.max_graphs:
                self._cache.popitem(last=False)
            return graph.first.to(torch.float32, copy=True)
        self._cache.move_to_end(key)
        graph.x.copy_(x)
        graph.t.copy_(t)
        if cond is not None and graph.cond_src is not cond_cast:
            graph.cond.copy_(cond_cast)
            graph.cond_src = cond_cast
        graph.graph.replay()
        return graph.out.to(torch.float32, copy=True)  # the next replay overwrites graph.out
