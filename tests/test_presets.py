"""Each interop preset against a float64 numpy/librosa computation written from that project's definition
(the source file each follows is named in audio/presets.py), and the new MelConfig fields' validation."""

import dataclasses

import librosa
import numpy as np
import pytest
import torch

from audiodiff.audio.mel import PRESETS, MelConfig, MelSpectrogram, compress, decompress, mel_config
from audiodiff.audio.presets import INTEROP, espnet_stats
from audiodiff.config import recipe_from_dict
from audiodiff.errors import AudiodiffError

TOL = 1e-3  # float32 against float64, in each convention's own units (natural-log, log10 or Coqui units)


def _signal(sr: int, seconds: float = 0.6) -> np.ndarray:
    """Speech-like test audio: harmonics of a gliding f0 over white noise, never silent (no bin near a floor)."""
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 60 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 30))
    return 0.2 * x / np.abs(x).max() + 0.01 * np.random.default_rng(0).standard_normal(len(t))


def _fbank(c: MelConfig) -> np.ndarray:  # librosa's filterbank, which every one of these projects calls
    return librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax,
                               htk=False, norm="slaney", dtype=np.float64)


def _librosa_stft(x, c: MelConfig, center: bool, pad_mode: str = "reflect", window="hann"):
    return librosa.stft(x, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=window,
                        center=center, pad_mode=pad_mode, dtype=np.complex128)


def ref_espnet(x, c, mean=None, std=None):
    # Stft (torch.stft, centred, reflect) -> sqrt(clamp(power, 1e-10)) -> LogMel: log10(clamp(fb @ amp, 1e-10))
    amp = np.sqrt(np.maximum(np.abs(_librosa_stft(x, c, center=True)) ** 2, 1e-10))
    out = np.log10(np.maximum(_fbank(c) @ amp, 1e-10))
    return out if mean is None else (out - np.asarray(mean)[:, None]) / np.asarray(std)[:, None]


def ref_coqui(x, c):
    # AudioProcessor.melspectrogram: _stft (librosa, centred, reflect) -> abs -> mel basis -> amp_to_db - ref_level_db
    # -> normalize (signal_norm, symmetric_norm, clip_norm)
    S = 20 * np.log10(np.maximum(1e-8, _fbank(c) @ np.abs(_librosa_stft(x, c, center=True)))) - 20
    S_norm = (S - -100) / 100
    return np.clip(2 * 4.0 * S_norm - 4.0, -4.0, 4.0)


def ref_nemo(x, c):
    # FilterbankFeatures: torch.stft(center=True, pad_mode="constant", window=hann_window(periodic=False)) ->
    # sqrt(re^2 + im^2) -> fb @ x (mag_power 1) -> log(x + 1e-5)
    window = np.hanning(c.win_length)  # the symmetric Hann window
    spec = _librosa_stft(x, c, center=True, pad_mode="constant", window=window)
    return np.log(_fbank(c) @ np.abs(spec) + 1e-5)


def ref_bigvgan(x, c):
    # meldataset.mel_spectrogram: reflect-pad (n_fft - hop) / 2, stft(center=False), sqrt(|X|^2 + 1e-9), log(clamp 1e-5)
    pad = (c.n_fft - c.hop_length) // 2
    spec = _librosa_stft(np.pad(x, (pad, pad), mode="reflect"), c, center=False)
    return np.log(np.maximum(_fbank(c) @ np.sqrt(np.abs(spec) ** 2 + 1e-9), 1e-5))


def ref_speechbrain(x, c):
    # mel_spectogram: torchaudio Spectrogram(power=1, centred, reflect) -> MelScale(slaney) -> log(clamp(x, 1e-5))
    return np.log(np.maximum(_fbank(c) @ np.abs(_librosa_stft(x, c, center=True)), 1e-5))


REFERENCES = {"espnet": ref_espnet, "coqui": ref_coqui, "nemo": ref_nemo, "bigvgan-22k": ref_bigvgan,
              "bigvgan-24k": ref_bigvgan, "speechbrain": ref_speechbrain}


def _ours(c: MelConfig, x: np.ndarray) -> np.ndarray:
    return MelSpectrogram(c)(torch.from_numpy(x).float()).double().numpy()


