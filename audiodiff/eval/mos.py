"""Non-intrusive speech quality: predicted MOS of one waveform, no reference needed.

- DNSMOS (Reddy et al., ICASSP 2022, "DNSMOS P.835"; and the P.808 model of Reddy et al., 2021) through the
  ``speechmos`` package, whose wheel ships the ONNX models that Microsoft's DNS-Challenge repository publishes
  (``sig_bak_ovr.onnx``, ``model_v8.onnx``), run by ``onnxruntime``: SIG (speech signal), BAK (background),
  OVRL (overall) of ITU-T P.835, after the challenge's polynomial calibration, and P.808 overall MOS.
- DistillMOS (Stahl & Gamper, 2025, "Distillation and pruning for scalable self-supervised representation-based
  speech quality assessment"): a small CNN-transformer distilled from an XLS-R quality model, weights
  ``distill_mos_v7.pt`` inside the ``distillmos`` wheel.

Both run offline: every model file ships inside its wheel and neither package's scoring path fetches anything
(``speechmos`` imports ``requests`` without calling it; ``distillmos`` builds its transformer head with
``xlsr_name=None``, so ``xls_r_sqa``'s XLS-R download code is never reached). Both models take 16 kHz audio:
other rates are resampled with the project's resampler (soxr_hq, as ``audio/io.py``). Scores are 1..5, higher
is better; ``None`` when the package is missing (``pip install 'audiodiff[metrics]'``).

Clip length: DNSMOS scores 9.01 s windows (a shorter clip is tiled to 9.01 s by ``speechmos``, hop 1 s) and
DistillMOS 7.68 s windows (zero-padded; longer clips are averaged over overlapping windows), so scores of clips
under ~3 s say less than the numbers suggest. Cost on a shared 2-core CPU: DNSMOS ~1.2 s per clip of up to
10 s; DistillMOS ~0.1 s per clip under 7.68 s plus ~0.2 s to load its weights.
"""

from __future__ import annotations

import contextlib
import importlib
import io

import librosa
import numpy as np

MOS_SR = 16000  # both models' rate
DNSMOS_KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
MOS_KEYS = (*DNSMOS_KEYS, "distillmos")


def _importable(name: str) -> bool:
    try:  # a real import: an installed package whose extension (onnxruntime) fails to load counts as missing
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def mos_available() -> dict[str, bool]:
    """Which MOS predictors can run: {"dnsmos": ..., "distillmos": ...}."""
    return {"dnsmos": _importable("speechmos.dnsmos") and _importable("onnxruntime"),
            "distillmos": _importable("distillmos")}


def _at_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1 or len(audio) == 0:
        raise ValueError(f"MOS takes one non-empty 1-D waveform, got shape {audio.shape}; pass one channel")
    if sr != MOS_SR:
        audio = librosa.resample(audio, orig_sr=sr, target_sr=MOS_SR, res_type="soxr_hq")
    return audio


def dnsmos(audio: np.ndarray, sr: int) -> dict[str, float] | None:
    """DNSMOS P.835 SIG/BAK/OVRL and P.808 MOS of ``audio`` (1..5, higher is better) under ``DNSMOS_KEYS``;
    None when ``speechmos``/``onnxruntime`` are missing. Samples beyond [-1, 1] are clipped first, as writing the
    audio to a 16-bit file would (``speechmos`` refuses them)."""
    if not mos_available()["dnsmos"]:
        return None
    x = np.clip(_at_16k(audio, sr), -1.0, 1.0)
    out = importlib.import_module("speechmos.dnsmos").run(x, MOS_SR)
    return {"dnsmos_sig": float(out["sig_mos"]), "dnsmos_bak": float(out["bak_mos"]),
            "dnsmos_ovrl": float(out["ovrl_mos"]), "dnsmos_p808": float(out["p808_mos"])}


def distillmos(audio: np.ndarray, sr: int) -> float | None:
    """DistillMOS of ``audio`` (1..5, higher is better); None when ``distillmos`` is missing. The model
    normalises each window to its peak, so gain does not matter."""
    if not mos_available()["distillmos"]:
        return None
    import torch

    x = torch.from_numpy(_at_16k(audio, sr).astype(np.float32))[None]  # [1, T]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints where it loaded its weights from
        model = importlib.import_module("distillmos").ConvTransformerSQAModel().eval()
    with torch.inference_mode():
        return float(model(x)[0])  # model(x): [1, 1]


def mos_scores(audio: np.ndarray, sr: int) -> dict[str, float | None]:
    """Every score above under ``MOS_KEYS``; None for each score whose package is missing."""
    d = dnsmos(audio, sr) or dict.fromkeys(DNSMOS_KEYS)
    return {**d, "distillmos": distillmos(audio, sr)}
