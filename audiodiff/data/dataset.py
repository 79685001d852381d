"""One dataset of random audio crops aligned with their mel frames, resumable and deterministic.

Item ``i`` is a pure function of ``(seed, i)``: a file chosen with probability proportional to its length and a
random whole-frame offset. A training step ``s`` reads items ``[s * B, (s + 1) * B)`` (``StepBatchSampler``), so a
run resumed at step ``s`` sees exactly the batches an uninterrupted run would have.

Preloaded or lazy. With ``preload`` every file is decoded into memory once; without it each crop is read from
disk when drawn (``reader.py``, from a ``manifest.py`` manifest), so memory is bounded whatever the corpus size and
the item stream is the same: the crop of item ``i`` depends on ``(seed, i)`` and the file lengths only.

Screening. Unreadable, empty, truncated, silent and too-short files and files with non-finite samples are skipped
and listed once in a warning (read lazily: those that a header shows, see ``manifest.py``); stereo is mixed down and
other rates resampled. Clipping files are kept (a vocoder should reproduce what it is given) and listed once in a
note. Cases tested: docs/reliability.md.

Alignment. Each file is reflect-padded once as the mel front end pads it. For a crop of ``N`` frames starting at
frame ``k`` the item holds ``audio = x[k * hop : (k + N) * hop]`` and ``segment``, the padded samples
``[k * hop, k * hop + (N - 1) * hop + n_fft)`` from which ``MelSpectrogram(segment, pad=False)`` computes exactly
frames ``k .. k + N - 1`` of the whole-file mel (on the GPU, in the training step).

Pairs (``mels``, ``data/pairs.py``): each file comes with a mel an acoustic model made of it, and an item also holds
``mel``, frames ``k .. k + N - 1`` of that mel (``[n_mels, N]``, converted to the recipe's convention), which the
model is then conditioned on instead of the mel of ``segment``. The crops drawn are those of audio-only training.

Speed perturbation (``speed_perturb = p > 0``): each crop is resampled from a stretch of the recording
``r`` times its length, ``r`` uniform in ``[1 - p, 1 + p]``, so pitch and formants move together by ``r`` and the
mel, computed from the resampled crop, still describes it exactly. It turns one speaker into a range of voices
(Ko et al. 2015, "Audio augmentation for speech recognition", used 0.9-1.1).
"""

from __future__ import annotations

import logging

import numpy as np
import soundfile as sf
import soxr
import torch
from torch.utils.data import Dataset, Sampler

from audiodiff.audio.io import load_audio
from audiodiff.audio.mel import MelConfig
from audiodiff.data.files import probe
from audiodiff.data.manifest import Manifest, scan
from audiodiff.data.pairs import PairedMels
from audiodiff.data.reader import DiskAudio
from audiodiff.errors import AudiodiffError

log = logging.getLogger("audiodiff")
CLIP_LEVEL, CLIP_SHARE = 0.999, 1e-3  # a file "clips" when over 0.1% of its samples are at full scale
LISTED = 50  # skipped files named in the warning (a large corpus may have thousands too short for a crop)