def test_every_interop_preset_has_a_reference():
    assert set(REFERENCES) == set(INTEROP) and set(INTEROP) <= set(PRESETS)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_preset_matches_its_projects_definition(name):
    c = mel_config(name)
    x = _signal(c.sample_rate)
    ref, ours = REFERENCES[name](x, c), _ours(c, x)
    assert ours.shape == ref.shape == (c.n_mels, c.num_frames(len(x)))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("name, field, value", [
    ("nemo", "window_periodic", True), ("nemo", "pad_mode", "reflect"), ("espnet", "fmin", 0.0),
    ("coqui", "db_ref", 0.0), ("speechbrain", "mag_eps", 1e-3), ("bigvgan-24k", "fmax", 11000.0)])
def test_the_reference_tells_a_detail_apart(name, field, value):
    """The tolerance is tight enough that one wrong detail of the front end fails the comparison."""
    c = mel_config(name)
    x = _signal(c.sample_rate)
    wrong = _ours(dataclasses.replace(c, **{field: value}), x)
    assert np.abs(wrong - REFERENCES[name](x, c)).max() > 5 * TOL


def test_espnet_global_mvn_statistics(tmp_path):
    c = mel_config("espnet")
    x = _signal(c.sample_rate)
    feats = ref_espnet(x, c).T  # [frames, bands], as ESPnet's collect_stats accumulates them
    np.savez(tmp_path / "feats_stats.npz", count=len(feats), sum=feats.sum(0), sum_square=(feats**2).sum(0))
    stats = espnet_stats(tmp_path / "feats_stats.npz")
    normed = _ours(mel_config("espnet", **stats), x)
    np.testing.assert_allclose(normed, ref_espnet(x, c, stats["mean"], stats["std"]), rtol=0, atol=50 * TOL)
    np.testing.assert_allclose(normed.mean(1), 0, atol=1e-3)  # the statistics of this very clip: zero mean ...
    np.testing.assert_allclose(normed.std(1), 1, atol=1e-2)  # ... and unit variance in every band


def test_espnet_stats_file_errors_name_the_fix(tmp_path):
    np.savez(tmp_path / "bad.npz", mean=np.zeros(80))
    with pytest.raises(AudiodiffError, match="collect_stats"):
        espnet_stats(tmp_path / "bad.npz")


def test_silence_sits_at_each_conventions_floor():
    expected = {"espnet": None, "coqui": -4.0, "nemo": np.log(1e-5),
                "speechbrain": np.log(1e-5), "bigvgan-22k": np.log(1e-5)}
    for name, floor in expected.items():
        c = mel_config(name)
        out = _ours(c, np.zeros(c.sample_rate // 4))
        if name == "espnet":  # amplitude clamped at sqrt(1e-10) per bin before the filterbank
            floor = np.log10(1e-5 * _fbank(c).sum(1))[:, None]
        np.testing.assert_allclose(out, np.broadcast_to(floor, out.shape), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_decompress_inverts_compress_above_the_floor(name):
    c = mel_config(name)
    lin = torch.logspace(-3, 1, 80 * 7, dtype=torch.float64).reshape(80, 7)[: c.n_mels]
    if c.n_mels > 80:
        lin = torch.logspace(-3, 1, c.n_mels * 7, dtype=torch.float64).reshape(c.n_mels, 7)
    np.testing.assert_allclose(decompress(compress(lin, c), c).numpy(), lin.numpy(), rtol=1e-9)


def test_recipes_validate_the_new_fields():
    with pytest.raises(AudiodiffError, match="mel.db_norm"):
        recipe_from_dict({"mel": {"preset": "hifigan", "db_norm": "symmetric"}})
    with pytest.raises(AudiodiffError, match="mel.mean and mel.std"):
        recipe_from_dict({"mel": {"preset": "espnet", "mean": [0.0] * 80}})
    with pytest.raises(AudiodiffError, match="80 bands"):
        recipe_from_dict({"mel": {"preset": "espnet", "mean": [0.0] * 3, "std": [1.0] * 3}})
    with pytest.raises(AudiodiffError, match="mel.pad_mode"):
        recipe_from_dict({"mel": {"preset": "nemo", "pad_mode": "wrap"}})
    with pytest.raises(AudiodiffError, match="mel.std"):
        recipe_from_dict({"mel": {"preset": "espnet", "mean": [0.0] * 80, "std": [0.0] * 80}})
    r = recipe_from_dict({"mel": {"preset": "espnet", "mean": [1] * 80, "std": [2] * 80}})
    assert r.mel.mean == (1.0,) * 80 and r.mel.log == "log10"


def test_decompress_asks_for_the_config_when_the_log_is_not_enough():
    with pytest.raises(AudiodiffError, match="pass the config"):
        decompress(torch.zeros(2, 2), "db")
