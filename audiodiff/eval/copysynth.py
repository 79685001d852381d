"""Copy-synthesis evaluation: mel of a held-out recording (the model's own preset), vocode, compare.

Also the Griffin-Lim floor (librosa, 32 iterations, from the same log-mel), so that every table has a baseline.
Summaries give the mean and a 95% confidence interval (normal approximation, 1.96 standard errors).
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch

from audiodiff import atomic
from audiodiff.audio.io import load_audio
from audiodiff.audio.mel import MelConfig, decompress
from audiodiff.data.files import find_audio_files, probe
from audiodiff.errors import AudiodiffError
from audiodiff.eval import metrics as M


def griffin_lim(mel: np.ndarray, cfg: MelConfig, n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Invert a log-mel ``[n_mels, F]`` of convention ``cfg`` with Griffin-Lim from a random phase drawn with
    ``seed``; returns ``[F * hop]``."""
    mag_mel = decompress(torch.from_numpy(np.asarray(mel, dtype=np.float64)), cfg.log).numpy()
    fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
    stft = librosa.feature.inverse.mel_to_stft(
        mag_mel, sr=cfg.sample_rate, n_fft=cfg.n_fft, power=1.0, fmin=cfg.fmin, fmax=fmax,
        htk=cfg.mel_scale == "htk", norm="slaney" if cfg.mel_norm == "slaney" else None,
    )
    if cfg.normalized:
        stft = stft * np.sqrt(np.sum(np.hanning(cfg.win_length + 1)[:-1] ** 2))
    # librosa centres frame i at i * hop; our frame i is centred at i * hop + n_fft / 2 - pad_left.
    shift = cfg.n_fft // 2 - cfg.pad[0]
    length = mel.shape[1] * cfg.hop_length
    y = librosa.griffinlim(stft, n_iter=n_iter, hop_length=cfg.hop_length, win_length=cfg.win_length,
                           center=True, random_state=seed, length=length - shift)
    return np.concatenate([np.zeros(shift, dtype=y.dtype), y])[:length]


def band_limit(audio: np.ndarray, sr: int, source_sr: int) -> np.ndarray:
    """``audio`` at ``sr`` limited to the band of a ``source_sr`` recording: resampled to ``source_sr`` and back
    with the resampler that brought the recording to ``sr`` (``load_audio``), so both lose the same band."""
    down = librosa.resample(audio, orig_sr=sr, target_sr=source_sr, res_type="soxr_hq")
    up = librosa.resample(down, orig_sr=source_sr, target_sr=sr, res_type="soxr_hq")[: len(audio)]
    return np.pad(up, (0, len(audio) - len(up))).astype(np.float32)


