"""Copy-synthesis evaluation: band limiting for recordings below the model's rate, the Griffin-Lim floor, and the
report ``audiodiff eval`` writes."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from audiodiff.audio.mel import MelConfig, MelSpectrogram
from audiodiff.eval import metrics as M
from audiodiff.eval.copysynth import band_limit, evaluate, griffin_lim, write_report

from conftest import tiny_vocoder

SR = 22050


def _tones(freqs, seconds=1.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return sum(0.2 * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def _band_energy(x, lo, hi, sr=SR):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return spec[(f >= lo) & (f < hi)].sum()


def test_band_limit_removes_what_the_lower_rate_cannot_hold():
    x = _tones([1000, 10000])
    y = band_limit(x, SR, 16000)
    assert y.shape == x.shape and y.dtype == np.float32
    # Filter properties, not rounding: 40 dB down above 8 kHz (measured 73 dB) and within 1% below (measured 4e-6);
    # without the band limit the first ratio is 1.
    assert _band_energy(y, 9000, 11000) < 1e-4 * _band_energy(x, 9000, 11000)
    assert abs(_band_energy(y, 900, 1100) / _band_energy(x, 900, 1100) - 1) < 0.01


def test_griffin_lim_beats_noise_on_the_reference_distance():
    x = _tones([220, 440, 660])
    mel = MelSpectrogram(MelConfig())(__import__("torch").from_numpy(x)).numpy()
    gl = griffin_lim(mel, MelConfig())
    noise = np.random.default_rng(0).normal(0, 0.1, len(x)).astype(np.float32)
    assert len(gl) == mel.shape[1] * 256
    assert M.reference_distance(x, gl) < 0.5 * M.reference_distance(x, noise)
    # The seed draws the initial phase: the same seed gives the same output, another seed another one.
    assert np.array_equal(gl, griffin_lim(mel, MelConfig(), seed=0))
    assert not np.allclose(gl, griffin_lim(mel, MelConfig(), seed=1), atol=1e-3)


def test_evaluate_limits_low_rate_recordings_to_their_band(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "a_full.wav", _tones([300, 9000], 0.5), SR)
    sf.write(data / "b_16k.wav", _tones([300], 0.5, sr=16000), 16000)
    voc = tiny_vocoder()
    matched = evaluate(voc, data, steps=2, limit=None, baseline="griffinlim", full=False, progress=False)
    full = evaluate(voc, data, steps=2, limit=None, full=False, match_bandwidth=False, progress=False)
    assert matched["band_limited_files"] == 1 and full["band_limited_files"] == 0
    a_matched, b_matched = matched["files"]
    a_full, b_full = full["files"]
    assert a_matched["reference_distance"] == a_full["reference_distance"]  # the 22.05 kHz file is untouched
    # The untrained vocoder's output is broadband noise: removing its band above 8 kHz changes the score.
    assert b_matched["reference_distance"] != b_full["reference_distance"]
    # ... and the matched score is exactly the score of the band-limited output.
    from audiodiff.audio.io import load_audio

    ref, _ = load_audio(data / "b_16k.wav", SR)
    est = voc(voc.mel(ref).cpu().numpy(), steps=2, seed=0)
    assert b_matched["reference_distance"] == M.reference_distance(ref, band_limit(est, SR, 16000))
    assert b_full["reference_distance"] == M.reference_distance(ref, est)
    assert set(matched["summary"]) == {"reference_distance", "mrstft", "log_mel_l1"}
    assert matched["baseline"]["summary"]["reference_distance"]["n"] == 2
    write_report(matched, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["band_limited_files"] == 1
    # header, two files of the refined output, of the raw output and of the baseline
    assert (tmp_path / "r.csv").read_text().count("\n") == 1 + 2 + 2 + 2


def test_full_and_fast_metric_sets_share_the_vocoders_log_mel(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "a.wav", _tones([300, 9500], 0.5), SR)  # energy above the mel's fmax (8 kHz)
    voc = tiny_vocoder()
    fast = evaluate(voc, data, steps=2, limit=None, full=False, progress=False)["files"][0]
    full = evaluate(voc, data, steps=2, limit=None, full=True, progress=False)["files"][0]
    assert full["log_mel_l1"] == fast["log_mel_l1"]
    from audiodiff.audio.io import load_audio

    ref, _ = load_audio(data / "a.wav", SR)
    est = voc(voc.mel(ref).cpu().numpy(), steps=2, seed=0)
    assert fast["log_mel_l1"] == M.log_mel_l1(ref, est, SR, fmax=8000.0)
    assert fast["log_mel_l1"] != M.log_mel_l1(ref, est, SR)  # 0-11 kHz would be another number