class AudioCrops(Dataset):
    """Random ``crop_frames``-frame crops of ``files`` (paths or a ``Manifest``); ``labels`` (one int per file)
    enable class conditioning.

    ``preload`` decodes every file into memory once (fast, and screens out silent and non-finite files); without it
    crops are read from disk as they are drawn (``reader.py``), so memory does not grow with the corpus, and files
    are screened from their headers only (``manifest.py``). For files at the training rate both give the same items,
    bit for bit; files at another rate are resampled whole when preloaded and per crop otherwise. Files shorter than
    a crop are skipped, or with ``pad_short`` padded with trailing silence to one crop. ``report``: log what was
    skipped (the main process; the others would repeat it). ``mels``: one ``.npy`` path per file of ``files``, the
    acoustic-model mels of training from pairs (``data/pairs.py``), in the convention ``mel_source`` (None: ``mel``).
    """

    def __init__(self, files, mel: MelConfig, crop_frames: int, seed: int = 0, labels=None,
                 progress: bool = False, pad_short: bool = False, speed_perturb: float = 0.0,
                 preload: bool = True, report: bool = True, mels=None, mel_source: MelConfig | None = None):
        if mels is not None and (speed_perturb or pad_short):
            raise AudiodiffError("training from pairs takes the crops' mels from the acoustic model's, which describe "
                                 "the audio as recorded; set data.speed_perturb: 0 and data.pad_short: false")
        if not 0.0 <= speed_perturb < 0.5:
            raise AudiodiffError(f"data.speed_perturb must be in [0, 0.5), got {speed_perturb}; 0.1 means speed "
                                 f"factors 0.9-1.1, 0 turns it off")
        self.mel, self.crop_frames, self.seed = mel, crop_frames, seed
        self.speed_perturb, self.pad_short, self.preload = speed_perturb, pad_short, preload
        self.hop = mel.hop_length
        self.skipped: list[tuple[str, str]] = []
        self.clipping: list[str] = []
        self.audio, self.source, self.pairs = None, None, None
        self._mels = [] if mels is not None else None  # the mel path of each file kept
        count = len(files) + len(files.skipped) if isinstance(files, Manifest) else len(files)
        lengths = self._load(files, labels, progress, mels) if preload else self._index(files, labels, progress, mels)
        if report and self.skipped:
            distinct = list(dict.fromkeys(self.skipped))  # a manifest may list a file many times
            listing = "; ".join(f"{p} ({r})" for p, r in distinct[:LISTED])
            more = f"; and {len(distinct) - LISTED} more" if len(distinct) > LISTED else ""
            more += f" ({len(distinct)} distinct files)" if len(distinct) < len(self.skipped) else ""
            log.warning("skipped %d of %d files: %s%s", len(self.skipped), count, listing, more)
        if report and self.clipping:
            log.warning("kept %d file(s) that clip (over %.1f%% of samples at full scale): %s",
                        len(self.clipping), 100 * CLIP_SHARE, "; ".join(self.clipping))
        if not len(lengths):
            min_samples = crop_frames * self.hop
            raise AudiodiffError(
                f"none of the {count} audio files is usable (need at least {min_samples} samples at "
                f"{mel.sample_rate} Hz); first problem: {self.skipped[0][0]}: {self.skipped[0][1]}"
                if self.skipped else "no audio files given"
            )
        self.lengths = np.asarray(lengths, np.int64)  # [files] samples at the training rate, short ones padded
        # self.rates: [files] each file's own sample rate (below the training rate: no content above its Nyquist)
        self.frames = np.array([mel.num_frames(int(n)) for n in self.lengths])
        starts = self.frames - crop_frames + 1  # number of valid start frames per file
        self.weights = starts / starts.sum()
        self.cdf = np.cumsum(self.weights)  # what Generator.choice(p=weights) draws from, computed once
        self.cdf /= self.cdf[-1]
        if mels is not None:  # every mel's shape and length checked here, before training
            self.pairs = PairedMels(self._mels, self.lengths, mel, mel_source, preload=preload)

    def _screen(self, n: int) -> tuple[int, str | None]:
        """``(length, reason)`` for a file of ``n`` samples: padded to a crop (``pad_short``) or too short."""
        need = self.crop_frames * self.hop
        if self.pad_short and n < need:
            return need, None
        if n < need:
            sr = self.mel.sample_rate
            return n, f"shorter than a crop ({n / sr:.2f} s < {need / sr:.2f} s)"
        return n, None

    def _load(self, files, labels, progress, mels=None) -> list[int]:
        """Decode, screen and pad every file (``self.audio``: the reflect-padded signals)."""
        mel = self.mel
        paths = [files.path(i) for i in range(len(files))] if isinstance(files, Manifest) else files
        iterator = paths
        if progress:
            from tqdm import tqdm
            iterator = tqdm(paths, desc="loading audio", unit="file", leave=False)
        self.audio, self.labels, self._files, lengths, rates = [], [], [], [], []
        self.skipped = list(files.skipped) if isinstance(files, Manifest) else []  # what its scan left out
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
            if reason is None:
                n, reason = self._screen(len(audio))
                audio = np.pad(audio, (0, n - len(audio)))  # trailing silence: a whole short clip is a crop
            if reason is not None:
                self.skipped.append((str(path), reason))
                continue
            if np.mean(np.abs(audio) >= CLIP_LEVEL) > CLIP_SHARE:
                self.clipping.append(str(path))
            self.audio.append(np.pad(audio, mel.pad, mode="reflect"))
            self.labels.append(int(labels[i]) if labels is not None else -1)
            self._files.append(str(path))
            if mels is not None:
                self._mels.append(mels[i])
            rates.append(int(files.rates[i]) if isinstance(files, Manifest) else sf.info(str(path)).samplerate)
            lengths.append(len(audio))
        self.labels = np.array(self.labels, np.int64)
        self.rates = np.array(rates, np.int64)
        return lengths

    def _index(self, files, labels, progress, mels=None) -> list[int]:
        """Screen the files from their headers (``self.source``: reads crops from disk)."""
        manifest = files if isinstance(files, Manifest) else scan(files, progress=progress)
        rows = np.arange(len(files)) if isinstance(files, Manifest) else manifest.kept  # manifest row -> labels
        self.skipped = list(manifest.skipped)
        keep, lengths = [], []
        for i, n in enumerate(manifest.samples_at(self.mel.sample_rate)):
            n, reason = self._screen(int(n))
            if reason is None:
                keep.append(i)
                lengths.append(n)
            else:
                self.skipped.append((manifest.path(i), reason))
        self.source = DiskAudio(manifest.select(keep), self.mel.sample_rate)
        self.rates = self.source.manifest.rates
        rows = rows[keep]
        if mels is not None:
            self._mels = [mels[r] for r in rows]
        self.labels = np.asarray(labels, np.int64)[rows] if labels is not None else np.full(len(rows), -1)
        return lengths

    @property
    def num_files(self) -> int:
        return len(self.lengths)

    @property
    def files(self) -> list[str]:
        """The paths of the files crops are drawn from."""
        if self.audio is not None:
            return self._files
        return [self.source.manifest.path(i) for i in range(self.num_files)]

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum() / self.mel.sample_rate)

    def __len__(self) -> int:
        return 2**62  # items are drawn by index from an endless stream

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng((self.seed, index))
        f = int(self.cdf.searchsorted(rng.random(), side="right"))  # = rng.choice(files, p=self.weights)
        k = int(rng.integers(0, self.frames[f] - self.crop_frames + 1))
        n, hop = self.crop_frames, self.hop
        left = self.mel.pad[0]
        start, length = k * hop, self.mel.segment_length(n)
        segment = self._perturbed(f, rng, length) if self.speed_perturb else None  # drawn last: without it the
        if segment is None:  # stream of crops is unchanged
            segment = self._span(f, start, start + length)
        item = {
            "audio": torch.from_numpy(segment[left: left + n * hop].copy()),  # [N * hop]
            "segment": torch.from_numpy(segment.copy()),
            "label": torch.tensor(self.labels[f]),
        }
        if self.pairs is not None:
            item["mel"] = torch.from_numpy(self.pairs.crop(f, k, n))  # [n_mels, N], frames k .. k + N - 1
        return item

    def _span(self, f: int, a: int, b: int) -> np.ndarray:
        """Samples ``[a, b)`` of file ``f`` reflect-padded as the mel front end pads it (``mel.pad``)."""
        if self.audio is not None:
            return self.audio[f][a:b]
        left, n = self.mel.pad[0], int(self.lengths[f])
        if a - left >= 0 and b - left <= n:  # inside the file: no reflection
            return self._samples(f, a - left, b - left)
        idx = np.arange(a - left, b - left)
        idx = np.where(idx < 0, -idx, idx)
        idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        return self._samples(f, lo, hi)[idx - lo]

    def _samples(self, f: int, lo: int, hi: int) -> np.ndarray:
        """Samples ``[lo, hi)`` of file ``f`` read from disk, zero past its end (``pad_short``)."""
        real = int(self.source.lengths[f])
        x = self.source.target(f, lo, min(hi, real)) if lo < real else np.zeros(0, np.float32)
        return np.pad(x, (0, hi - lo - len(x))) if len(x) < hi - lo else x

    def _perturbed(self, f: int, rng: np.random.Generator, length: int, margin: int = 64) -> np.ndarray | None:
        """``length`` samples of file ``f`` played ``r`` times faster, from a random stretch of ``r`` times that
        (plus ``margin`` either side, cut after resampling so no filter edge reaches the crop); None when the file
        is too short for this factor (it keeps its plain crop)."""
        r = rng.uniform(1 - self.speed_perturb, 1 + self.speed_perturb)
        need = int(np.ceil(length * r)) + 2 * margin + 1
        padded = int(self.lengths[f]) + sum(self.mel.pad)
        if need > padded:
            return None
        a = int(rng.integers(0, padded - need + 1))
        sr = self.mel.sample_rate
        y = soxr.resample(self._span(f, a, a + need), sr * r, sr, quality="HQ")
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
