"""Objective metrics for vocoder copy-synthesis: a reference waveform against its resynthesis.

Every function takes 1-D float arrays, reference first and estimate second, both at sample rate ``sr``;
both are trimmed to the shorter length first. Lower is better unless a docstring says otherwise.

- ``reference_distance``: the project's reference-table distance: mean over three STFT resolutions of spectral
  convergence plus mean |log(|STFT| + 1e-7)| difference.
- ``mrstft_distance``: the multi-resolution STFT loss of Parallel WaveGAN (Yamamoto et al., 2020, Eqs. 4-6,
  resolutions of their Table 1), with its reference implementation's details: reflect padding and magnitudes
  ``sqrt(max(|STFT|^2, 1e-7))`` (kan-bayashi/ParallelWaveGAN, ``losses/stft_loss.py``).
- ``log_mel_l1``: L1 between log magnitude mel spectra, as in HiFi-GAN's "Mel-Spec. error" (Kong et al., 2020).
- ``mel_cepstral_distortion``: MCD (Kubichek, 1993) in dB as vocoder papers compute it: SPTK mel-cepstra
  c1..c24 of WORLD spectral envelopes (``pyworld``, ``pysptk``) at 16 kHz, speech frames paired one to one.
- ``f0_metrics``: F0 RMSE in cents and voiced/unvoiced error from pYIN (Mauch & Dixon, 2014).
- ``pesq_wb`` / ``stoi``: ITU-T P.862.2 wide-band PESQ and STOI (Taal et al., 2011) through the optional
  ``pesq`` and ``pystoi`` packages (``pip install audiodiff[metrics]``); higher is better; None when missing.
- ``eval/pitch.py``: periodicity RMSE and V/UV F1 from CREPE, as BigVGAN reports them.
- ``eval/mos.py``: DNSMOS (P.835 SIG/BAK/OVRL, P.808) and DistillMOS of the estimate and, under ``ref_`` keys, of
  the recording, so that a report shows the gap to the recording (non-intrusive; higher is better).

MCD, the pitch figures and the MOS scores need the ``metrics`` extra too; each is None when its package is missing.
"""

from __future__ import annotations

import importlib
import math

import librosa
import numpy as np

from audiodiff.eval.mos import MOS_KEYS, mos_available, mos_scores
from audiodiff.eval.pitch import PITCH_KEYS, periodicity_metrics, pitch_available

# (n_fft, hop_length, win_length)
REFERENCE_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))
PWG_RESOLUTIONS = ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))
LOG_STFT_FLOOR = 1e-7
LOG_MEL_FLOOR = 1e-5
METRIC_KEYS = ("reference_distance", "mrstft", "log_mel_l1", "mcd_db", "f0_rmse_cents", "vuv_error",
               *PITCH_KEYS, "pesq_wb", "stoi", *MOS_KEYS,
               *(f"ref_{k}" for k in MOS_KEYS))  # the keys of all_metrics, in order
MCD_SCALE = 10.0 * math.sqrt(2.0) / math.log(10.0)  # (10 / ln 10) * sqrt(2) dB per natural-log cepstral unit
MCD_ORDER = 24  # mel-cepstral order: c1..c24 compared, c0 (log gain) excluded
MCD_FRAME_MS = 5.0  # WORLD's default frame period
MCD_RANGE_DB = 40.0  # speech frames: reference envelope power within this many dB of its loudest frame
MCD_SR = 16000  # MCD's rate: it covers 0-8 kHz, the band of a mel with fmax 8 kHz (mel_cepstral_distortion)


