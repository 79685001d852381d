"""ONNX export of a vocoder's sampling: the backbone and the whole fixed-step sampling loop as one graph, for
onnxruntime or TensorRT, with the batch and the mel's length dynamic.

The graph maps ``mel [B, n_mels, F]`` and ``noise [K, B, 1, F * hop]`` to the raw waveform ``audio [B, F * hop]``
(clamped to [-1, 1]): ``noise[0]`` is the starting noise (standard normal; the graph scales it to the prior's
``N(0, 1 + sigma_max^2)``) and ``noise[k]`` the standard normal draw of the sampler's ``k``-th noise injection, so
``K`` is ``1 + draws`` of the sampler (``steps`` for ``fast``/``ddpm``, 1 for the deterministic ones), fixed at
export and stored in the model's metadata (``noise_draws``). Fed the vocoder's own position-indexed noise
(``vocoder_noise``), the graph gives what ``Vocoder(mel, seed=s, refine=False)`` gives for a mel that fits one
chunk: the torch layers compute it (the fused Triton kernel is a GPU kernel and has no ONNX form), in fp32.

The step indices of the fixed noise levels are computed at export (``schedule.t_from_sigma`` searches a table,
which ONNX has no operator for), so the loop unrolls into ``steps`` network calls with constants between them.
The energy prior (PriorGrad) is part of the graph; the envelope prior (a time-varying filter made with FFTs) and the
mel-consistency refinement (FFT iterations) are not exported: the first is refused with a message, the second is
left to the caller (the graph's output is the raw ``refine=False`` waveform). A whole mel is one batch here:
memory grows with its length (no chunking).
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiodiff import atomic
from audiodiff.diffusion import SAMPLERS, sigmas_for
from audiodiff.diffusion.denoiser import Denoiser
from audiodiff.diffusion.noise import hashed_normal
from audiodiff.errors import AudiodiffError

OPSET = 17


class _FixedLevels:
    """A schedule stand-in whose ``t_from_sigma`` returns the step index of each of a plan's noise levels,
    precomputed (the real one uses ``searchsorted``); everything else is the schedule's."""

    def __init__(self, schedule, sigmas: torch.Tensor):
        self._schedule = schedule
        # Keyed by the float32 level the samplers pass (``[B]`` fills of float32), valued as the schedule gives it.
        levels = sigmas.float().reshape(-1, 1)
        self._t = {float(s): float(schedule.t_from_sigma(s)[0]) for s in levels}

    def t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.full_like(sigma, self._t[float(sigma.reshape(-1)[0])])

    def __getattr__(self, name):
        return getattr(self._schedule, name)


