"""``Vocoder``: mel-spectrogram in, waveform out. The object a TTS pipeline imports.

    voc = Vocoder.from_pretrained()            # the bundled speech vocoder, or from_pretrained("my-export/")
    wav = voc(mel)                              # mel [n_mels, frames] or [B, n_mels, frames], numpy or torch

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
        """Waveform ``[T]`` (or ``[B, T]`` for a batched mel) at ``sample_rate``, numpy for numpy input.
        ``steps`` and ``sampler`` override the vocoder's for this call. ``refine=False``: the network's raw output,
        without this vocoder's mel-consistency iterations; ``refine_waveform(raw, mel)`` then gives what a plain
        call returns, without sampling again."""
        check_options(unknown, CALL_OPTIONS, "Vocoder(mel, ...)")
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
        # This call's sampler and steps, validated as options are; the fast path stays keyed by the vocoder's own.
        call = self.options.replace(**{k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None})
        if generator is not None and not isinstance(generator, torch.Generator):
            raise AudiodiffError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        seed = check_seed(seed)
        sigmas = sigmas_for(call.sampler, call.steps, self.denoiser.schedule, betas, self.tuned_schedules)
        mel_t = mel_t.to(self.device)
        wav = self._synthesize(mel_t, call.sampler, sigmas, seed)
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
        options = self.options

        def run(wav, mel):
            return refine_to_mel(wav, mel, self._mel_fn, options.refine, momentum=options.refine_momentum).clamp(-1, 1)

        _, graphs = self.runtime.runner(options)  # graphs belong to these options: run() bakes them in
        key = ("refine", options.refine, options.refine_momentum)
        return graphs(key, run, wav, mel) if graphs is not None else run(wav, mel)

    def _synthesize(self, mel: torch.Tensor, sampler: str, sigmas: torch.Tensor, seed: int) -> torch.Tensor:
        B, _, F = mel.shape
        hop, options = self.hop_length, self.options
        chunks = chunking.plan(F, options.chunk_frames, options.overlap_frames)
        runner, graphs = self.runtime.runner(options)
        out = torch.zeros(B, F * hop, device=mel.device)
        ramp = options.overlap_frames * hop
        seed_t = torch.tensor(seed, dtype=torch.int64, device=mel.device)
        upsample = self.net.upsample

        # The shaped prior's parameters (audio/prior.py) of the whole mel, sliced per chunk, so chunks agree with
        # whole synthesis; the samplers run in the coordinates L^-1 x (diffusion/denoiser.py).
        mel_prior = MelPrior.from_config(self.diffusion_config, self._mel_fn)
        params = None if mel_prior is None else mel_prior.params(mel)

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

        # (row, chunk index): chunks of one length, so any group stacks into one batch.
        for group in chunking.groups(B, len(chunks), self.max_batch):
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
                chunking.overlap_add(out, b, i, wave, chunks, hop, ramp)
        return out / chunking.weight_sum(chunks, hop, ramp, mel.device)
