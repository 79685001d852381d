"""The inference fast path: the backbone in bf16 or as one fused Triton kernel per layer, and the whole sampling
loop replayed from a CUDA graph.

A sampling call runs the same few hundred kernels per step on tensors of one shape: the network, the sampler's
update and the position-indexed noise. ``SamplingGraphs`` records one whole call (mel upsampling, prior, every
step) once per input shape and noise-level plan and replays it, so no kernel is launched from Python; the seed,
the mel and the chunk offsets are device tensors copied into the graph's inputs. ``FastBackbone`` keeps the
backbone's call signature, so the ``Denoiser`` and every sampler use it unchanged. See ``docs/performance.md``
for what each part buys. ``Runtime`` owns all of it for one inference object: which path a call takes, and the
fast copy and graphs, rebuilt whenever the device or any synthesis option changes.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict

import torch
from torch import nn

from audiodiff.factory import build_denoiser
from audiodiff.inference import cpu_layers

log = logging.getLogger(__name__)


def fused_kernel_fits(net: nn.Module) -> bool:
    """Whether ``kernels/diffwave_triton.py`` can run ``net``: a DiffWave whose channel count is a power of two
    >= 16, with Triton and a GPU present."""
    from audiodiff.kernels import diffwave_triton
    from audiodiff.models.diffwave import DiffWave

    if not isinstance(net, DiffWave) or not diffwave_triton.available():
        return False
    c = net.residual_channels
    return c >= 16 and c & (c - 1) == 0


class SamplingGraphs:
    """CUDA graphs of a whole sampling call, one per input shape and noise-level plan, and of the refinement that
    follows it, one per shape (least recently used goes first beyond ``max_graphs``). ``fn(*tensors) -> tensor``
    must take and return device tensors only and launch no host-to-device copy; the graph's inputs are static
    copies refreshed before each replay. ``key[0]`` names the kind of call (a sampler, "refine"): when a capture
    of one kind fails, that call still returns its warm-up result and that kind runs uncaptured from then on,
    with one warning."""

    def __init__(self, max_graphs: int = 8):
        self.max_graphs = max_graphs
        self._cache: OrderedDict[tuple, tuple] = OrderedDict()
        self.uncaptured: set = set()  # kinds whose capture failed

    def __call__(self, key: tuple, fn, *inputs: torch.Tensor) -> torch.Tensor:
        if key[0] in self.uncaptured:
            return fn(*inputs)
        key = key + tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)
        if key in self._cache:
            self._cache.move_to_end(key)
            static, graph, out = self._cache[key]
            for dst, src in zip(static, inputs):
                dst.copy_(src)
            graph.replay()
            return out.clone()  # the next replay overwrites out
        static = [t.clone() for t in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up on a side stream, as torch.cuda.graphs advises; its result is
            first = fn(*static)          # this call's answer
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                out = fn(*static)
        except RuntimeError as err:  # e.g. a host sync inside fn: the answer is still the warm-up's
            # The failed capture leaves the default CUDA generator in capture mode, where every later random draw
            # in the process fails ("Offset increment outside graph capture"): give it a copy of its own state.
            gen = torch.cuda.default_generators[torch.cuda.current_device()]
            gen.graphsafe_set_state(gen.clone_state())
            log.warning("CUDA graph capture of %r failed (%s); running it without graphs from now on", key[0],
                        str(err)[:200])
            self.uncaptured.add(key[0])
            return first
        self._cache[key] = static, graph, out
        while len(self._cache) > self.max_graphs:
            self._cache.popitem(last=False)
        return first


class FastBackbone(nn.Module):
    """``net(x, t, cond=...)`` evaluated in ``dtype`` (a private copy of the weights), or with the fused Triton
    layer kernel when ``kernel`` is true; returns float32."""

    def __init__(self, net: nn.Module, dtype: torch.dtype = torch.bfloat16, kernel: bool = False):
        super().__init__()
        if kernel:  # one Triton kernel per residual layer (kernels/diffwave_triton.py); it casts its own inputs
            from audiodiff.kernels.diffwave_triton import FusedDiffWave
            self.net = FusedDiffWave(net, dtype)
        else:
            self.net = copy.deepcopy(net).to(dtype).eval().requires_grad_(False)
        self.kernel, self.dtype = kernel, dtype
        self._cond_src = self._cond_cast = None

    def _cast_cond(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        if cond is None:
            return None
        if cond is not self._cond_src:  # one cast per sampling call, not one per step
            self._cond_src, self._cond_cast = cond, cond.to(self.dtype)
        return self._cond_cast

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, **kwargs):
        if self.kernel:
            return self.net(x, t, cond=cond, **kwargs)
        extra = {"cond": self._cast_cond(cond)} if cond is not None else {}
        return self.net(x.to(self.dtype), t, **extra, **kwargs).to(torch.float32, copy=True)


class Runtime:
    """The network as sampling runs it: ``denoiser``, the fp32 eager reference, and the fast path built from the same
    weights on first use. ``runner(options)`` gives ``(denoiser, graphs)``: on the CPU at fp32 the network with its
    layers run in time tiles (``inference/cpu_layers.py``; the eager one with ``options.kernel`` off) and no
    graphs; otherwise a bf16 or fp32 copy of the weights (in bf16 on a GPU the fused Triton layer kernel when
    ``options.kernel`` is set and the kernel fits) and, on a GPU with ``options.graphs`` set, the ``SamplingGraphs``
    that replay whole sampling calls. The copy and its graphs are kept for one ``key``: the device and the whole
    options value, so a graph captured under one setting is never replayed under another."""

    def __init__(self, net: nn.Module, diffusion):
        self.net = net.eval().requires_grad_(False)
        self.diffusion = diffusion
        self.denoiser = build_denoiser(self.net, diffusion)  # fp32 eager: the reference path
        self._fast = None  # (key, denoiser, SamplingGraphs or None) of the fast path
        self._tiled = None  # the CPU's denoiser with time-tiled layers (inference/cpu_layers.py)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @staticmethod
    def key(device: torch.device, options) -> tuple:
        """What the fast path's copy and graphs depend on: every field of ``options``, by its value."""
        return device, options

    def runner(self, options) -> tuple:
        """``(denoiser, graphs or None)`` for sampling with ``options`` on the network's device."""
        device = self.device
        precision = options.precision_on(device.type)
        graphs = options.graphs and device.type == "cuda"
        if precision == "fp32" and not graphs:
            if device.type != "cuda" and options.kernel and cpu_layers.fits(self.net):
                if self._tiled is None:  # reads the network's weights: nothing to rebuild when options change
                    self._tiled = build_denoiser(cpu_layers.TiledDiffWave(self.net), self.diffusion)
                return self._tiled, None
            return self.denoiser, None
        key = self.key(device, options)
        if self._fast is None or self._fast[0] != key:
            kernel = options.kernel and precision == "bf16" and device.type == "cuda" and fused_kernel_fits(self.net)
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            fast = build_denoiser(FastBackbone(self.net, dtype, kernel=kernel), self.diffusion)
            self._fast = key, fast, SamplingGraphs() if graphs else None
        return self._fast[1], self._fast[2]

    def to(self, device: torch.device) -> None:
        self.net.to(device)
        self._fast = None
