"""One dataset of random audio crops aligned with their mel frames, resumable and deterministic.

Item ``i`` is a pure function of ``(seed, i)``: a file chosen with probability proportional to its length and a
random whole-frame offset. A training step ``s`` reads items ``[s * B, (s + 1) * B)`` (``StepBatchSampler``), so a
run resumed at step ``s`` sees exactly the batches an uninterrupted run would have.

Screening. Unreadable, empty, truncated, silent and too-short files and files with non-finite samples are skipped
and listed once in a warning; stereo is mixed down and other rates resampled. Clipping files are kept (a vocoder
should reproduce what it is given) and listed once in a note. Cases tested: docs/reliability.md.

Alignment. Each file is reflect-padded once as the mel front end pads it. For a crop of ``N`` frames starting at
frame ``k`` the item holds ``audio = x[k * hop : (k + N) * hop]`` and ``segment``, the padded samples
``[k * hop, k * hop + (N - 1) * hop + n_fft)`` from which ``MelSpectrogram(segment, pad=False)`` computes exactly
frames ``k .. k + N - 1`` of the whole-file mel (on the GPU, in the training step).

Speed perturbation (``speed_perturb = p > 0``): each crop is resampled from a stretch of the recording
``r`` times its length, ``r`` uniform in ``[1 - p, 1 + p]``, so pitch and formants move together by ``r`` and the
mel, computed from the resampled crop, still describes it exactly. It turns one speaker into a range of voices
(Ko et al. 2015, "Audio augmentation for speech recognition", used 0.9-1.1).
"""

from __future__ import annotations

import logging

import numpy as np
import soxr
import torch
from torch.utils.data import Dataset, Sampler

from audiodiff.audio.io import load_audio
from audiodiff.audio.mel import MelConfig
from audiodiff.data.files import probe
from audiodiff.errors import AudiodiffError

log = logging.getLogger("audiodiff")
CLIP_LEVEL, CLIP_SHARE = 0.999, 1e-3  # a file "clips" when over 0.1% of its samples are at full scale