class SamplingGraph(torch.nn.Module):
    """``(mel [B, n_mels, F], noise [K, B, 1, F * hop]) -> audio [B, F * hop]``: the fixed-step sampling of a
    ``Vocoder`` with given noise (module docstring), as a module that ``torch.onnx.export`` traces."""

    def __init__(self, voc, steps: int | None = None, sampler: str | None = None):
        super().__init__()
        if voc.diffusion_config.prior == "envelope":
            raise AudiodiffError("ONNX export: the envelope prior (diffusion.prior: envelope) filters the noise with "
                                 "FFTs, which this export does not express; export a model with prior none or energy")
        self.sampler = sampler or voc.sampler
        self.steps = steps or voc.steps
        self.sigmas = sigmas_for(self.sampler, self.steps, voc.denoiser.schedule, None, voc.tuned_schedules).cpu()
        self.net = voc.net
        self.hop = voc.hop_length
        self.denoiser = Denoiser(voc.net, _FixedLevels(voc.denoiser.schedule, self.sigmas),
                                 voc.denoiser.prediction, voc.denoiser.loss_type)
        self.prior = voc._prior
        self.mel_fn = voc._mel_fn
        self.draws = 1 + count_draws(self.sampler, self.sigmas)

    def forward(self, mel: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        drawn = iter(range(1, self.draws))

        def noise_sampler(x):
            return noise[next(drawn)]

        x = noise[0] * (1 + float(self.sigmas[0]) ** 2) ** 0.5  # diffusion.prior's scaling
        extra = {"cond": self.net.upsample(mel)}
        if self.prior is None:
            y = SAMPLERS[self.sampler](self.denoiser, x, self.sigmas, noise_sampler=noise_sampler, extra_args=extra)
        else:
            shaped = self.prior(mel)
            y = SAMPLERS[self.sampler](self.denoiser, x, self.sigmas, noise_sampler=noise_sampler,
                                       extra_args={**extra, "prior": shaped})
            y = shaped.apply(y)
        return y.clamp(-1, 1)[:, 0]


def count_draws(sampler: str, sigmas: torch.Tensor) -> int:
    """How many noise draws ``sampler`` makes on ``sigmas`` after its starting noise (run on a tiny input)."""
    count = [0]

    def noise_sampler(x):
        count[0] += 1
        return torch.zeros_like(x)

    SAMPLERS[sampler](lambda x, sigma, **_: x * 0, torch.zeros(1, 1, 1), sigmas, noise_sampler=noise_sampler)
    return count[0]


def vocoder_noise(draws: int, seed: int, frames: int, hop: int, batch: int = 1) -> torch.Tensor:
    """``[draws, batch, 1, frames * hop]``: the noise ``Vocoder`` draws for a mel of ``frames`` frames that fits
    one chunk (row ``b`` of the batch is noise row ``b``), so that the graph reproduces ``Vocoder(mel, seed=seed,
    refine=False)``. Any standard normal noise works as input: this one only matches the torch path."""
    return torch.stack([hashed_normal((batch, 1, frames * hop), seed, k) for k in range(1, draws + 1)])


def export_onnx(voc, path: str | Path, steps: int | None = None, sampler: str | None = None,
                opset: int = OPSET) -> Path:
    """Write ``voc``'s sampling (``steps`` of ``sampler``, default the vocoder's) as an ONNX graph to ``path``
    (module docstring: inputs ``mel`` and ``noise``, output ``audio``), atomically; returns ``path``."""
    import io
    import warnings

    try:
        import onnx  # noqa: F401  torch.onnx writes through it
    except ImportError:
        raise AudiodiffError("ONNX export needs the onnx package: pip install 'audiodiff[onnx]'") from None
    path = Path(path)
    atomic.check_writable(path, "ONNX model")
    graph = SamplingGraph(voc, steps, sampler).eval()
    frames = 8  # traced at this length; the axes are dynamic
    mel = torch.full((1, voc.n_mels, frames), -5.0, device=voc.device)
    noise = torch.zeros(graph.draws, 1, 1, frames * voc.hop_length, device=voc.device)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns of every Python float taken from a tensor: the noise levels and step indices, which are
        # meant to be constants of the graph. The TorchScript exporter (dynamo=False) warns that it is deprecated:
        # the torch.export-based one cannot take those floats (the samplers read the levels as Python numbers).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(graph, (mel, noise), buf, input_names=["mel", "noise"], output_names=["audio"],
                          dynamic_axes={"mel": {0: "batch", 2: "frames"}, "noise": {1: "batch", 3: "samples"},
                                        "audio": {0: "batch", 1: "samples"}},
                          opset_version=opset, dynamo=False)
    data = _with_metadata(buf.getvalue(), {
        "sample_rate": voc.sample_rate, "hop_length": voc.hop_length, "n_mels": voc.n_mels,
        "noise_draws": graph.draws, "sampler": graph.sampler, "steps": graph.steps,
        "prior": voc.diffusion_config.prior, "refinement": "not included: the raw (refine=False) waveform"})
    return atomic.write_bytes(path, data, "ONNX model")


def _with_metadata(model: bytes, values: dict) -> bytes:
    """``model`` (serialised ONNX) with ``values`` as its metadata_props."""
    import onnx

    proto = onnx.load_from_string(model)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    return proto.SerializeToString()