def _trim(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, est = np.asarray(ref, dtype=np.float64), np.asarray(est, dtype=np.float64)
    if ref.ndim != 1 or est.ndim != 1:
        raise ValueError(f"metrics take 1-D waveforms, got shapes {ref.shape} and {est.shape}; pass one channel")
    n = min(len(ref), len(est))
    if n == 0:
        raise ValueError("a waveform is empty; pass at least one sample of reference and estimate")
    return ref[:n], est[:n]


def stft_terms(
    ref: np.ndarray, est: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None,
    style: str = "reference",
) -> tuple[float, float]:
    """(spectral convergence, mean |log-magnitude difference|) at one STFT resolution.

    ``style="reference"``: librosa.stft defaults (Hann, centred, zero padding), log(|S| + 1e-7), SC on |S|.
    ``style="pwg"``: Parallel WaveGAN: reflect padding, |S| = sqrt(max(|S|^2, 1e-7)) for both SC and log.
    """
    if style not in ("reference", "pwg"):
        raise ValueError(f"unknown style {style!r}; use 'reference' or 'pwg'")
    ref, est = _trim(ref, est)
    pad_mode = "reflect" if style == "pwg" else "constant"
    y, x = (np.abs(librosa.stft(s, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                window="hann", pad_mode=pad_mode)) for s in (ref, est))  # [F, frames]
    if style == "pwg":
        y, x = np.sqrt(np.maximum(y**2, LOG_STFT_FLOOR)), np.sqrt(np.maximum(x**2, LOG_STFT_FLOOR))
        log_y, log_x = np.log(y), np.log(x)
    else:
        log_y, log_x = np.log(y + LOG_STFT_FLOOR), np.log(x + LOG_STFT_FLOOR)
    sc = np.linalg.norm(y - x) / np.linalg.norm(y)  # Frobenius norms; PWG Eq. 5
    return float(sc), float(np.mean(np.abs(log_y - log_x)))  # PWG Eq. 6


def _multi_resolution(ref: np.ndarray, est: np.ndarray, resolutions, style: str) -> float:
    return float(np.mean([sum(stft_terms(ref, est, *r, style=style)) for r in resolutions]))


def reference_distance(ref: np.ndarray, est: np.ndarray) -> float:
    """Reference-table distance: mean over 512/128, 1024/256, 2048/512 of SC + mean |log(|S|+1e-7) diff|."""
    return _multi_resolution(ref, est, REFERENCE_RESOLUTIONS, "reference")


def mrstft_distance(ref: np.ndarray, est: np.ndarray) -> float:
    """Parallel WaveGAN multi-resolution STFT loss (SC + log-magnitude), mean over its three resolutions."""
    return _multi_resolution(ref, est, PWG_RESOLUTIONS, "pwg")


def _log_mel(x: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int, fmax: float | None) -> np.ndarray:
    # magnitude (power=1) Slaney mel, natural log with an additive floor: [n_mels, frames]
    mel = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmax=fmax,
                                         power=1.0, htk=False, norm="slaney")
    return np.log(mel + LOG_MEL_FLOOR)


def log_mel_l1(
    ref: np.ndarray, est: np.ndarray, sr: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80,
    fmax: float | None = None,
) -> float:
    """Mean |log(mel_ref + 1e-5) - log(mel_est + 1e-5)| on Slaney magnitude mel spectra."""
    ref, est = _trim(ref, est)
    return float(np.mean(np.abs(_log_mel(ref, sr, n_fft, hop, n_mels, fmax) - _log_mel(est, sr, n_fft, hop,
                                                                                          n_mels, fmax))))


def mcd_from_cepstra(c_ref: np.ndarray, c_est: np.ndarray) -> float:
    """MCD in dB from aligned cepstra of shape [frames, 1 + D] (column 0 is c0, excluded).

    MCD = (10 sqrt(2) / ln 10) * mean_t sqrt(sum_{d=1..D} (c_ref[t, d] - c_est[t, d])^2).
    """
    c_ref, c_est = np.asarray(c_ref, dtype=np.float64), np.asarray(c_est, dtype=np.float64)
    if c_ref.shape != c_est.shape or c_ref.ndim != 2:
        raise ValueError(f"cepstra must both be [frames, 1 + D], got {c_ref.shape} and {c_est.shape}")
    diff = c_ref[:, 1:] - c_est[:, 1:]
    return float(MCD_SCALE * np.mean(np.sqrt(np.sum(diff**2, axis=1))))


