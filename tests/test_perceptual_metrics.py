"""Known answers for the metrics of the ``metrics`` extra: WORLD/SPTK MCD, CREPE periodicity and V/UV F1, DNSMOS and
DistillMOS (audiodiff/eval/metrics.py, pitch.py, mos.py). Model-based scores run on clips of 1-2 s."""

import numpy as np
import pytest
import soundfile as sf

from audiodiff.eval import metrics as M
from audiodiff.eval import mos, pitch

SR = 16000


def _tone(f: float = 200.0, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * f * np.arange(int(sr * seconds)) / sr)


def _white(seconds: float = 1.0, sr: int = SR, level: float = 0.1, seed: int = 0) -> np.ndarray:
    return level * np.random.default_rng(seed).standard_normal(int(sr * seconds))


def _with_noise(x: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(len(x))
    return x + n * np.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def speech(speech_file) -> tuple[np.ndarray, int]:
    """2 s of a real recording (the first shared test file, or a demo file), at its own rate."""
    x, sr = sf.read(str(speech_file), dtype="float64", frames=2 * 22050)
    return x, sr


# ---- MCD (WORLD CheapTrick envelopes, SPTK mel-cepstra) --------------------------------------------------------

def test_mcd_is_zero_for_identical_signals(speech):
    pytest.importorskip("pyworld")
    x, sr = speech
    assert M.mel_cepstral_distortion(x, x.copy(), sr) == 0.0  # the same deterministic analysis of equal inputs


def test_mcd_grows_with_noise_and_ignores_gain(speech):
    pytest.importorskip("pyworld")
    x, sr = speech
    d = [M.mel_cepstral_distortion(x, _with_noise(x, snr), sr) for snr in (30, 20, 10)]
    assert 0 < d[0] < d[1] < d[2], d
    # On 4 LJSpeech files (measured): 30 dB SNR 5.0-6.0 dB, 20 dB 8.0-9.1, 10 dB 11.0-12.1; a vocoder-like
    # degradation (Griffin-Lim of the same mel) 3.4-4.5. Loose bounds, only to catch a wrong scale (x2 or / 2).
    assert 3.0 < d[0] < 9.0 and 8.0 < d[2] < 16.0, d
    # A gain shifts every log envelope by a constant, which only c0 (excluded) carries; WORLD's F0 search, which
    # shapes CheapTrick's window, is not exactly gain-free: measured 0.0005-0.0017 dB at gain 0.5.
    assert M.mel_cepstral_distortion(x, 0.5 * x, sr) < 0.01


def test_mcd_is_none_without_its_packages(speech, monkeypatch):
    x, sr = speech
    monkeypatch.setattr(M, "_importable", lambda name: name not in ("pyworld", "pysptk"))
    assert M.mel_cepstral_distortion(x, x, sr) is None


# ---- periodicity error and V/UV F1 (CREPE, as CARGAN / BigVGAN) --------------------------------------------------

def test_f1_hand_example():
    truth = np.array([1, 1, 1, 0, 0], dtype=bool)
    pred = np.array([1, 1, 0, 1, 0], dtype=bool)
    assert pitch.f1_score(truth, pred) == 2 * 2 / (2 * 2 + 1 + 1)  # tp 2, fp 1, fn 1: exact in float64
    assert pitch.f1_score(np.zeros(3, bool), np.zeros(3, bool)) == 1.0  # nothing to find, nothing invented


def test_periodicity_of_identical_signals_is_perfect():
    pytest.importorskip("torchcrepe")
    x = _tone()
    assert pitch.periodicity_metrics(x, x.copy(), SR) == {"periodicity_rmse": 0.0, "vuv_f1": 1.0}


def test_tone_is_voiced_and_noise_is_not():
    pytest.importorskip("torchcrepe")
    v_tone, p_tone = pitch.crepe_track(_tone(), SR)
    v_noise, p_noise = pitch.crepe_track(_white(), SR)
    assert len(v_tone) == SR // pitch.PITCH_HOP + 1  # pad=True: one frame per 10 ms plus the last, 101
    # Measured: the tone is voiced in every frame (mean periodicity 0.79), white noise in 4% (mean 0.05).
    assert v_tone.mean() > 0.9 and v_noise.mean() < 0.2
    assert p_tone.mean() > 0.5 > 0.2 > p_noise.mean()
    out = pitch.periodicity_metrics(_tone(), _white(), SR)
    assert out["periodicity_rmse"] > 0.5 and out["vuv_f1"] < 0.3  # measured 0.74 and 0.08


def test_periodicity_error_grows_with_noise(speech):
    pytest.importorskip("torchcrepe")
    x, sr = speech
    mild, harsh = (pitch.periodicity_metrics(x, _with_noise(x, snr), sr) for snr in (20, 0))
    # measured on LJ001-0027: rmse 0.09 -> 0.19, F1 0.94 -> 0.84
    assert 0 < mild["periodicity_rmse"] < harsh["periodicity_rmse"]
    assert 1 > mild["vuv_f1"] > harsh["vuv_f1"]


# ---- DNSMOS and DistillMOS ------------------------------------------------------------------------------------------

def test_mos_prefers_clean_speech_to_noisy(speech):
    available = mos.mos_available()
    if not any(available.values()):
        pytest.skip("neither speechmos nor distillmos is installed")
    x, sr = speech
    clean, noisy = mos.mos_scores(x, sr), mos.mos_scores(_with_noise(x, 0), sr)
    # Measured at 0 dB SNR, 2 s: on LJ001-0027 (the shared recordings) OVRL 3.02 -> 1.73, BAK 3.80 -> 1.43, P.808
    # 3.62 -> 2.15, DistillMOS 4.39 -> 1.49; on the demo corpus's espeak voice (the fallback without shared data),
    # which the models already rate poorly, OVRL 1.76 -> 1.48, BAK 2.75 -> 1.52, P.808 2.88 -> 2.13, DistillMOS
    # 1.84 -> 1.79. SIG rates the speech itself and barely moves (3.43 -> 3.27, 2.35 -> 2.42): not asserted.
    # BAK rates the background noise itself: it must drop by 0.5 MOS on any speech. The others must drop, by 0.02: the
    # models are deterministic, and another BLAS moves a score by about 1e-4.
    keys = (["dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"] if available["dnsmos"] else []) + \
        (["distillmos"] if available["distillmos"] else [])
    for k in keys:
        margin = 0.5 if k == "dnsmos_bak" else 0.02
        assert 1.0 <= noisy[k] < clean[k] - margin <= 5.0, (k, clean[k], noisy[k])


def test_mos_is_none_without_its_packages(monkeypatch):
    monkeypatch.setattr(mos, "mos_available", lambda: {"dnsmos": False, "distillmos": False})
    assert mos.mos_scores(_tone(), SR) == dict.fromkeys(mos.MOS_KEYS)


def test_dnsmos_clips_loud_audio_instead_of_failing():
    pytest.importorskip("speechmos")
    loud = mos.dnsmos(4 * _tone(seconds=1.0), SR)  # peak 2: speechmos alone raises on samples beyond [-1, 1]
    assert set(loud) == set(mos.DNSMOS_KEYS) and all(np.isfinite(v) for v in loud.values())


def test_all_metrics_scores_the_recording_as_well(speech):
    """all_metrics returns every METRIC_KEYS key; the ref_ MOS scores are those of the recording, so identical
    signals give equal estimate and recording scores (the same inputs through the same models)."""
    x, sr = speech
    x = x[: sr]  # 1 s: every model runs twice here
    m = M.all_metrics(x, x.copy(), sr)
    assert tuple(m) == M.METRIC_KEYS
    for k in mos.MOS_KEYS:
        assert m[k] == m[f"ref_{k}"], k
    if M.optional_metrics_available()["pitch"]:
        assert m["periodicity_rmse"] == 0.0 and m["vuv_f1"] == 1.0


def test_a_noisier_copy_scores_worse_on_every_intrusive_metric(speech):
    """The acceptance relation of the evaluation issue over the whole intrusive set at once: against the recording,
    a copy with white noise at 10 dB SNR is worse than the recording itself on every metric that compares the
    two (the non-intrusive MOS scores are the test above's). Measured on 2 s, clean -> noisy: LJ001-0027 (the
    shared recordings) distance 0 -> 2.78, MR-STFT 0 -> 2.85, log-mel L1 0 -> 1.61, MCD 0 -> 11.6 dB, F0 0 -> 6.3
    cents, V/UV error 0 -> 0.116, periodicity 0 -> 0.137, V/UV F1 1 -> 0.887, PESQ 4.64 -> 1.08, STOI 1 -> 0.930;
    the demo corpus's espeak voice 0 -> 2.57, 2.69, 1.50, 11.5 dB, 10.9 cents, 0.058, 0.123, F1 0.943, PESQ 1.12,
    STOI 0.967. The margins are a third to a half of the smaller change."""
    x, sr = speech
    noisy = _with_noise(x, 10)
    clean, worse = M.all_metrics(x, x.copy(), sr), M.all_metrics(x, noisy, sr)
    lower = {"reference_distance": 1.0, "mrstft": 1.0, "log_mel_l1": 0.5, "mcd_db": 4.0, "f0_rmse_cents": 2.0,
             "vuv_error": 0.02, "periodicity_rmse": 0.04}
    higher = {"vuv_f1": 0.02, "pesq_wb": 1.0, "stoi": 0.01}
    assert set(lower) | set(higher) == {k for k in M.METRIC_KEYS if "mos" not in k}  # every intrusive metric
    scored = [k for k in (*lower, *higher) if clean[k] is not None]
    assert {"reference_distance", "mrstft", "log_mel_l1", "f0_rmse_cents", "vuv_error"} <= set(scored)
    for k in scored:
        if k in lower:
            assert worse[k] > clean[k] + lower[k], (k, clean[k], worse[k])
        else:
            assert worse[k] < clean[k] - higher[k], (k, clean[k], worse[k])
