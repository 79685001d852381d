"""Copy-synthesis evaluation: mel of a held-out recording (the model's own preset), vocode, compare.

Several systems are scored on the same files: models, the Griffin-Lim floor (librosa, 32 iterations, from the same
log-mel) and the refinement's own baseline (``audio/refine.py`` started from noise), so that every table has a
baseline and an ablation is one run. Summaries give the mean and a 95% confidence interval (normal approximation,
1.96 standard errors); the difference between two systems is paired, file by file, with a Student-t interval.
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
from audiodiff.audio.mel import MelConfig, MelSpectrogram, decompress
from audiodiff.audio.refine import ITERATIONS as REFINE_ITERATIONS, refine
from audiodiff.data.files import find_audio_files, probe
from audiodiff.errors import AudiodiffError
from audiodiff.eval import metrics as M


def griffin_lim(mel: np.ndarray, cfg: MelConfig, n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Invert a log-mel ``[n_mels, F]`` of convention ``cfg`` with Griffin-Lim from a random phase drawn with
    ``seed``; returns ``[F * hop]``."""
    mag_mel = decompress(torch.from_numpy(np.asarray(mel, dtype=np.float64)), cfg).numpy()
    fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
    stft = librosa.feature.inverse.mel_to_stft(
        mag_mel, sr=cfg.sample_rate, n_fft=cfg.n_fft, power=cfg.mag_power, fmin=cfg.fmin, fmax=fmax,
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


BASELINES = ("griffinlim", "refine")  # systems that need no network: they invert the first model's mel


def evaluate(vocoder, data: str | Path, *, steps: int | None = None, sampler: str | None = None,
             limit: int | None = 16, baseline: str | None = None, full: bool = True, seed: int = 0,
             match_bandwidth: bool = True, progress: bool = True) -> dict:
    """Copy-synthesis metrics of one vocoder (and optionally one baseline): :func:`evaluate_systems` with a
    single model named "audiodiff", the baseline's rows and summary also under ``report["baseline"]``."""
    report = evaluate_systems({"audiodiff": vocoder}, data, baselines=[baseline] if baseline else [], steps=steps,
                              sampler=sampler, limit=limit, full=full, seed=seed, match_bandwidth=match_bandwidth,
                              progress=progress)
    if baseline:
        base = next(system for system in report["systems"] if system["name"] == baseline)
        report["baseline"] = {"name": baseline, "files": base["files"], "summary": base["summary"]}
    return report


def evaluate_systems(vocoders: dict, data: str | Path, *, baselines=(), steps: int | None = None,
                     sampler: str | None = None, limit: int | None = 16, full: bool = True, seed: int = 0,
                     match_bandwidth: bool = True, progress: bool = True, keep=None) -> dict:
    """Copy-synthesis metrics of several systems on the same files: each vocoder of ``vocoders`` (name ->
    ``Vocoder``) vocodes its own mel of each recording, and each of ``baselines`` (:data:`BASELINES`) inverts the
    first vocoder's mel. Scores over the first ``limit`` files (sorted) of ``data``; ``full=False`` computes only
    the fast spectral distances. Returns ``{"systems": [{"name", "kind", "files", "summary", ...}],
    "differences": [...], "skipped": [...], ...}`` with the first system's rows and summary also at the top level
    (``"files"``, ``"summary"``), as the one-model report had them. ``differences`` holds every other system minus
    the first, per file, with a paired Student-t 95% interval (:func:`paired_differences`).

    A recording stored at a lower rate than the model's (16 kHz LibriSpeech for a 22.05 kHz vocoder) has nothing
    above its Nyquist frequency, and its mel (``fmax`` 8 kHz) says nothing about that band either. With
    ``match_bandwidth`` the outputs of such files are limited to the recording's band (:func:`band_limit`) before
    scoring, so that the distances measure what the mel determines; the report counts those files. ``seed``
    draws the sampler's noise and the baselines' initial phase or noise, all random in what they score. A file
    that cannot be read is skipped for every system (so that differences stay paired) and listed in
    ``report["skipped"]`` (``{"file", "reason"}``), as training skips them. ``keep(index, system, audio,
    vocoder)``, when given, receives every output (and the original, as system "original") for a listening
    report; ``index`` counts the scored files. The progress bar (tqdm) counts files times systems; it is off
    without ``progress`` and when stderr is not a terminal."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0):
        raise AudiodiffError(f"limit must be a whole number >= 0 (0 or None: every file), got {limit!r}")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown or not vocoders:
        raise AudiodiffError(f"need at least one model and baselines among {BASELINES}, got {list(vocoders)} and "
                             f"{list(baselines)}")
    files = find_audio_files(data, hint="give a folder of recordings or a file list (.txt) to evaluate on")
    files = files[:limit] if limit else files
    first = next(iter(vocoders.values()))
    # (name, vocoder, baseline or None): baselines run on the first model's mel, at its rate. A model with
    # refinement is followed by its raw output ("NAME raw"), from the same sampling pass.
    systems = [s for n, v in vocoders.items()
               for s in [(n, v, None)] + ([(raw_name(n), v, "raw")] if v.refine else [])]
    systems += [(b, first, b) for b in dict.fromkeys(baselines)]
    keys = M.METRIC_KEYS if full else ("reference_distance", "mrstft", "log_mel_l1")
    rows = {name: [] for name, _, _ in systems}
    synth_time = dict.fromkeys(rows, 0.0)
    skipped, seconds, limited = [], 0.0, 0
    from tqdm import tqdm

    bar = tqdm(total=len(files) * len(systems), desc="eval", unit="clip", leave=False,
               disable=None if progress else True)  # None: off when stderr is not a terminal
    for path in files:
        read = {name: _read(voc, path) for name, voc, base in systems if base is None}
        raw = {}  # model name -> its raw output on this file
        reason = next((r for _, _, r in read.values() if r is not None), None)
        if reason is not None:
            skipped.append({"file": str(path), "reason": reason})
            bar.update(len(systems))
            continue
        source_sr = sf.info(str(path)).samplerate
        index = len(rows[systems[0][0]])
        ref0, mel0, _ = read[systems[0][0]]
        seconds += len(ref0) / first.sample_rate
        limited += match_bandwidth and source_sr < first.sample_rate
        if keep is not None:
            keep(index, "original", ref0, first)
        for name, voc, base in systems:
            bar.set_description(f"eval {name}")
            ref, mel, _ = read[systems[0][0]] if base else read[name]
            sr = voc.sample_rate
            t0 = time.perf_counter()
            if base == "griffinlim":
                est = griffin_lim(mel, voc.mel_config, seed=seed)
            elif base == "refine":
                est = refine_baseline(voc, mel, ref, seed=seed)
            elif base == "raw":
                est, raw_seconds = raw.pop(name)
            elif voc.refine:  # the raw output is kept for the "raw" system that follows
                est = voc(mel, steps=steps, sampler=sampler, seed=seed, refine=False)
                raw[raw_name(name)] = est, time.perf_counter() - t0
                est = voc.refine_waveform(est, mel)
            else:
                est = voc(mel, steps=steps, sampler=sampler, seed=seed)
            synth_time[name] += raw_seconds if base == "raw" else time.perf_counter() - t0
            scored = band_limit(est, sr, source_sr) if match_bandwidth and source_sr < sr else est
            rows[name].append({"file": str(path), **metrics_of(ref, scored, sr, voc.mel_config, keys)})
            if keep is not None:
                keep(index, name, est, voc)
            bar.update()
    bar.close()
    if not any(rows.values()):
        raise AudiodiffError(f"none of the {len(files)} files in {data} can be read; first: {skipped[0]['file']} "
                             f"({skipped[0]['reason']}); expected wav, flac, ogg or mp3 recordings")
    original = _original_rows(rows)
    if original:
        systems.append(("original", first, "original"))
        rows["original"] = original
    # whatever metrics_of returned, in its order
    metric_keys = list(dict.fromkeys(k for system in rows.values() for r in system for k in r if k != "file"))
    entries = []
    for name, voc, base in systems:
        entry = {"name": name, "kind": {None: "model", "raw": "model", "original": "original"}.get(base, "baseline"),
                 "files": rows[name], "summary": summarise(rows[name], metric_keys)}
        if base != "original":
            entry["synthesis_seconds"] = synth_time[name]
        if base in (None, "raw"):
            entry.update(model=voc.source, sampler=sampler or voc.sampler, steps=steps or voc.steps,
                         refine=voc.refine if base is None else 0, refine_momentum=voc.refine_momentum,
                         precision=voc.precision)
        elif base == "refine":
            entry.update(refine=first.refine or REFINE_ITERATIONS, refine_momentum=first.refine_momentum)
        entries.append(entry)
    head = entries[0]
    return {"data": str(data), "files": head["files"], "skipped": skipped, "summary": head["summary"],
            "systems": entries, "differences": paired_differences(entries, metric_keys),
            "interval": "means: mean ± 1.96 standard errors; differences: paired, Student t (n - 1 degrees of "
                        "freedom) on the per-file differences",
            **{k: head[k] for k in ("sampler", "steps", "refine", "refine_momentum", "precision")},
            "audio_seconds": seconds, "synthesis_seconds": head["synthesis_seconds"],
            "band_limited_files": int(limited)}


def raw_name(name: str) -> str:
    """The name of a model's raw-output system in a report, beside the model's own (refined) one."""
    return f"{name} raw"


def _original_rows(rows: dict) -> list[dict]:
    """The recording's own scores on the non-intrusive metrics, which ``metrics_of`` gives as ``ref_KEY`` beside
    ``KEY`` (the MOS estimates), taken from the first system's rows and removed from every system's; [] when
    there are none."""
    first = next(iter(rows.values()))
    own = [k for k in (first[0] if first else {}) if k.startswith("ref_") and k[4:] in first[0]]
    if not own:
        return []
    original = [{"file": r["file"], **{k[4:]: r[k] for k in own}} for r in first]
    for system in rows.values():
        for r in system:
            for k in own:
                r.pop(k, None)
    return original


def refine_baseline(vocoder, mel: np.ndarray, ref: np.ndarray, seed: int = 0) -> np.ndarray:
    """The refinement's own baseline: ``vocoder``'s mel-consistency refinement (``audio/refine.py``, its
    iterations and momentum; the default 32 iterations where the vocoder's are off) started from Gaussian noise
    of the recording's RMS, drawn with ``seed``, instead of the network's output; ``[F * hop]`` like the vocoder.
    The distance between this and the vocoder is what the network adds."""
    cfg = vocoder.mel_config
    rms = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64))))
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, mel.shape[-1] * cfg.hop_length, generator=generator) * rms  # [1, T]
    out = refine(noise, torch.as_tensor(mel, dtype=torch.float32)[None], MelSpectrogram(cfg),
                 vocoder.refine or REFINE_ITERATIONS, momentum=vocoder.refine_momentum)
    return out.clamp(-1, 1)[0].numpy()


def paired_differences(systems: list[dict], keys) -> list[dict]:
    """Every system after the first minus the first, file by file (the systems' rows are of the same files, in
    the same order): ``[{"system", "minus", "metrics": {key: {"mean", "ci95", "low", "high", "n"}}}]``. The
    interval is Student's t on the per-file differences, ``mean +- t(0.975, n - 1) * sd / sqrt(n)`` (nan for one
    file); identical systems give 0 with an interval of width 0. Files where either value is missing are left out
    of that metric."""
    from scipy.stats import t as student_t

    base, out = systems[0], []
    for other in systems[1:]:
        metrics = {}
        for k in keys:
            pairs = [(a.get(k), b.get(k)) for a, b in zip(base["files"], other["files"])]  # (first, other)
            d = np.array([y - x for x, y in pairs if x is not None and y is not None and np.isfinite(x - y)])
            if not len(d):
                continue
            mean = float(d.mean())
            half = float(student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 \
                else float("nan")
            metrics[k] = {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half, "n": int(len(d))}
        if metrics:
            out.append({"system": other["name"], "minus": base["name"], "metrics": metrics})
    return out


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
    """``out`` (JSON, every system) plus a CSV beside it (``.csv``) with one row per file and system, each written
    atomically (``atomic.py``)."""
    out = Path(out)
    atomic.write_text(out, json.dumps(report, indent=2) + "\n", "eval report")
    rows = [{"system": system["name"], **r} for system in report["systems"] for r in system["files"]]
    if rows:
        fields = list(dict.fromkeys(k for r in rows for k in r))  # the original may carry fewer metrics
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(out.with_suffix(".csv"), text.getvalue(), "eval report")


def mean_ci(v: dict | None) -> str:
    """A summary entry as ``mean ± half-width`` ("-" for none), for the terminal table and the report page."""
    return f"{v['mean']:.4f} ± {v['ci95']:.3f}" if v else "-"


def format_summary(report: dict) -> str:
    """The table of means ± 95% half-widths (one column per system), then each system minus the first, then the
    files skipped and band-limited."""
    systems = report["systems"]
    names = [s["name"] for s in systems]
    width = max([22] + [len(n) + 2 for n in names])
    keys = list(dict.fromkeys(k for s in systems for k in s["summary"]))
    lines = [f"{'metric':<20}" + "".join(f"{n:>{width}}" for n in names)]
    for k in keys:
        lines.append(f"{k:<20}" + "".join(f"{mean_ci(s['summary'].get(k)):>{width}}" for s in systems))
    for diff in report.get("differences", []):
        lines.append(f"{diff['system']} - {diff['minus']} (paired, per file; 95% t-interval):")
        for k, v in diff["metrics"].items():
            lines.append(f"  {k:<18}{v['mean']:>+12.4f}  [{v['low']:+.4f}, {v['high']:+.4f}]  n={v['n']}")
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
