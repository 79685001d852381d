"""Audio file I/O: load anything libsndfile reads (wav, flac, ogg, mp3), mix to mono, resample, save.

Resampling uses soxr through librosa (``res_type="soxr_hq"``), a maintained band-limited resampler.
"""

from __future__ import annotations

import os
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

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
    """Write mono ``audio [T]`` (numpy or torch) to ``path``; ``subtype`` "PCM_16" or "FLOAT"."""
    path = Path(path)
    audio = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float32)
    audio = np.clip(audio.reshape(-1), -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sample_rate, subtype=subtype)
    return path