def world_mel_cepstrum(audio: np.ndarray, sr: int, order: int = MCD_ORDER,
                       alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SPTK mel-cepstrum ``[frames, 1 + order]`` of ``audio`` and each frame's envelope power in dB ``[frames]``.

    WORLD (Morise et al., 2016) through ``pyworld``: F0 by Dio refined by StoneMask, then the CheapTrick power
    spectral envelope every 5 ms; ``pysptk.sp2mc`` turns each envelope into a mel-cepstrum of ``order`` with the
    all-pass constant ``alpha`` (default ``pysptk.util.mcepalpha(sr)``: 0.41 at 16 kHz, 0.455 at 22.05 kHz).
    """
    pyworld, pysptk = _sptk()
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, t = pyworld.dio(x, sr, frame_period=MCD_FRAME_MS)
    f0 = pyworld.stonemask(x, f0, t, sr)
    sp = pyworld.cheaptrick(x, f0, t, sr)  # [frames, n_fft / 2 + 1] power
    alpha = pysptk.util.mcepalpha(sr) if alpha is None else alpha
    return pysptk.sp2mc(sp, order, alpha), 10.0 * np.log10(np.mean(sp, axis=1))


def mel_cepstral_distortion(ref: np.ndarray, est: np.ndarray, sr: int, order: int = MCD_ORDER,
                            alpha: float | None = None, range_db: float = MCD_RANGE_DB) -> float | None:
    """MCD in dB on the scale vocoder papers report (single digits for a usable vocoder on speech); None without
    the ``metrics`` extra (``pyworld``, ``pysptk``). Replaces the filterbank-cepstrum MCD (13-63 dB, comparable
    with nothing published) under the same key, ``mcd_db``; ``log_mel_l1`` already measures the mel spectrum.

    Definition: both signals resampled to 16 kHz (soxr_hq, the project's resampler); mel-cepstra c1..c{order}
    (c0, the log gain, excluded) of the WORLD CheapTrick envelope of each (:func:`world_mel_cepstrum`: 5 ms
    frames, order 24, alpha 0.41); MCD = (10 / ln 10) * mean_t sqrt(2 sum_d (c_ref[t, d] - c_est[t, d])^2), over
    the speech frames: those whose reference envelope power lies within ``range_db`` (40) dB of the reference's
    loudest frame, so that leading and trailing silence does not weigh in. Frames are paired one to one, without
    DTW: copy-synthesis output is time-aligned with its recording (the mel has the recording's frames); do not use
    this on unaligned audio.

    Why 16 kHz: the log envelope of a band that one signal leaves empty is unbounded below, so at 22.05 kHz the
    8-11 kHz band, which a mel with fmax 8 kHz (the default preset) does not determine and Griffin-Lim leaves
    empty, would dominate the distance (about 20 dB, against 3-5 dB for Griffin-Lim over 0-8 kHz).
    """
    if not (_importable("pyworld") and _importable("pysptk")):
        return None
    ref, est = _trim(ref, est)
    if sr != MCD_SR:
        ref, est = (librosa.resample(s, orig_sr=sr, target_sr=MCD_SR, res_type="soxr_hq") for s in (ref, est))
        sr = MCD_SR
    (c_ref, level), (c_est, _) = (world_mel_cepstrum(s, sr, order, alpha) for s in (ref, est))
    speech = level >= level.max() - range_db
    return mcd_from_cepstra(c_ref[speech], c_est[speech])


def _sptk():
    import warnings

    with warnings.catch_warnings():  # both import setuptools' deprecated pkg_resources (hence setuptools<81)
        warnings.simplefilter("ignore")
        return importlib.import_module("pyworld"), importlib.import_module("pysptk")


F0_RANGE = (65.0, 500.0)  # pYIN's search range in Hz for the F0 metrics: low male to high female speech


def f0_track(audio: np.ndarray, sr: int, hop: int = 256, fmin: float = F0_RANGE[0],
             fmax: float = F0_RANGE[1]) -> tuple[np.ndarray, np.ndarray]:
    """pYIN's F0 (nan where unvoiced) and voiced flags of ``audio``, one per ``hop`` samples."""
    f0, voiced, _ = librosa.pyin(np.asarray(audio, dtype=np.float64), fmin=fmin, fmax=fmax, sr=sr, hop_length=hop)
    return f0, voiced


def cents_rmse(f_ref: np.ndarray, f_est: np.ndarray, frames: np.ndarray) -> float:
    """RMS of ``f_est / f_ref`` in cents over the boolean ``frames``; nan if there are none."""
    if not frames.any():
        return float("nan")
    return float(np.sqrt(np.mean((1200.0 * np.log2(f_est[frames] / f_ref[frames])) ** 2)))


def f0_metrics(
    ref: np.ndarray, est: np.ndarray, sr: int, fmin: float = F0_RANGE[0], fmax: float = F0_RANGE[1], hop: int = 256,
) -> dict[str, float]:
    """pYIN F0 on both: ``f0_rmse_cents`` over frames voiced in both (nan if none), ``vuv_error`` rate.

    pYIN's F0 lies on its 10-cent grid (resolution 0.1 semitone), which bounds the RMSE's precision.
    """
    ref, est = _trim(ref, est)
    (f_ref, v_ref), (f_est, v_est) = (f0_track(s, sr, hop, fmin, fmax) for s in (ref, est))
    both = v_ref & v_est & np.isfinite(f_ref) & np.isfinite(f_est)
    return {"f0_rmse_cents": cents_rmse(f_ref, f_est, both), "vuv_error": float(np.mean(v_ref != v_est))}


def optional_metrics_available() -> dict[str, bool]:
    """Which optional metrics can run: {"pesq", "stoi", "mcd", "pitch", "dnsmos", "distillmos"} to bool."""
    return {"pesq": _importable("pesq"), "stoi": _importable("pystoi"),
            "mcd": _importable("pyworld") and _importable("pysptk"), "pitch": pitch_available(), **mos_available()}


def _importable(name: str) -> bool:
    try:  # a real import, not find_spec: an installed package whose C extension fails to load counts as missing
        if name in ("pyworld", "pysptk"):
            _sptk()
        else:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int) -> float | None:
    """Wide-band PESQ (MOS-LQO, higher is better) at 16 kHz; None when ``pesq`` is not installed."""
    if not optional_metrics_available()["pesq"]:
        return None
    ref, est = _trim(ref, est)
    if sr != 16000:
        ref, est = (librosa.resample(s, orig_sr=sr, target_sr=16000) for s in (ref, est))
    return float(importlib.import_module("pesq").pesq(16000, ref, est, "wb"))


def stoi(ref: np.ndarray, est: np.ndarray, sr: int) -> float | None:
    """STOI (0..1, higher is better); None when ``pystoi`` is not installed. pystoi resamples to 10 kHz."""
    if not optional_metrics_available()["stoi"]:
        return None
    ref, est = _trim(ref, est)
    return float(importlib.import_module("pystoi").stoi(ref, est, sr, extended=False))


def all_metrics(ref: np.ndarray, est: np.ndarray, sr: int, **mel) -> dict[str, float | None]:
    """Every metric above under stable keys (see ``METRIC_KEYS``); ``mel`` (n_fft, hop, n_mels, fmax) sets the
    log-mel distance's spectrogram, so that it can be the vocoder's own mel. The MOS scores come twice: of
    ``est`` (``dnsmos_ovrl``, ...) and of the recording ``ref`` (``ref_dnsmos_ovrl``, ...)."""
    return {
        "reference_distance": reference_distance(ref, est),
        "mrstft": mrstft_distance(ref, est),
        "log_mel_l1": log_mel_l1(ref, est, sr, **mel),
        "mcd_db": mel_cepstral_distortion(ref, est, sr),
        **f0_metrics(ref, est, sr),
        **periodicity_metrics(ref, est, sr),
        "pesq_wb": pesq_wb(ref, est, sr),
        "stoi": stoi(ref, est, sr),
        **mos_scores(est, sr),
        **{f"ref_{k}": v for k, v in mos_scores(ref, sr).items()},
    }