class AudioCrops(Dataset):
    """Random ``crop_frames``-frame crops of ``files``; ``labels`` (one int per file) enable class conditioning.

    Files shorter than a crop are skipped, or with ``pad_short`` padded with trailing silence to one crop.
    """

    def __init__(self, files, mel: MelConfig, crop_frames: int, seed: int = 0, labels=None,
                 progress: bool = False, pad_short: bool = False, speed_perturb: float = 0.0):
        if not 0.0 <= speed_perturb < 0.5:
            raise AudiodiffError(f"data.speed_perturb must be in [0, 0.5), got {speed_perturb}; 0.1 means speed "
                                 f"factors 0.9-1.1, 0 turns it off")
        self.mel, self.crop_frames, self.seed = mel, crop_frames, seed
        self.speed_perturb = speed_perturb
        self.hop = mel.hop_length
        self.skipped: list[tuple[str, str]] = []
        self.clipping: list[str] = []
        self.audio, self.labels, self.files = [], [], []
        iterator = files
        if progress:
            from tqdm import tqdm
            iterator = tqdm(files, desc="loading audio", unit="file", leave=False)
        min_samples = crop_frames * self.hop
        for i, path in enumerate(iterator):
            reason = probe(path)
            audio = None
            if reason is None:
                try:
                    audio, _ = load_audio(path, mel.sample_rate)
                except AudiodiffError as err:
                    reason = str(err).split(": ", 1)[-1]
            if reason is None and not np.isfinite(audio).all():
                reason = "non-finite samples"
            if reason is None and np.abs(audio).max() < 1e-4:
                reason = "silent"
            if reason is None and pad_short and len(audio) < min_samples:
                audio = np.pad(audio, (0, min_samples - len(audio)))  # trailing silence: a whole short clip is a crop
            if reason is None and len(audio) < min_samples:
                reason = f"shorter than a crop ({len(audio) / mel.sample_rate:.2f} s < " \
                         f"{min_samples / mel.sample_rate:.2f} s)"
            if reason is not None:
                self.skipped.append((str(path), reason))
                continue
            if np.mean(np.abs(audio) >= CLIP_LEVEL) > CLIP_SHARE:
                self.clipping.append(str(path))
            left, right = mel.pad
            self.audio.append(np.pad(audio, (left, right), mode="reflect"))
            self.labels.append(int(labels[i]) if labels is not None else -1)
            self.files.append(str(path))
        if self.skipped:
            listing = "; ".join(f"{p} ({r})" for p, r in self.skipped)
            log.warning("skipped %d of %d files: %s", len(self.skipped), len(files), listing)
        if self.clipping:
            log.warning("kept %d file(s) that clip (over %.1f%% of samples at full scale): %s",
                        len(self.clipping), 100 * CLIP_SHARE, "; ".join(self.clipping))
        if not self.audio:
            raise AudiodiffError(
                f"none of the {len(files)} audio files is usable (need at least {min_samples} samples at "
                f"{mel.sample_rate} Hz); first problem: {self.skipped[0][0]}: {self.skipped[0][1]}"
                if self.skipped else "no audio files given"
            )
        left, right = mel.pad
        self.frames = np.array([mel.num_frames(len(a) - left - right) for a in self.audio])
        starts = self.frames - crop_frames + 1  # number of valid start frames per file
        self.weights = starts / starts.sum()

    @property
    def seconds(self) -> float:
        return float(sum(len(a) for a in self.audio) / self.mel.sample_rate)

    def __len__(self) -> int:
        return 2**62  # items are drawn by index from an endless stream

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng((self.seed, index))
        f = int(rng.choice(len(self.audio), p=self.weights))
        k = int(rng.integers(0, self.frames[f] - self.crop_frames + 1))
        x, n, hop = self.audio[f], self.crop_frames, self.hop
        left = self.mel.pad[0]
        start = k * hop
        length = self.mel.segment_length(n)
        segment = x[start: start + length]
        if self.speed_perturb:  # drawn last: without perturbation the stream of crops is unchanged
            segment = self._perturbed(x, rng, segment)
        return {
            "audio": torch.from_numpy(segment[left: left + n * hop].copy()),  # [N * hop]
            "segment": torch.from_numpy(segment.copy()),
            "label": torch.tensor(self.labels[f]),
        }

    def _perturbed(self, x: np.ndarray, rng: np.random.Generator, plain: np.ndarray, margin: int = 64) -> np.ndarray:
        """``len(plain)`` samples of ``x`` played ``r`` times faster, from a random stretch of ``r`` times that
        (plus ``margin`` either side, cut after resampling so no filter edge reaches the crop)."""
        length = len(plain)
        r = rng.uniform(1 - self.speed_perturb, 1 + self.speed_perturb)
        need = int(np.ceil(length * r)) + 2 * margin + 1
        if need > len(x):  # a file too short for this factor keeps its plain crop
            return plain
        a = int(rng.integers(0, len(x) - need + 1))
        sr = self.mel.sample_rate
        y = soxr.resample(x[a: a + need], sr * r, sr, quality="HQ")
        cut = int(round(margin / r))
        return np.ascontiguousarray(y[cut: cut + length], dtype=np.float32)


class StepBatchSampler(Sampler):
    """Yields the index lists of steps ``start, start + 1, ...``: process ``rank`` of ``world`` takes its slice of
    the global batch ``[s * B, (s + 1) * B)``."""

    def __init__(self, batch_size: int, start_step: int = 0, rank: int = 0, world: int = 1, steps=None):
        if batch_size % world:
            raise AudiodiffError(f"train.batch_size {batch_size} must be divisible by the {world} processes")
        self.batch, self.start, self.rank, self.world, self.steps = batch_size, start_step, rank, world, steps
        self.local = batch_size // world

    def __iter__(self):
        s = self.start
        while self.steps is None or s < self.start + self.steps:
            base = s * self.batch + self.rank * self.local
            yield list(range(base, base + self.local))
            s += 1

    def __len__(self):
        return self.steps if self.steps is not None else 2**62
