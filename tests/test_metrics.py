"""Known answers for audiodiff.eval.metrics on short synthetic signals."""

import math

import numpy as np
import pytest

from audiodiff.eval import metrics as M

SR = 16000


def _harmonic(sr: int = SR, seconds: float = 1.0, f0: float = 200.0, vibrato: float = 10.0,
              noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """Eight harmonics of f0 with 5 Hz vibrato of +-`vibrato` Hz, plus white noise (no near-silent bins)."""
    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * np.cumsum(f0 + vibrato * np.sin(2 * np.pi * 5 * t)) / sr
    x = sum(0.3 / k * np.sin(k * phase) for k in range(1, 9))
    return x + noise * np.random.default_rng(seed).standard_normal(len(t))


def _tone(f: float, sr: int = SR, seconds: float = 1.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * f * np.arange(int(sr * seconds)) / sr)


def _with_noise(x: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(len(x))
    return x + n * np.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return _harmonic()


def test_identical_signals_score_ideal(x):
    m = M.all_metrics(x, x.copy(), SR)
    assert tuple(m) == M.METRIC_KEYS
    for key in ("reference_distance", "mrstft", "log_mel_l1", "mcd_db", "f0_rmse_cents", "vuv_error"):
        assert m[key] == 0.0, key  # equal inputs through the same operations: every difference is exactly 0


def test_estimate_is_trimmed_to_reference_length(x):
    longer = np.concatenate([x, np.random.default_rng(2).standard_normal(500)])
    assert M.reference_distance(x, longer) == 0.0  # trimmed: equal inputs, as above
    assert M.log_mel_l1(longer, x, SR) == 0.0


@pytest.mark.parametrize("g", [0.5, 2.0])
@pytest.mark.parametrize("res", M.REFERENCE_RESOLUTIONS)
def test_gain_gives_closed_form_stft_terms(x, g, res):
    sc, log_mag = M.stft_terms(x, g * x, *res)
    # ||gY - Y|| / ||Y|| = |g - 1| exactly, since the STFT is linear and g a power of two (scaling by it is exact).
    assert sc == abs(1 - g)
    # log(g|Y| + eps) - log(|Y| + eps) = log g up to eps |1 - 1/g| / |Y|; |Y| stays above ~1e-2 here (noise
    # floor 0.01 over a >=512-sample window), so the floor moves the mean by well under 1e-5.
    assert log_mag == pytest.approx(abs(math.log(g)), abs=1e-5)


@pytest.mark.parametrize("g", [0.5, 2.0])
def test_gain_gives_closed_form_distances(x, g):
    assert M.reference_distance(x, g * x) == pytest.approx(abs(1 - g) + abs(math.log(g)), abs=1e-5)
    # The mel floor 1e-5 is larger relative to Slaney-normalised bands (weights ~ 2 / bandwidth in Hz), so the
    # smallest high bands lose up to ~1e-3 of |log g| on average; measured ~6e-4.
    assert M.log_mel_l1(x, g * x, SR) == pytest.approx(abs(math.log(g)), abs=2e-3)
    # A gain only shifts the log mel spectrum by a constant, i.e. only c0, which MCD excludes; the floor bends the
    # quietest bands a little (measured 0.019 dB at g = 0.5).
    assert M.mel_cepstral_distortion(x, g * x, SR) < 0.05


def test_distances_grow_as_snr_falls(x):
    snrs = (40, 30, 20, 10, 0)
    noisy = [_with_noise(x, snr) for snr in snrs]
    for name, fn in [("reference_distance", M.reference_distance), ("mrstft", M.mrstft_distance),
                     ("log_mel_l1", lambda r, e: M.log_mel_l1(r, e, SR)),
                     ("mcd_db", lambda r, e: M.mel_cepstral_distortion(r, e, SR))]:
        d = [fn(x, e) for e in noisy]
        assert all(a < b for a, b in zip(d, d[1:])), (name, d)
        assert d[0] > 0, name


def test_delay_increases_reference_distance(x):
    def delayed(k):
        return np.concatenate([np.zeros(k), x[: len(x) - k]])

    d = [M.reference_distance(x, delayed(k)) for k in (0, 2, 8)]
    assert d[0] == 0.0 and d[0] < d[1] < d[2]


def test_mcd_from_cepstra_hand_example():
    c_ref = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])  # [frames=2, c0..c2]
    c_est = np.array([[9.0, 2.0, 1.0], [5.0, 3.0, 4.0]])  # c0 differs wildly: must not count
    # frame 0: sqrt(0^2 + 2^2) = 2; frame 1: sqrt(3^2 + 4^2) = 5; mean 3.5
    expected = 10 * math.sqrt(2) / math.log(10) * 3.5
    assert M.mcd_from_cepstra(c_ref, c_est) == pytest.approx(expected, rel=1e-12)  # float64, the same few operations
    assert expected == pytest.approx(21.4965, abs=1e-4)


def test_mcd_from_cepstra_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="frames"):
        M.mcd_from_cepstra(np.zeros((3, 13)), np.zeros((4, 13)))


def test_f0_rmse_of_a_50_cent_shift():
    out = M.f0_metrics(_tone(200.0), _tone(200.0 * 2 ** (50 / 1200)), SR)
    # pYIN's F0 sits on a 10-cent grid; this shift lands on grid points, and 3 cents covers any rounding.
    assert out["f0_rmse_cents"] == pytest.approx(50.0, abs=3.0)
    assert out["vuv_error"] == 0.0


def test_f0_against_silence_is_all_vuv_error_and_no_rmse():
    out = M.f0_metrics(_tone(200.0), np.zeros(SR), SR)
    assert math.isnan(out["f0_rmse_cents"])
    assert out["vuv_error"] > 0.9


def test_bad_input_is_rejected_with_a_named_fix(x):
    with pytest.raises(ValueError, match="1-D"):
        M.reference_distance(np.stack([x, x]), x)
    with pytest.raises(ValueError, match="style"):
        M.stft_terms(x, x, 512, 128, style="hifigan")


def test_optional_metrics_return_none_when_packages_missing(x, monkeypatch):
    monkeypatch.setattr(M, "optional_metrics_available", lambda: {"pesq": False, "stoi": False})
    assert M.pesq_wb(x, x, SR) is None and M.stoi(x, x, SR) is None
    m = M.all_metrics(x, x, SR)
    assert m["pesq_wb"] is None and m["stoi"] is None


@pytest.mark.parametrize("sr", [16000, 22050])
def test_pesq_prefers_identical_to_noisy(sr):
    pytest.importorskip("pesq")
    ref = _harmonic(sr=sr, seconds=2.0)
    assert M.optional_metrics_available()["pesq"]
    scores = [M.pesq_wb(ref, e, sr) for e in (ref, _with_noise(ref, 20), _with_noise(ref, 0))]
    assert scores[0] > scores[1] > scores[2], scores


def test_stoi_prefers_identical_to_noisy():
    pytest.importorskip("pystoi")
    ref = _harmonic(seconds=2.0)
    assert M.stoi(ref, ref, SR) == pytest.approx(1.0, abs=1e-12)  # float64 correlations of equal envelopes: 1 - 2e-16
    assert M.stoi(ref, _with_noise(ref, 0), SR) < M.stoi(ref, _with_noise(ref, 20), SR) < 1.0
