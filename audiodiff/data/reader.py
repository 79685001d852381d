"""Reading stretches of audio files at the training rate without decoding whole files: the lazy data set's source.

``DiskAudio.target(f, lo, hi)`` returns samples ``lo .. hi - 1`` of file ``f`` as ``audio.io.load_audio`` would
give them at the training rate: mono (channels averaged), float32. WAV, FLAC and AIFF are read by seeking
(libsndfile decodes FLAC from the nearest seek point: the samples are those of a whole-file read, bit for bit).
Compressed formats whose seeking is not sample-exact (ogg, mp3) are decoded whole, once, into a least-recently-used
cache of ``cache_mb`` per process.

A file at another sample rate is resampled on the fly: the stretch is read with ``MARGIN`` samples either side,
resampled with soxr (the resampler ``load_audio`` uses) and cut, so no filter edge reaches the samples returned.
The stretch starts on a sample that the source and target grids share (every 320 source samples from 16 kHz to
22.05 kHz), so the samples returned are those of a whole-file resampling up to soxr's rounding.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict

import numpy as np
import soundfile as sf
import soxr

from audiodiff.errors import AudiodiffError

SEEKABLE = (".wav", ".flac", ".aiff", ".aif")
MARGIN = 64  # source samples read beyond each end of a resampled stretch
MAX_PERIOD = 4096  # rates whose common grid is sparser than this start where they may (< half a sample off)


class DiskAudio:
    """Files of a ``Manifest`` read in stretches at ``rate`` Hz; holds no audio but the decode cache."""

    def __init__(self, manifest, rate: int, cache_mb: float = 256.0):
        self.manifest, self.rate = manifest, rate
        self.lengths = manifest.samples_at(rate)  # [files] samples at the training rate
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached = 0

    def target(self, f: int, lo: int, hi: int) -> np.ndarray:
        """Samples ``[lo, hi)`` of file ``f`` at the training rate, ``0 <= lo < hi <= lengths[f]``."""
        native = int(self.manifest.rates[f])
        if native == self.rate:
            return self._native(f, lo, hi)
        n_x = int(self.manifest.frames[f])
        q = native / self.rate
        period = native // math.gcd(native, self.rate)  # source steps between samples the two grids share
        xs = max(0, int(lo * q) - MARGIN)
        if period <= MAX_PERIOD:  # start on a shared sample, so the output grid is the whole-file one
            xs -= xs % period
        xe = min(n_x, int(np.ceil(hi * q)) + MARGIN)
        y = soxr.resample(self._native(f, xs, xe), native, self.rate, quality="HQ")
        off = int(round(lo - xs / q))  # output j lies at time xs / native + j / rate
        out = y[off: off + hi - lo]
        if len(out) < hi - lo:  # the last samples of the file (ceil of the resampled length)
            out = np.pad(out, (0, hi - lo - len(out)))
        return np.ascontiguousarray(out, dtype=np.float32)

    def _native(self, f: int, start: int, stop: int) -> np.ndarray:
        path = self.manifest.path(f)
        if os.path.splitext(path)[1].lower() not in SEEKABLE:
            return self._decoded(f, path)[start:stop]
        try:
            with sf.SoundFile(path) as fh:
                fh.seek(start)
                x = fh.read(stop - start, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise AudiodiffError(f"{path}: cannot be read at sample {start} ({str(err).splitlines()[0]}); remove "
                                 f"it from the manifest or the folder (or restore it) and resume") from None
        if len(x) < stop - start:
            raise AudiodiffError(f"{path}: holds {start + len(x)} samples, the manifest says "
                                 f"{self.manifest.frames[f]}; rebuild the manifest (audiodiff data manifest), or "
                                 f"remove the file, and resume")
        return x.mean(axis=1)  # [T, C] -> [T], as load_audio mixes down

    def _decoded(self, f: int, path: str) -> np.ndarray:
        x = self._cache.get(f)
        if x is not None:
            self._cache.move_to_end(f)
            return x
        x = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
        self._cache[f] = x
        self._cached += x.nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes
        return x
