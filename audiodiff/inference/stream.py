"""Streaming synthesis: mel frames in as an acoustic model makes them, audio blocks out, with bounded look-ahead.

It is the chunked synthesis of ``inference/chunks.py`` run as frames arrive. Chunks of ``C = block + overlap``
frames start every ``block`` frames (``S``); chunk ``k`` runs once frames ``[kS, kS + C)`` have arrived, with the
position-indexed noise of its samples (``diffusion/noise.py``), so it computes what chunk ``k`` of an offline call
computes, and its waveform is cross-faded into the ones before it (the weighted sum divided by the summed weights,
as offline). Samples before ``(k + 1) S`` are then final. The refinement (``audio/refine.py``) needs ``margin =
(iterations + 1) * n_fft / hop`` frames of final raw audio on each side of what it returns to give the
whole-signal result, so refined block ``j`` (frames ``[jS, (j + 1) S)``) is returned once the raw audio is final up
to ``(j + 1) S + margin``. At the end of the stream a last, shorter chunk covers the frames after the last full one,
and the remaining blocks are refined with the context there is.

Look-ahead: a block is out once ``overlap`` plus ``margin`` (rounded up to whole blocks) more frames have arrived
(``lookahead_frames``); a frame waits besides for its block to fill (up to ``block`` frames): ``latency_frames``.
Blocks are fixed, so the output does not depend on how the frames are split when pushed. Away from chunk edges the output equals offline synthesis with the same seed to
float32 rounding (``tests/test_stream.py``); at a chunk's edges it differs as chunked synthesis does, by the
model's cut context, weighted down by the cross-fade.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from audiodiff.audio.mel_range import check_mel_range
from audiodiff.audio.refine import refine as refine_to_mel
from audiodiff.diffusion import sigmas_for
from audiodiff.errors import AudiodiffError, check_count, check_seed
from audiodiff.inference.chunks import fade

BLOCK_FRAMES = 64  # frames a block returns (0.74 s at 22.05 kHz, hop 256)


def refine_margin(iterations: int, n_fft: int, hop: int) -> int:
    """Frames of context on each side that ``iterations`` refinement iterations need (``audio/refine.py``)."""
    return (iterations + 1) * -(-n_fft // hop) if iterations else 0


class MelStream:
    """Push mel frames ``[n_mels, k]`` (any ``k`` >= 0), get back the audio that is final: ``push`` returns a
    (possibly empty) waveform, ``finish`` the rest. ``row`` is the noise row (0: what a single mel gets)."""

    def __init__(self, voc, seed: int = 0, block_frames: int = BLOCK_FRAMES, overlap_frames: int | None = None,
                 steps: int | None = None, sampler: str | None = None, refine: bool = True, row: int = 0):
        check_count("block_frames", block_frames)
        overlap = voc.overlap_frames if overlap_frames is None else overlap_frames
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            raise AudiodiffError(f"overlap_frames must be a whole number >= 0, got {overlap!r}")
        self.voc, self.seed, self.row = voc, check_seed(seed), row
        self.block, self.overlap = int(block_frames), overlap
        self.size = self.block + overlap  # C: frames per chunk
        call = voc.options.replace(**{k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None})
        sigmas = sigmas_for(call.sampler, call.steps, voc.denoiser.schedule, None, voc.tuned_schedules)
        self._sample = voc._chunk_sampler(call.sampler, sigmas)
        self._prior = voc._prior
        self.iterations = voc.refine if refine else 0
        cfg = voc.mel_config
        self.margin = refine_margin(self.iterations, cfg.n_fft, cfg.hop_length)
        self.hop = cfg.hop_length
        device = voc.device
        self._seed_t = torch.tensor(self.seed, dtype=torch.int64, device=device)
        self._mel = torch.zeros(voc.n_mels, 0, device=device)  # frames [_base, frames)
        self._acc = torch.zeros(0, device=device)  # sum of window * chunk waveform, samples from _base * hop
        self._wsum = torch.zeros(0, device=device)  # sum of windows
        self._base = 0  # first frame held in _mel, _acc and _wsum
        self.frames = 0  # frames pushed
        self._next = 0  # start frame of the next chunk (k S): raw audio before it is final
        self._emitted = 0  # frames of audio returned
        self._finished = False

    @property
    def lookahead_frames(self) -> int:
        """Frames that must arrive after a block's last frame before the block is returned: the overlap, and the
        refinement's margin rounded up to whole blocks (raw audio becomes final a block at a time)."""
        return self.overlap + -(-self.margin // self.block) * self.block

    @property
    def latency_frames(self) -> int:
        """The most frames between a frame's arrival and its audio's return (its block's fill plus look-ahead)."""
        return self.block + self.lookahead_frames

    def push(self, mel) -> torch.Tensor:
        """Add mel frames ``[n_mels, k]`` (validated as a call's mel is); returns the audio that became final."""
        if self._finished:
            raise AudiodiffError("this stream is finished; start a new one for the next utterance")
        if (isinstance(mel, np.ndarray) or isinstance(mel, torch.Tensor)) and mel.ndim == 2 and mel.shape[-1] == 0:
            return self._take()  # an empty push (a model with nothing new yet)
        from audiodiff.vocoder import check_mel  # here: vocoder.py imports this module

        part, batched = check_mel(mel, self.voc.n_mels)
        if batched and part.shape[0] != 1:
            raise AudiodiffError(f"a stream takes the frames of one mel, [n_mels, frames]; got {part.shape[0]} rows")
        part = part[0].to(self._mel.device)
        self._mel = torch.cat([self._mel, part], -1)
        self.frames += part.shape[-1]
        while self.frames >= self._next + self.size:
            self._run_chunk(self._next, self._next + self.size, last=False)
        return self._take()

    def finish(self) -> torch.Tensor:
        """The rest of the audio, once the last frame has been pushed."""
        if self._finished:
            return torch.zeros(0, device=self._acc.device)
        if self.frames > self._next:
            self._run_chunk(self._next, self.frames, last=True)
        self._finished = True
        return self._take()

    # --- internals --------------------------------------------------------------------------------------------
    def _run_chunk(self, a: int, e: int, last: bool) -> None:
        hop, base = self.hop, self._base
        part = self._mel[None, :, a - base:e - base]  # [1, n_mels, e - a]
        if a == 0 and self.voc.check_mel_range:  # the mel check judges value statistics: once, on the first chunk
            check_mel_range(part, self.voc._range)
        prior_part = None if self._prior is None else self._prior.params(part)
        wave = self._sample(part, [a * hop], [self.row], self._seed_t, prior_part)[0]  # [(e - a) hop]
        w = torch.ones_like(wave)
        ramp = min(self.overlap * hop, len(w))
        if a > 0 and ramp:
            w[:ramp] = fade(self.overlap * hop, w.device)[:ramp]
        if not last and ramp:
            w[-ramp:] = torch.minimum(w[-ramp:], 1 - fade(self.overlap * hop, w.device)[-ramp:])
        need = (e - base) * hop
        if len(self._acc) < need:
            grow = need - len(self._acc)
            self._acc = torch.cat([self._acc, self._acc.new_zeros(grow)])
            self._wsum = torch.cat([self._wsum, self._wsum.new_zeros(grow)])
        self._acc[(a - base) * hop:need] += wave * w
        self._wsum[(a - base) * hop:need] += w
        self._next = e if last else a + self.block

    def _take(self) -> torch.Tensor:
        """Refined (or raw) audio of every whole block that is final, and at the end all the rest."""
        hop, base = self.hop, self._base
        raw_final = self.frames if self._finished else self._next
        if self._finished:
            end = self.frames
        else:
            ready = raw_final - self.margin  # refined audio is final up to here
            end = self._emitted + max(0, (ready - self._emitted) // self.block) * self.block
        if end <= self._emitted:
            return torch.zeros(0, device=self._acc.device)
        blocks = []
        for p in range(self._emitted, end, self.block):
            q = min(p + self.block, end)
            blocks.append(self._refined(p, q, raw_final))
        out = torch.cat(blocks)
        self._emitted = end
        self._trim()
        return out

    def _refined(self, p: int, q: int, raw_final: int) -> torch.Tensor:
        hop, base = self.hop, self._base
        raw = self._acc[:(raw_final - base) * hop] / self._wsum[:(raw_final - base) * hop]
        if not self.iterations:
            return raw[(p - base) * hop:(q - base) * hop].clamp(-1, 1)
        a, e = max(base, p - self.margin), min(raw_final, q + self.margin)
        seg = raw[(a - base) * hop:(e - base) * hop].clamp(-1, 1)  # the vocoder's raw output is clamped
        mel = self._mel[:, a - base:e - base]
        done = refine_to_mel(seg[None], mel[None], self.voc._mel_fn, self.iterations,
                             momentum=self.voc.refine_momentum)[0]
        return done[(p - a) * hop:(q - a) * hop].clamp(-1, 1)

    def _trim(self) -> None:
        """Drop what no later chunk or block reads: frames before the refinement's left context and the next chunk."""
        keep = min(self._emitted - self.margin, self._next)
        keep = max(keep, self._base)
        cut = keep - self._base
        if cut > 0:
            self._mel = self._mel[:, cut:]
            self._acc, self._wsum = self._acc[cut * self.hop:], self._wsum[cut * self.hop:]
            self._base = keep


def stream(voc, frames: Iterable, **settings) -> Iterator:
    """``Vocoder.stream``: audio blocks for an iterable of mel pieces ``[n_mels, k]``; numpy out for numpy in."""
    s = MelStream(voc, **settings)
    was_numpy = None
    for piece in frames:
        was_numpy = isinstance(piece, np.ndarray) if was_numpy is None else was_numpy
        out = s.push(piece)
        if len(out):
            yield out.cpu().numpy() if was_numpy else out
    out = s.finish()
    if len(out):
        yield out.cpu().numpy() if was_numpy else out
