"""``Vocoder``: mel-spectrogram in, waveform out. The object a TTS pipeline imports.

    voc = Vocoder.from_pretrained()            # the bundled speech vocoder, or from_pretrained("my-export/")
    wav = voc(mel)                              # mel [n_mels, frames] or [B, n_mels, frames], numpy or torch

An exported model is a directory with ``config.json`` (mel, model and diffusion settings, tuned schedules) and
``model.safetensors`` (EMA weights); nothing is unpickled. Long mels are synthesised in overlapping chunks with
linear cross-fades; the noise of every sample is a function of its position (``diffusion/noise.py``), so chunked
and whole synthesis agree away from chunk edges and memory stays bounded by the chunk size times ``max_batch`` (the
chunks run at once: 16 on a GPU, 2 on the CPU, where each 1024-frame chunk of the bundled model holds about 0.8 GiB;
``docs/performance.md``). A mel whose values do not fit the model's convention (``audio/mel_range.py``) is refused
unless ``check_mel_range=False``, and so is audio that comes out non-finite.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

from audiodiff import artifacts
from audiodiff.audio.mel import MelConfig, MelSpectrogram
from audiodiff.audio.mel_range import check_mel_range, mel_range
from audiodiff.audio.prior import MelPrior
from audiodiff.audio.refine import ITERATIONS as REFINE_ITERATIONS
from audiodiff.audio.refine import MOMENTUM as REFINE_MOMENTUM
from audiodiff.audio.refine import refine as refine_to_mel
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.diffusion import SAMPLERS, prior, sigmas_for
from audiodiff.diffusion.noise import positional_noise
from audiodiff.devices import resolve_device
from audiodiff.errors import AudiodiffError, check_count, check_options, check_seed
from audiodiff.factory import build_denoiser
from audiodiff.fastpath import FastBackbone, SamplingGraphs, fused_kernel_fits

PRETRAINED = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = PRETRAINED / "speech-22k"
FORMAT = "audiodiff-vocoder"
PRECISIONS = ("auto", "fp32", "bf16")
MAX_BATCH = {"cuda": 16, "cpu": 2}  # chunks synthesised at once when max_batch is None (other devices: the CPU's)


def check_mel(mel, n_mels: int) -> tuple[torch.Tensor, bool]:
    """Validate a mel and return ``([B, n_mels, F] float32 tensor, was_batched)``; errors say what to fix."""
    if isinstance(mel, np.ndarray):
        if not (np.issubdtype(mel.dtype, np.floating)):
            raise AudiodiffError(f"mel has dtype {mel.dtype}; expected float log-mel values "
                                 f"(convert with mel.astype(np.float32))")
        mel = torch.from_numpy(np.ascontiguousarray(mel, dtype=mel.dtype.newbyteorder("=")))  # big-endian too
    elif not isinstance(mel, torch.Tensor):
        raise AudiodiffError(f"mel must be a numpy array or torch tensor, got {type(mel).__name__}")
    if mel.is_meta:
        raise AudiodiffError(f"mel is a meta tensor {tuple(mel.shape)}, which holds no values; pass a tensor with data")
    if not mel.is_floating_point():
        raise AudiodiffError(f"mel has dtype {mel.dtype}; expected float log-mel values (convert with .float())")
    if mel.ndim not in (2, 3):
        raise AudiodiffError(f"mel has {mel.ndim} dimensions {tuple(mel.shape)}; expected [{n_mels}, frames] "
                             f"or [batch, {n_mels}, frames]")
    batched = mel.ndim == 3
    mel = mel if batched else mel.unsqueeze(0)
    if mel.shape[1] != n_mels:
        if mel.shape[2] == n_mels:
            if batched:
                raise AudiodiffError(f"mel looks transposed: shape {tuple(mel.shape)} is [batch, frames, bands]; "
                                     f"expected [batch, {n_mels}, frames]; pass mel.transpose(1, 2) "
                                     f"(numpy: mel.transpose(0, 2, 1))")
            raise AudiodiffError(f"mel looks transposed: shape {tuple(mel.shape[1:])} is [frames, bands]; "
                                 f"expected [{n_mels}, frames]; pass mel.T")
        raise AudiodiffError(f"mel has {mel.shape[1]} bands; this model expects {n_mels} "
                             f"(shape [{n_mels}, frames]); make the mel with the model's preset")
    if mel.shape[2] == 0:
        raise AudiodiffError("mel has 0 frames; expected at least one frame")
    if not torch.isfinite(mel).all():
        raise AudiodiffError("mel contains NaN or infinite values; check the acoustic model's output")
    return mel.float(), batched


def _fade(n: int, device) -> torch.Tensor:
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n  # complementary with 1 - fade


class Vocoder:
    """A mel-conditioned diffusion vocoder: backbone, diffusion settings and mel convention together."""

    def __init__(self, net: torch.nn.Module, mel: MelConfig, model: ModelConfig, diffusion: DiffusionConfig,
                 tuned_schedules: dict | None = None, sampler: str | None = None, steps: int | None = None,
                 chunk_frames: int = 1024, overlap_frames: int = 32, max_batch: int | None = None,
                 precision: str = "auto", graphs: bool = True, refine: int | None = None, kernel: bool = True,
                 refine_momentum: float | None = None, check_mel_range: bool = True):
        self.net = net.eval().requires_grad_(False)
        self.mel_config, self.model_config, self.diffusion_config = mel, model, diffusion
        self.tuned_schedules = dict(tuned_schedules or {})
        self.sampler = sampler or diffusion.sampler
        self.steps = check_count("steps", diffusion.sample_steps if steps is None else steps)
        if self.sampler not in SAMPLERS:
            raise AudiodiffError(f"unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}")
        self.chunk_frames, self.overlap_frames = chunk_frames, overlap_frames
        self.max_batch = max_batch  # None: MAX_BATCH of the device the model is on
        self.check_mel_range = check_mel_range
        self.source = "(built in memory)"  # where from_pretrained loaded it from, for error messages
        self.precision, self.graphs, self.kernel = precision, graphs, kernel
        refine = REFINE_ITERATIONS if refine is None else refine  # None: the default, like sampler and steps
        if not isinstance(refine, int) or refine < 0:
            raise AudiodiffError(f"refine must be a whole number of iterations >= 0 (0: off), got {refine!r}")
        self.refine = refine  # mel-consistency iterations after sampling (audio/refine.py)
        momentum = REFINE_MOMENTUM if refine_momentum is None else refine_momentum
        if not 0 <= momentum < 1:
            raise AudiodiffError(f"refine_momentum must lie in [0, 1) (0: plain iterations), got {momentum!r}")
        self.refine_momentum = momentum
        if not 0 <= 2 * overlap_frames < chunk_frames:
            raise AudiodiffError("need 0 <= 2 * overlap_frames < chunk_frames")
        self.denoiser = build_denoiser(self.net, diffusion)  # fp32 eager: the reference path
        self._fast = None  # (key, denoiser, SamplingGraphs or None) of the fast path, built on first use
        self._mel_fn = MelSpectrogram(mel).to(self.device)
        self._range = mel_range(self._mel_fn)  # the values its mels can hold

    # --- properties -------------------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.mel_config.hop_length

    @property
    def n_mels(self) -> int:
        return self.mel_config.n_mels

    @property
    def max_batch(self) -> int:
        """Chunks synthesised at once: peak memory grows with it, not with the mel's length."""
        return self._max_batch or MAX_BATCH.get(self.device.type, MAX_BATCH["cpu"])

    @max_batch.setter
    def max_batch(self, value: int | None) -> None:
        self._max_batch = None if value is None else check_count("max_batch", value)

    @property
    def precision(self) -> str:
        """"fp32", "bf16", or "auto" (bf16 on a GPU, fp32 on the CPU); see ``fastpath.py``."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise AudiodiffError(f"precision must be one of {PRECISIONS}, got {value!r}")
        self._precision = value

    def _runner(self) -> tuple:
        """``(denoiser, graphs)`` that sampling uses: the fp32 eager network and no graphs on the CPU at fp32;
        otherwise the fast path (a bf16 or fp32 copy of the weights, in bf16 on a GPU the fused Triton layer
        kernel when ``kernel`` is set and Triton is installed) and, on a GPU with ``graphs`` set, the
        ``SamplingGraphs`` that replay whole sampling calls."""
        device = self.device
        precision = self.precision if self.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
        graphs = self.graphs and device.type == "cuda"
        if precision == "fp32" and not graphs:
            return self.denoiser, None
        kernel = self.kernel and precision == "bf16" and device.type == "cuda" and fused_kernel_fits(self.net)
        key = (device, precision, graphs, kernel, id(self.net))
        if self._fast is None or self._fast[0] != key:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            fast = build_denoiser(FastBackbone(self.net, dtype, kernel=kernel), self.diffusion_config)
            self._fast = key, fast, SamplingGraphs() if graphs else None
        return self._fast[1], self._fast[2]

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> "Vocoder":
        device = resolve_device(device)
        self.net.to(device)
        self._mel_fn.to(device)
        self._fast = None
        return self

    # --- persistence ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device=None, **kwargs) -> "Vocoder":
        """Load an exported model directory (default: the speech vocoder bundled with audiodiff); ``kwargs`` are
        the constructor's settings (``steps``, ``sampler``, ``max_batch``, ``refine``, ``check_mel_range``, ...)."""
        check_options(kwargs, OPTIONS, "Vocoder.from_pretrained")
        device = resolve_device(device)
        path = Path(path) if path is not None else DEFAULT_MODEL
        hint = "the bundled model is missing from this install (reinstall audiodiff) or pass --model" \
            if path == DEFAULT_MODEL else "pass"
        cfg, recipe, net = artifacts.load(path, FORMAT, "model", hint)
        voc = cls(net, recipe.mel, recipe.model, recipe.diffusion, cfg.get("tuned_schedules"), **kwargs)
        voc.source = str(path)
        return voc.to(device)

    def save_pretrained(self, path: str | Path, fp16: bool = False) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (the weights this object holds) to ``path``."""
        sections = {"mel": self.mel_config, "model": self.model_config, "diffusion": self.diffusion_config}
        return artifacts.save(path, self.net, FORMAT, sections, {"tuned_schedules": self.tuned_schedules}, fp16)

    # --- inference --------------------------------------------------------------------------------------------
    def mel(self, audio) -> torch.Tensor:
        """The model's own mel of ``audio [T]`` or ``[B, T]`` at the model's rate (for copy-synthesis)."""
        audio = torch.as_tensor(np.asarray(audio) if not isinstance(audio, torch.Tensor) else audio)
        if not torch.isfinite(audio).all():
            raise AudiodiffError("audio contains NaN or infinite samples; expected finite samples in [-1, 1]")
        with torch.no_grad():
            return self._mel_fn(audio.float().to(self.device))

    @torch.no_grad()
    def __call__(self, mel, steps: int | None = None, sampler: str | None = None,
                 generator: torch.Generator | None = None, seed: int | None = None, betas=None,
                 refine: bool = True, **unknown):
        """Waveform ``[T]`` (or ``[B, T]`` for a batched mel) at ``sample_rate``, numpy for numpy input.
        ``refine=False``: the network's raw output, without this vocoder's mel-consistency iterations;
        ``refine_waveform(raw, mel)`` then gives what a plain call returns, without sampling again."""
        check_options(unknown, ("steps", "sampler", "generator", "seed", "betas", "refine"), "Vocoder(mel, ...)")
        if not isinstance(refine, bool):
            raise AudiodiffError(f"refine must be True or False in a call, got {refine!r}; set the number of "
                                 f"iterations with Vocoder.from_pretrained(..., refine=N)")
        was_numpy = isinstance(mel, np.ndarray)
        mel_t, batched = check_mel(mel, self.n_mels)
        if mel_t.device.type != "cpu" and mel_t.device != self.device:
            raise AudiodiffError(f"mel is on {mel_t.device} but this model is on {self.device}; pass "
                                 f"mel.to({str(self.device)!r}), or load the model with device={str(mel_t.device)!r}")
        if self.check_mel_range:
            check_mel_range(mel_t, self._range)
        sampler = sampler or self.sampler
        if sampler not in SAMPLERS:
            raise AudiodiffError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise AudiodiffError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        seed = check_seed(seed)
        steps = self.steps if steps is None else check_count("steps", steps)
        sigmas = sigmas_for(sampler, steps, self.denoiser.schedule, betas, self.tuned_schedules)
        mel_t = mel_t.to(self.device)
        wav = self._synthesize(mel_t, sampler, sigmas, seed)
        if self.refine and refine:
            wav = self._refine(wav, mel_t)
        if not torch.isfinite(wav).all():
            raise AudiodiffError(self._nonfinite_output())
        wav = wav if batched else wav[0]
        return wav.cpu().numpy() if was_numpy else wav

    def _nonfinite_output(self) -> str:
        bad = [name for name, p in self.net.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            return (f"model {self.source} produced NaN or infinite audio: {len(bad)} of its weight tensors "
                    f"hold NaN or infinite values (first: {bad[0]}); export it again from a good checkpoint")
        return (f"model {self.source} produced NaN or infinite audio from a finite mel; try precision='fp32' "
                f"(synth --precision fp32), or export the model again from a good checkpoint")

    @torch.no_grad()
    def refine_waveform(self, wav, mel):
        """This vocoder's mel-consistency refinement of ``wav`` (``[T]`` or ``[B, T]``, as a call returns it) towards
        ``mel``: ``refine_waveform(voc(mel, refine=False, seed=s), mel)`` equals ``voc(mel, seed=s)``."""
        was_numpy = isinstance(wav, np.ndarray)
        mel_t, batched = check_mel(mel, self.n_mels)
        wav_t = torch.as_tensor(wav, dtype=torch.float32).to(self.device)
        wav_t = wav_t if batched else wav_t[None]
        if self.refine:
            wav_t = self._refine(wav_t, mel_t.to(self.device))
        wav_t = wav_t if batched else wav_t[0]
        return wav_t.cpu().numpy() if was_numpy else wav_t

    def _refine(self, wav: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Mel-consistency refinement (``audio/refine.py``), replayed from a CUDA graph where sampling is: its
        iterations are many small FFT and elementwise kernels, so launching them one by one costs more than
        running them."""
        def run(wav, mel):
            return refine_to_mel(wav, mel, self._mel_fn, self.refine, momentum=self.refine_momentum).clamp(-1, 1)

        _, graphs = self._runner()  # the key holds every setting that run() bakes into a captured graph
        key = ("refine", self.refine, self.refine_momentum)
        return graphs(key, run, wav, mel) if graphs is not None else run(wav, mel)

    def _chunks(self, frames: int) -> list[tuple[int, int]]:
        """Frame ranges of equal length ``chunk_frames`` overlapping by at least ``overlap_frames``; the last
        one ends at ``frames`` (so it may overlap more than one neighbour: the output is normalised by the
        summed cross-fade weights), and no chunk is ever padded."""
        if frames <= self.chunk_frames:
            return [(0, frames)]
        stride = self.chunk_frames - self.overlap_frames
        starts = list(range(0, frames - self.chunk_frames, stride)) + [frames - self.chunk_frames]
        return [(s, s + self.chunk_frames) for s in starts]

    def _synthesize(self, mel: torch.Tensor, sampler: str, sigmas: torch.Tensor, seed: int) -> torch.Tensor:
        B, _, F = mel.shape
        hop = self.hop_length
        chunks = self._chunks(F)
        runner, graphs = self._runner()
        out = torch.zeros(B, F * hop, device=mel.device)
        weight = torch.zeros(F * hop, device=mel.device)  # sum of cross-fade weights per sample
        ramp = self.overlap_frames * hop
        seed_t = torch.tensor(seed, dtype=torch.int64, device=mel.device)

        # The shaped prior's parameters (audio/prior.py) of the whole mel, sliced per chunk, so chunks agree with
        # whole synthesis; the samplers run in the coordinates L^-1 x (diffusion/denoiser.py).
        mel_prior = MelPrior.from_config(self.diffusion_config, self._mel_fn)
        params = None if mel_prior is None else mel_prior.params(mel)

        def sample(part, offsets, rows, seed_t, *prior_part):  # device tensors in, waveforms out: one graph
            noise = positional_noise(seed_t, offsets, rows)
            x = prior((part.shape[0], 1, part.shape[-1] * hop), float(sigmas[0]), device=part.device,
                      noise_sampler=noise)
            extra = {"cond": self.net.upsample(part)} if self.model_config.conditional else {}
            if not prior_part:
                return SAMPLERS[sampler](runner, x, sigmas, noise_sampler=noise, extra_args=extra)
            shaped = mel_prior.transform(prior_part[0])
            y = SAMPLERS[sampler](runner, x, sigmas, noise_sampler=noise, extra_args={**extra, "prior": shaped})
            return shaped.apply(y)

        # (row, chunk index): chunks of one length, so any group stacks into one batch.
        jobs = [(b, i) for i in range(len(chunks)) for b in range(B)]
        for j in range(0, len(jobs), self.max_batch):
            group = jobs[j:j + self.max_batch]
            part = torch.stack([mel[b, :, chunks[i][0]:chunks[i][1]] for b, i in group])  # [G, n_mels, frames]
            rows = torch.tensor([b for b, _ in group], device=mel.device)
            offsets = torch.tensor([chunks[i][0] * hop for _, i in group], device=mel.device)
            args = (part, offsets, rows, seed_t)
            if params is not None:
                args += (torch.stack([mel_prior.chunk(params[b], *chunks[i]) for b, i in group]),)
            if graphs is not None:
                y = graphs((sampler, tuple(sigmas.tolist())), sample, *args)
            else:
                y = sample(*args)
            y = y.clamp(-1, 1)[:, 0]
            for (b, i), wave in zip(group, y):
                a, e = chunks[i]
                w = self._window(i, len(chunks), (e - a) * hop, ramp, wave.device)
                out[b, a * hop: e * hop] += wave * w
        for i, (a, e) in enumerate(chunks):
            weight[a * hop: e * hop] += self._window(i, len(chunks), (e - a) * hop, ramp, mel.device)
        return out / weight

    @staticmethod
    def _window(i: int, n: int, length: int, ramp: int, device) -> torch.Tensor:
        """Cross-fade weight of chunk ``i`` of ``n``: linear ramps of ``ramp`` samples at interior edges."""
        w = torch.ones(length, device=device)
        if ramp and i > 0:
            w[:ramp] = _fade(ramp, device)
        if ramp and i + 1 < n:
            w[-ramp:] = torch.minimum(w[-ramp:], 1 - _fade(ramp, device))
        return w


OPTIONS = tuple(p for p in inspect.signature(Vocoder.__init__).parameters
                if p not in ("self", "net", "mel", "model", "diffusion", "tuned_schedules"))
