"""Training from pairs: each audio file with a mel that an acoustic model made of it (teacher-forced, so aligned with
the audio), a crop's conditioning then taken from that mel instead of the mel of the audio (``data.pairs``).

Layout. The mel of ``DATA/sub/name.wav`` is ``DATA/sub/name.npy`` beside it, or with ``data.mel_path: MELS`` the file
``MELS/sub/name.npy`` (the audio's path under its data folder, mirrored), else ``MELS/name.npy`` (Coqui TTS and NeMo
write one flat folder: docs/interop.md). A manifest's optional ``mel`` column names each row's mel instead
(``manifest.py``). A mel is ``[n_mels, frames]``; ``[frames, n_mels]`` (what ESPnet writes) is accepted where the
shape says so unambiguously, and a leading batch axis of one is dropped.

Convention. A mel is in the recipe's mel convention, or in that of the preset ``data.mel_preset``, converted to the
recipe's when read (``audio/convert.py``: exact for value conventions, approximate for band layouts and framing; the
accuracy table is in docs/interop.md). A whole file's mel is converted, so that the frames of a crop are those of the
converted file and a preloaded and a lazily read data set give the same items.

Alignment. Frame ``f`` of a mel describes samples ``[f hop, (f + 1) hop)`` of its audio, as the recipe's own mel does:
an acoustic model on a front end with the recipe's hop and rate makes ``ceil(T / hop)`` frames, give or take one for
its padding. A mel whose frame count is more than ``TOLERANCE`` frames from what its front end makes of the audio is
refused before training, with one line naming the file, both lengths and the likely cause (another hop or sample
rate, or a mel of another file). Within it, the mel is cut, or its last frame repeated, to the recipe's frame count
``MelConfig.num_frames(T)``: the crops drawn are then those of audio-only training (``dataset.py``), and the crop of
frames ``k .. k + N - 1`` is conditioned on frames ``k .. k + N - 1`` of the file's mel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from audiodiff.audio.mel import MelConfig
from audiodiff.errors import AudiodiffError

TOLERANCE = 2  # frames a mel may differ from its front end's count for its audio (padding conventions)
MEL_SUFFIX = ".npy"
LISTED = 3  # files without a mel named in the error


def mel_paths(files, mel_dir: str | os.PathLike | None = None, roots=()) -> list[str]:
    """The mel file of each audio file of ``files``: beside it (``name.npy``), or under ``mel_dir`` at the audio's
    path relative to the first of ``roots`` it lies under, else at its bare name (the flat folder TTS tools write).
    Every one must exist."""
    out = []
    roots = [Path(r).expanduser().absolute() for r in roots if r]
    for f in files:
        audio = Path(f).absolute()
        if mel_dir is None:
            out.append(str(audio.with_suffix(MEL_SUFFIX)))
            continue
        rel = next((audio.relative_to(r) for r in roots if audio.is_relative_to(r)), Path(audio.name))
        folder = Path(mel_dir).expanduser().absolute()
        mirrored, flat = folder / rel.with_suffix(MEL_SUFFIX), folder / (audio.stem + MEL_SUFFIX)
        out.append(str(flat if not mirrored.is_file() and flat.is_file() else mirrored))
    check_exist(files, out, mel_dir)
    return out


def check_exist(files, mels, mel_dir=None) -> None:
    """Refuse, in one line, audio files whose mel file is missing (``mels[i]`` is ``""`` or no file)."""
    missing = [(str(a), m) for a, m in zip(files, mels) if not m or not os.path.isfile(m)]
    if not missing:
        return
    first = "; ".join(f"{a} (expected {m})" if m else f"{a} (no mel in the manifest)" for a, m in missing[:LISTED])
    where = f"in {mel_dir}" if mel_dir is not None else "beside each audio file (or set data.mel_path to their folder)"
    raise AudiodiffError(f"data.pairs: {len(missing)} of {len(mels)} audio files have no mel file: {first}; put "
                         f"each acoustic-model mel {where} as NAME.npy (docs/interop.md)")


def oriented(arr: np.ndarray, n_mels: int, path: str) -> tuple[np.ndarray, bool]:
    """``(arr as [n_mels, frames] (a view), whether it was stored [frames, n_mels])``; other shapes are refused."""
    shape = tuple(arr.shape)
    if arr.ndim == 3 and shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2 and arr.shape[0] == n_mels:
        return arr, False
    if arr.ndim == 2 and arr.shape[1] == n_mels:  # ESPnet's [frames, bands]
        return arr.T, True
    raise AudiodiffError(f"{path}: mel of shape {shape}; expected [{n_mels}, frames] (or [frames, {n_mels}]) in the "
                         f"convention of the mel it is read as (data.mel_preset, else the recipe's mel section)")


def check_frames(path: str, frames: int, samples: int, source: MelConfig, rate: int) -> None:
    """Refuse a mel of ``frames`` frames for ``samples`` samples at ``rate`` Hz whose front end ``source`` makes more
    than ``TOLERANCE`` frames more or fewer of that audio."""
    expected = source.num_frames(round(samples * source.sample_rate / rate))
    if abs(frames - expected) <= TOLERANCE:
        return
    per_frame = samples * source.sample_rate / rate / max(frames, 1)
    raise AudiodiffError(
        f"{path}: the mel has {frames} frames but its audio ({samples} samples at {rate} Hz) makes {expected} at hop "
        f"{source.hop_length} and {source.sample_rate} Hz (here {per_frame:.0f} samples a frame); the acoustic model "
        f"likely used another hop or sample rate (set data.mel_preset, or the recipe's mel, to its front end) or the "
        f"mel is of another file")


def fit(mel: np.ndarray, frames: int) -> np.ndarray:
    """``mel [n_mels, F]`` cut, or its last frame repeated, to ``[n_mels, frames]`` (float32)."""
    idx = np.minimum(np.arange(frames), mel.shape[-1] - 1)
    return np.ascontiguousarray(mel[:, idx] if mel.shape[-1] != frames else mel, dtype=np.float32)


class PairedMels:
    """The mels of a data set's files, read as the recipe's convention ``mel`` at its frame count for each file's
    ``lengths[i]`` samples (at ``mel.sample_rate``); ``source``: their own convention (None: the recipe's).
    ``preload`` reads (and converts) every mel once; otherwise each crop reads its file's mel (mapped, and only its
    frames, when no conversion is needed). Every mel's shape and frame count is checked when this is built."""

    def __init__(self, paths, lengths, mel: MelConfig, source: MelConfig | None = None, preload: bool = True):
        from audiodiff.audio.convert import band_mapping, same_layout

        self.paths, self.mel = [str(p) for p in paths], mel
        self.source = source if source is not None else mel
        self.converts = self.source != mel
        self.mapping = band_mapping(self.source, mel) if self.converts and not same_layout(self.source, mel) else None
        self.frames = np.array([mel.num_frames(int(n)) for n in lengths], np.int64)  # [files] the recipe's count
        self.raw_frames = []  # [files] the stored mel's frame count
        self.cache = [] if preload else None
        for path, n in zip(self.paths, lengths):
            arr, _ = oriented(self._open(path, mmap=True), self.source.n_mels, path)
            check_frames(path, arr.shape[-1], int(n), self.source, mel.sample_rate)
            self.raw_frames.append(arr.shape[-1])
        if preload:
            self.cache = [self._whole(i) for i in range(len(self.paths))]

    @staticmethod
    def _open(path: str, mmap: bool) -> np.ndarray:
        from audiodiff.inference.files import load_mel

        arr = load_mel(Path(path), mmap=mmap)
        if not np.issubdtype(arr.dtype, np.floating):
            raise AudiodiffError(f"{path}: mel has dtype {arr.dtype}; expected float log-mel values")
        return arr

    def _whole(self, f: int) -> np.ndarray:
        """File ``f``'s mel ``[n_mels, frames[f]]`` in the recipe's convention."""
        path = self.paths[f]
        arr, _ = oriented(self._open(path, mmap=False), self.source.n_mels, path)
        if not np.isfinite(arr).all():
            raise AudiodiffError(f"{path}: the mel holds NaN or infinite values; dump it again from the acoustic model")
        if self.converts:
            from audiodiff.audio.convert import convert_mel

            arr = convert_mel(np.asarray(arr, np.float32), self.source, self.mel, mapping=self.mapping)
        return fit(arr, int(self.frames[f]))

    def crop(self, f: int, k: int, n: int) -> np.ndarray:
        """Frames ``k .. k + n - 1`` of file ``f``'s mel, ``[n_mels, n]`` float32."""
        if self.cache is not None:
            return self.cache[f][:, k: k + n].copy()
        if self.converts:
            return self._whole(f)[:, k: k + n].copy()
        path = self.paths[f]
        arr, _ = oriented(self._open(path, mmap=True), self.source.n_mels, path)
        last = min(int(self.frames[f]), self.raw_frames[f]) - 1  # frames past it repeat it (``fit``)
        idx = np.minimum(np.arange(k, k + n), last)
        out = np.ascontiguousarray(arr[:, idx], dtype=np.float32)
        if not np.isfinite(out).all():
            raise AudiodiffError(f"{path}: the mel holds NaN or infinite values; dump it again from the acoustic model")
        return out
