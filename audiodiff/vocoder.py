"""``Vocoder``: mel-spectrogram in, waveform out. The object a TTS pipeline imports.

    voc = Vocoder.from_pretrained()            # the bundled speech vocoder, or from_pretrained("my-export/")
    wav = voc(mel)                              # mel [n_mels, frames] or [B, n_mels, frames], numpy or torch
    wavs = voc([mel_a, mel_b])                  # a list of mels of any lengths: a list of waveforms

An exported model is a directory with ``config.json`` (mel, model and diffusion settings, tuned schedules, the
refinement settings) and ``model.safetensors`` (EMA weights); nothing is unpickled. The settings of synthesis are
one validated ``SynthesisOptions`` value (``inference/options.py``); the fast path (bf16 copy, kernel, CUDA graphs)
is the ``fastpath.Runtime`` that it keys. Long mels are synthesised in overlapping chunks with linear cross-fades
(``inference/chunks.py``); the noise of every sample is a function of its position (``diffusion/noise.py``), so
chunked and whole synthesis agree away from chunk edges and memory stays bounded by the chunk size times
``max_batch`` (the chunks run at once: 16 on a GPU, 2 on the CPU, where each 1024-frame chunk of the bundled model
holds about 0.8 GiB; ``docs/performance.md``). A mel whose values do not fit the model's convention
(``audio/mel_range.py``) is refused unless ``check_mel_range=False``, and so is audio that comes out non-finite.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from audiodiff.audio.mel import MelConfig, MelSpectrogram
from audiodiff.audio.mel_range import check_mel_range, mel_range
from audiodiff.audio.prior import MelPrior
from audiodiff.audio.refine import refine as refine_to_mel
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.diffusion import SAMPLERS, prior, sigmas_for
from audiodiff.diffusion.noise import positional_noise
from audiodiff.errors import AudiodiffError, check_options, check_seed
from audiodiff.fastpath import Runtime
from audiodiff.inference import chunks as chunking
from audiodiff.inference import stream as streaming
from audiodiff.inference.base import InferenceModel
from audiodiff.inference.options import MAX_BATCH, NAMES, PRECISIONS, SAVED, SynthesisOptions  # noqa: F401

PRETRAINED = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = PRETRAINED / "speech-22k"
FORMAT = "audiodiff-vocoder"
OPTIONS = NAMES  # the settings of Vocoder(...) and from_pretrained(...), in order
CALL_OPTIONS = ("steps", "sampler", "generator", "seed", "betas", "refine")


def check_mel(mel, n_mels: int) -> tuple[torch.Tensor, bool]:
    """Validate a mel and return ``([B, n_mels, F] float32 tensor, was_batched)``; errors say what to fix."""
    if isinstance(mel, np.ndarray):
        if not (np.issubdtype(mel.dtype, np.floating)):
            raise AudiodiffError(f"mel has dtype {mel.dtype}; expected float log-mel values "
                                 f"(convert with mel.astype(np.float32))")
        mel = torch.from_numpy(np.ascontiguousarray(mel, dtype=mel.dtype.newbyteorder("=")))  # big-endian too
    elif not isinstance(mel, torch.Tensor):
        raise AudiodiffError(f"mel must be a numpy array or torch tensor, got {type(mel).__name__}; several mels go "
                             f"in a list of arrays or tensors, one per mel")
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


class _Setting:
    """A ``Vocoder`` attribute that reads one field of its ``options`` and, when set, replaces the options with a
    validated copy: every change goes through ``SynthesisOptions`` and so into the fast path's key."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj.options, self.name)

    def __set__(self, obj, value):
        obj.options = obj.options.replace(**{self.name: value})


