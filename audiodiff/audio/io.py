"""Audio file I/O: load anything libsndfile reads (wav, flac, ogg, mp3), mix to mono, resample, save (atomically).

Resampling uses soxr through librosa (``res_type="soxr_hq"``), a maintained band-limited resampler.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from audiodiff import atomic
from audiodiff.errors import AudiodiffError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 in [-1, 1], resampled to ``sample_rate`` (kept as is when None).

    Returns ``(audio [T], rate)``. Raises ``AudiodiffError`` for a missing, empty or non-audio file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudiodiffError(f"{path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise AudiodiffError(f"{path}: the file is empty (0 bytes); expected wav, flac, ogg or mp3 audio")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        detail = str(err).split("\n")[0]
        raise AudiodiffError(
            f"{path}: not a readable audio file ({detail}); expected wav, flac, ogg or mp3"
        ) from None
    if audio.shape[0] == 0:
        raise AudiodiffError(f"{path}: the file holds no samples; expected at least one audio frame")
    audio = audio.mean(axis=1)  # [T, C] -> [T]
    if sample_rate is not None and rate != sample_rate:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
        rate = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def save_audio(path: str | os.PathLike, audio, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write mono ``audio [T]`` (numpy or torch) to ``path`` atomically (``atomic.py``), in the format its extension
    names; ``subtype`` "PCM_16" or "FLOAT"."""
    path = Path(path)
    fmt = {"AIF": "AIFF"}.get(path.suffix[1:].upper(), path.suffix[1:].upper())
    if fmt not in sf.available_formats():
        raise AudiodiffError(f"{path}: no audio format has the extension {path.suffix!r}; use .wav or .flac")
    audio = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float32)
    audio = np.clip(audio.reshape(-1), -1.0, 1.0)
    buf = io.BytesIO()  # in memory first: libsndfile reports a full disk as "System error", without the errno
    sf.write(buf, audio, sample_rate, subtype=subtype, format=fmt)
    return atomic.write_bytes(path, buf.getbuffer(), "audio file")


def save_mel(path: str | os.PathLike, mel: np.ndarray) -> Path:
    """Write a log-mel ``[n_mels, frames]`` to ``path`` (exactly that name) as ``.npy``, atomically."""
    buf = io.BytesIO()
    np.save(buf, mel)
    return atomic.write_bytes(path, buf.getbuffer(), "mel")