def summarise(rows: list[dict], keys) -> dict:
    out = {}
    for k in keys:
        vals = np.array([r[k] for r in rows if r.get(k) is not None and np.isfinite(r[k])], dtype=float)
        if len(vals):
            half = 1.96 * vals.std(ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
            out[k] = {"mean": float(vals.mean()), "ci95": float(half), "n": int(len(vals))}
    return out


def evaluate(vocoder, data: str | Path, *, steps: int | None = None, sampler: str | None = None,
             limit: int | None = 16, baseline: str | None = None, full: bool = True, seed: int = 0,
             match_bandwidth: bool = True, progress: bool = True) -> dict:
    """Copy-synthesis metrics over the first ``limit`` files (sorted) of ``data``; ``full=False`` computes only
    the fast spectral distances. Returns ``{"files": [...], "summary": {...}, "baseline": ...}``.

    A recording stored at a lower rate than the model's (16 kHz LibriSpeech for a 22.05 kHz vocoder) has nothing
    above its Nyquist frequency, and its mel (``fmax`` 8 kHz) says nothing about that band either. With
    ``match_bandwidth`` the outputs of such files are limited to the recording's band (:func:`band_limit`) before
    scoring, so that the distances measure what the mel determines; the report counts those files. ``seed``
    draws the sampler's noise and the baseline's initial phase, both random in what they score. Files that cannot
    be read are skipped and listed in ``report["skipped"]`` (``{"file", "reason"}``), as training skips them."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0):
        raise AudiodiffError(f"limit must be a whole number >= 0 (0 or None: every file), got {limit!r}")
    files = find_audio_files(data, hint="give a folder of recordings or a file list (.txt) to evaluate on")
    files = files[:limit] if limit else files
    sr, cfg = vocoder.sample_rate, vocoder.mel_config
    keys = M.METRIC_KEYS if full else ("reference_distance", "mrstft", "log_mel_l1")
    rows, base_rows, skipped, seconds, synth_time, limited = [], [], [], 0.0, 0.0, 0
    iterator = files
    if progress:
        from tqdm import tqdm
        iterator = tqdm(files, desc="eval", unit="file", leave=False)
    for path in iterator:
        ref, mel, reason = _read(vocoder, path)
        if reason is not None:
            skipped.append({"file": str(path), "reason": reason})
            continue
        t0 = time.perf_counter()
        est = vocoder(mel, steps=steps, sampler=sampler, seed=seed)
        synth_time += time.perf_counter() - t0
        seconds += len(ref) / sr
        source_sr = sf.info(str(path)).samplerate
        narrow = match_bandwidth and source_sr < sr

        def score(audio):
            return metrics_of(ref, band_limit(audio, sr, source_sr) if narrow else audio, sr, cfg, keys)

        limited += narrow
        rows.append({"file": str(path), **score(est)})
        if baseline == "griffinlim":
            base_rows.append({"file": str(path), **score(griffin_lim(mel, cfg, seed=seed))})
    if not rows:
        raise AudiodiffError(f"none of the {len(files)} files in {data} can be read; first: {skipped[0]['file']} "
                             f"({skipped[0]['reason']}); expected wav, flac, ogg or mp3 recordings")
    report = {"data": str(data), "files": rows, "skipped": skipped, "summary": summarise(rows, keys),
              "sampler": sampler or vocoder.sampler, "steps": steps or vocoder.steps,
              "refine": vocoder.refine, "refine_momentum": vocoder.refine_momentum, "precision": vocoder.precision,
              "audio_seconds": seconds, "synthesis_seconds": synth_time, "band_limited_files": int(limited)}
    if baseline:
        report["baseline"] = {"name": baseline, "files": base_rows, "summary": summarise(base_rows, keys)}
    return report


def _read(vocoder, path: Path) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """``(audio, mel, None)`` of a recording at the model's rate, or ``(None, None, why it can't be scored)``."""
    reason = probe(path)
    if reason is None:
        try:
            ref, _ = load_audio(path, vocoder.sample_rate)
            return ref, vocoder.mel(ref).cpu().numpy(), None
        except AudiodiffError as err:
            reason = str(err).removeprefix(f"{path}: ")
    return None, None, reason


def metrics_of(ref, est, sr, cfg: MelConfig, keys=M.METRIC_KEYS) -> dict:
    """The metrics of ``keys`` (every one, or the three fast spectral ones) of ``est`` against ``ref``. The log-mel
    distance is on the vocoder's own mel (its bands and fmax) in both sets."""
    mel = {"n_fft": cfg.n_fft, "hop": cfg.hop_length, "n_mels": cfg.n_mels, "fmax": cfg.fmax}
    if "mcd_db" in keys:
        return M.all_metrics(ref, est, sr, **mel)
    return {"reference_distance": M.reference_distance(ref, est), "mrstft": M.mrstft_distance(ref, est),
            "log_mel_l1": M.log_mel_l1(ref, est, sr, **mel)}


def write_report(report: dict, out: str | Path) -> None:
    """``out`` (JSON) plus a per-file CSV beside it (``.csv``), each written atomically (``atomic.py``)."""
    out = Path(out)
    atomic.write_text(out, json.dumps(report, indent=2) + "\n", "eval report")
    rows = report["files"] + [dict(r, file=f"[{report['baseline']['name']}] {r['file']}")
                              for r in report.get("baseline", {}).get("files", [])]
    if rows:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(out.with_suffix(".csv"), text.getvalue(), "eval report")


def format_summary(report: dict) -> str:
    lines = [f"{'metric':<20}{'audiodiff':>22}" + (f"{report['baseline']['name']:>22}" if "baseline" in report
                                                     else "")]
    for k, v in report["summary"].items():
        line = f"{k:<20}{v['mean']:>14.4f} ± {v['ci95']:<6.3f}"
        if "baseline" in report and k in report["baseline"]["summary"]:
            b = report["baseline"]["summary"][k]
            line += f"{b['mean']:>14.4f} ± {b['ci95']:<6.3f}"
        lines.append(line)
    if report.get("skipped"):
        lines.append(f"skipped {len(report['skipped'])} of {len(report['skipped']) + len(report['files'])} files: "
                     + "; ".join(f"{s['file']} ({s['reason']})" for s in report["skipped"]))
    if report.get("band_limited_files"):
        lines.append(f"{report['band_limited_files']} file(s) recorded below the model's rate: outputs limited to "
                     f"their band (--full-band to score the whole band)")
    if "mcd_db" in report["summary"]:
        missing = [k for k, ok in M.optional_metrics_available().items() if not ok]
        if missing:
            lines.append(f"skipped {', '.join(missing)}: not installed (pip install 'audiodiff[metrics]')")
    return "\n".join(lines)