class Vocoder(InferenceModel):
    """A mel-conditioned diffusion vocoder: backbone, diffusion settings, mel convention and synthesis options."""

    FORMAT, NOUN, DEFAULT_PATH, OPTIONS = FORMAT, "model", DEFAULT_MODEL, OPTIONS

    def __init__(self, net: torch.nn.Module, mel: MelConfig, model: ModelConfig, diffusion: DiffusionConfig,
                 tuned_schedules: dict | None = None, options: SynthesisOptions | None = None, **settings):
        """``settings`` are ``SynthesisOptions`` fields (``sampler``, ``steps``, ``refine``, ``max_batch``, ...;
        None: the default), or pass a whole ``options`` value."""
        check_options(settings, OPTIONS, "Vocoder")
        if model.arch != "diffwave" or not model.conditional:
            kind = "a mel generator (model.arch unet2d)" if model.arch != "diffwave" else \
                "a waveform model without mel input (model.conditional: false)"
            raise AudiodiffError(f"this is {kind}, not a vocoder: it makes its own output from class labels or noise; "
                                 f"use {'MelGenerator' if model.arch != 'diffwave' else 'WaveGenerator'} "
                                 f"(audiodiff generate) for it")
        self._init_configs(mel, model, diffusion)
        self.tuned_schedules = dict(tuned_schedules or {})
        self.options = options.replace(**{k: v for k, v in settings.items() if v is not None}) if options else \
            SynthesisOptions.for_model(diffusion, **settings)
        self.runtime = Runtime(net, diffusion)
        self._mel_fn = MelSpectrogram(mel).to(self.device)
        self._range = mel_range(self._mel_fn)  # the values its mels can hold
        self._prior = MelPrior.from_config(diffusion, self._mel_fn)  # the shaped prior, or None

    sampler, steps, refine, refine_momentum = _Setting(), _Setting(), _Setting(), _Setting()
    precision, graphs, kernel, check_mel_range = _Setting(), _Setting(), _Setting(), _Setting()
    chunk_frames, overlap_frames = _Setting(), _Setting()

    # --- properties -------------------------------------------------------------------------------------------
    @property
    def net(self) -> torch.nn.Module:
        return self.runtime.net

    @property
    def denoiser(self):
        """The fp32 eager denoiser: the reference path (``runtime`` has the fast one)."""
        return self.runtime.denoiser

    @property
    def hop_length(self) -> int:
        return self.mel_config.hop_length

    @property
    def n_mels(self) -> int:
        return self.mel_config.n_mels

    @property
    def max_batch(self) -> int:
        """Chunks synthesised at once: peak memory grows with it, not with the mel's length."""
        return self.options.max_batch_on(self.device.type)

    @max_batch.setter
    def max_batch(self, value: int | None) -> None:
        self.options = self.options.replace(max_batch=value)

    def _moved(self, device: torch.device) -> None:
        self.runtime.to(device)
        self._mel_fn.to(device)

    # --- persistence ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device=None, **kwargs) -> "Vocoder":
        """Load an exported model directory (default: the speech vocoder bundled with audiodiff); ``kwargs`` are
        the constructor's settings (``steps``, ``sampler``, ``max_batch``, ``refine``, ``check_mel_range``, ...),
        over those the directory was saved with."""
        return super().from_pretrained(path, device, **kwargs)

    @classmethod
    def _from_artifact(cls, net, recipe, cfg: dict, **kwargs) -> "Vocoder":
        saved = cfg.get("synthesis") or {}
        if not isinstance(saved, dict) or set(saved) - set(SAVED):
            raise AudiodiffError(f"config.json: synthesis holds {saved!r}; expected a mapping of "
                                 f"{', '.join(SAVED)}; re-export the model")
        settings = {**saved, **{k: v for k, v in kwargs.items() if v is not None}}
        return cls(net, recipe.mel, recipe.model, recipe.diffusion, cfg.get("tuned_schedules"), **settings)

    def _saved_diffusion(self) -> DiffusionConfig:
        return dataclasses.replace(self.diffusion_config, sampler=self.sampler, sample_steps=self.steps)

    def _saved_extra(self) -> dict:
        synthesis = {k: getattr(self.options, k) for k in SAVED if k not in ("sampler", "steps")}
        return {"tuned_schedules": self.tuned_schedules, "synthesis": synthesis}

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
        """Waveform ``[T]`` (or ``[B, T]`` for a batched mel ``[B, n_mels, F]``, ``[1, T]`` for ``[1, n_mels, F]``)
        at ``sample_rate``, numpy for numpy input. A list of mels of different lengths gives a list of waveforms:
        item ``i`` is what row ``i`` of a batch would be (the same noise), and chunks of equal length are
        synthesised together (``inference/chunks.py``). ``steps`` and ``sampler`` override the vocoder's for this
        call. ``refine=False``: the network's raw output, without this vocoder's mel-consistency iterations;
        ``refine_waveform(raw, mel)`` then gives what a plain call returns, without sampling again."""
        check_options(unknown, CALL_OPTIONS, "Vocoder(mel, ...)")
        if not isinstance(refine, bool):
            raise AudiodiffError(f"refine must be True or False in a call, got {refine!r}; set the number of "
                                 f"iterations with Vocoder.from_pretrained(..., refine=N)")
        mels, form = self._inputs(mel)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise AudiodiffError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        waves = self.vocode_rows(mels, list(range(len(mels))), check_seed(seed), steps, sampler, betas, refine)
        return _outputs(waves, form)

    def stream(self, frames, seed: int = 0, block_frames: int = streaming.BLOCK_FRAMES,
               overlap_frames: int | None = None, steps: int | None = None, sampler: str | None = None,
               refine: bool = True):
        """Audio blocks for mel frames as they come: ``frames`` is an iterable of pieces ``[n_mels, k]`` (any sizes),
        and each block is returned once ``overlap_frames`` (default: the vocoder's) plus the refinement's context
        more frames have arrived (``inference/stream.py``; ``MelStream`` pushes instead). Blocks of
        ``block_frames`` frames; joined, they equal ``self(mel, seed=seed)`` away from chunk edges."""
        return streaming.stream(self, frames, seed=seed, block_frames=block_frames, overlap_frames=overlap_frames,
                                steps=steps, sampler=sampler, refine=refine)

    def _inputs(self, mel) -> tuple[list[torch.Tensor], tuple[str, bool]]:
        """Validated mels ``[n_mels, F]`` on this device, one per output row, and how to return the rows: the
        input's form (``"one"``, ``"batch"`` or ``"list"``) and whether it was numpy."""
        if isinstance(mel, (list, tuple)) and mel and all(isinstance(m, (np.ndarray, torch.Tensor)) for m in mel):
            items = [self._input(m) for m in mel]
            if any(batched and m.shape[0] != 1 for m, batched in items):
                raise AudiodiffError("a list of mels holds [n_mels, frames] (or [1, n_mels, frames]) arrays; pass "
                                     "a batch [B, n_mels, frames] on its own, or each of its rows in the list")
            return [m[0] for m, _ in items], ("list", all(isinstance(m, np.ndarray) for m in mel))
        if isinstance(mel, (list, tuple)) and not mel:
            raise AudiodiffError("the list of mels is empty; pass at least one mel [n_mels, frames]")
        mel_t, batched = self._input(mel)
        return list(mel_t), ("batch" if batched else "one", isinstance(mel, np.ndarray))

    def prepare(self, mel) -> list[torch.Tensor]:
        """``mel`` (as a call takes it) validated and on this device: one ``[n_mels, F]`` tensor per output row,
        what ``vocode_rows`` takes."""
        return self._inputs(mel)[0]

    def _input(self, mel) -> tuple[torch.Tensor, bool]:
        mel_t, batched = check_mel(mel, self.n_mels)
        if mel_t.device.type != "cpu" and mel_t.device != self.device:
            raise AudiodiffError(f"mel is on {mel_t.device} but this model is on {self.device}; pass "
                                 f"mel.to({str(self.device)!r}), or load the model with device={str(mel_t.device)!r}")
        if self.check_mel_range:
            check_mel_range(mel_t, self._range)
        return mel_t.to(self.device), batched

    def vocode_rows(self, mels: list[torch.Tensor], rows: list[int], seed: int, steps: int | None = None,
                    sampler: str | None = None, betas=None, refine: bool = True) -> list[torch.Tensor]:
        """Waveforms ``[F_i * hop]`` of validated mels ``[n_mels, F_i]`` on this device (``_inputs``), mel ``i``
        drawing noise row ``rows[i]`` of ``seed``: how a batch's rows, a list's items and a folder's files
        (``inference/files.py``) are vocoded, so that each gets the noise of its row whatever it is batched with."""
        # This call's sampler and steps, validated as options are; the fast path stays keyed by the vocoder's own.
        call = self.options.replace(**{k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None})
        sigmas = sigmas_for(call.sampler, call.steps, self.denoiser.schedule, betas, self.tuned_schedules)
        waves = self._synthesize(mels, rows, call.sampler, sigmas, seed)
        if self.refine and refine:
            waves = self._refine_rows(waves, mels)
        if not all(torch.isfinite(w).all() for w in waves):
            raise AudiodiffError(self._nonfinite_output())
        return waves

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

    def _refine_rows(self, waves: list[torch.Tensor], mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """``_refine`` of every row, rows of one length stacked into one batch."""
        out: list[torch.Tensor | None] = [None] * len(waves)
        for idx in _by_length(mels):
            done = self._refine(torch.stack([waves[i] for i in idx]), torch.stack([mels[i] for i in idx]))
            for i, wave in zip(idx, done):
                out[i] = wave
        return out

    def _refine(self, wav: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Mel-consistency refinement (``audio/refine.py``), replayed from a CUDA graph where sampling is: its
        iterations are many small FFT and elementwise kernels, so launching them one by one costs more than
        running them."""
        options = self.options

        def run(wav, mel):
            return refine_to_mel(wav, mel, self._mel_fn, options.refine, momentum=options.refine_momentum).clamp(-1, 1)

        _, graphs = self.runtime.runner(options)  # graphs belong to these options: run() bakes them in
        key = ("refine", options.refine, options.refine_momentum)
        return graphs(key, run, wav, mel) if graphs is not None else run(wav, mel)

    def _synthesize(self, mels: list[torch.Tensor], rows: list[int], sampler: str, sigmas: torch.Tensor,
                    seed: int) -> list[torch.Tensor]:
        """Raw waveforms ``[F_i * hop]`` of mels ``[n_mels, F_i]``, chunked (``inference/chunks.py``); mel ``i``
        draws noise row ``rows[i]``, its chunk at frame ``a`` the noise of samples from ``a * hop`` on."""
        hop, options = self.hop_length, self.options
        device = mels[0].device
        plans = [chunking.plan(m.shape[-1], options.chunk_frames, options.overlap_frames) for m in mels]
        outs = [torch.zeros(m.shape[-1] * hop, device=device) for m in mels]
        ramp = options.overlap_frames * hop
        seed_t = torch.tensor(seed, dtype=torch.int64, device=device)
        sample = self._chunk_sampler(sampler, sigmas)

        # The shaped prior's parameters (audio/prior.py) of each whole mel, sliced per chunk, so chunks agree with
        # whole synthesis; mels of one length are computed together.
        mel_prior = self._prior
        params: list[torch.Tensor | None] = [None] * len(mels)
        if mel_prior is not None:
            for idx in _by_length(mels):
                for i, p in zip(idx, mel_prior.params(torch.stack([mels[i] for i in idx]))):
                    params[i] = p

        # (row, chunk index) jobs whose chunks have one length, so each group stacks into one batch.
        for group in chunking.length_groups(plans, self.max_batch):
            spans = [plans[b][i] for b, i in group]
            part = torch.stack([mels[b][:, a:e] for (b, _), (a, e) in zip(group, spans)])  # [G, n_mels, frames]
            prior_part = None if mel_prior is None else \
                torch.stack([mel_prior.chunk(params[b], a, e) for (b, _), (a, e) in zip(group, spans)])
            offsets = [a * hop for a, _ in spans]
            y = sample(part, offsets, [rows[b] for b, _ in group], seed_t, prior_part)
            for (b, i), wave in zip(group, y):
                chunking.overlap_add(outs[b][None], 0, i, wave, plans[b], hop, ramp)
        return [out / chunking.weight_sum(plan, hop, ramp, device) for out, plan in zip(outs, plans)]

    def _chunk_sampler(self, sampler: str, sigmas: torch.Tensor):
        """``sample(part, offsets, rows, seed_t, prior_part) -> [G, samples]``: the raw waveforms of mel chunks
        ``part [G, n_mels, frames]`` whose first samples are at ``offsets`` (ints) of noise ``rows`` (ints), from
        one CUDA graph per shape where the fast path has graphs. ``prior_part``: the shaped prior's parameters of
        the chunks (``MelPrior.chunk``), or None."""
        hop = self.hop_length
        runner, graphs = self.runtime.runner(self.options)
        upsample = self.net.upsample
        mel_prior = self._prior

        def sample(part, offsets, rows, seed_t, *prior_part):  # device tensors in, waveforms out: one graph
            noise = positional_noise(seed_t, offsets, rows)
            x = prior((part.shape[0], 1, part.shape[-1] * hop), float(sigmas[0]), device=part.device,
                      noise_sampler=noise)
            extra = {"cond": upsample(part)}
            if not prior_part:
                return SAMPLERS[sampler](runner, x, sigmas, noise_sampler=noise, extra_args=extra)
            shaped = mel_prior.transform(prior_part[0])
            y = SAMPLERS[sampler](runner, x, sigmas, noise_sampler=noise, extra_args={**extra, "prior": shaped})
            return shaped.apply(y)

        def run(part, offsets, rows, seed_t, prior_part=None):
            device = part.device
            args = (part, torch.tensor(offsets, device=device), torch.tensor(rows, device=device), seed_t)
            args += (prior_part,) if prior_part is not None else ()
            y = graphs((sampler, tuple(sigmas.tolist())), sample, *args) if graphs is not None else sample(*args)
            return y.clamp(-1, 1)[:, 0]

        return run


def _by_length(mels: list[torch.Tensor]) -> list[list[int]]:
    """Indices of ``mels`` grouped by frame count, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, m in enumerate(mels):
        groups.setdefault(m.shape[-1], []).append(i)
    return list(groups.values())


def _outputs(waves: list[torch.Tensor], form: tuple[str, bool]):
    """The waveforms in the form of the input (``Vocoder._inputs``): one, a stacked batch or a list; numpy for
    numpy input."""
    kind, was_numpy = form
    convert = (lambda w: w.cpu().numpy()) if was_numpy else (lambda w: w)
    if kind == "list":
        return [convert(w) for w in waves]
    return convert(torch.stack(waves) if kind == "batch" else waves[0])
