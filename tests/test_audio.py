"""The mel front end against independent numpy/librosa computations, frame counts, and audio file I/O."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from audiodiff.audio.io import load_audio, save_audio
from audiodiff.audio.mel import PRESETS, MelSpectrogram, mel_config
from audiodiff.errors import AudiodiffError

from conftest import SR, assert_log_mel_close, harmonic, write_wav


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    n = (len(x) - n_fft) // hop + 1
    return np.stack([x[i * hop: i * hop + n_fft] for i in range(n)])  # [frames, n_fft]


def reference_hifigan_mel(x: np.ndarray) -> np.ndarray:
    """HiFi-GAN's ``mel_spectrogram`` written out in numpy (float64): [80, floor(T / 256)]."""
    n_fft, hop = 1024, 256
    pad = (n_fft - hop) // 2
    x = np.pad(x.astype(np.float64), (pad, pad), mode="reflect")
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)
    spec = np.fft.rfft(_frames(x, n_fft, hop) * window, axis=-1).T  # [513, frames]
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    fb = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=80, fmin=0.0, fmax=8000.0)  # Slaney scale and norm
    return np.log(np.maximum(fb @ mag, 1e-5))


def reference_diffwave_mel(x: np.ndarray) -> np.ndarray:
    """The reference DiffWave ``preprocess.py`` mel written out in numpy: centred STFT, HTK mel 20 Hz..sr/2 without
    filter normalisation, magnitude / sqrt(sum(w^2)), then (20 log10(max(m, 1e-5)) - 20 + 100) / 100 in [0, 1]."""
    n_fft, hop = 1024, 256
    x = np.pad(x.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)
    spec = np.fft.rfft(_frames(x, n_fft, hop) * window, axis=-1).T
    mag = np.abs(spec) / np.sqrt(np.sum(window**2))
    fb = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=80, fmin=20.0, fmax=SR / 2, htk=True, norm=None)
    db = 20 * np.log10(np.maximum(fb @ mag, 1e-5)) - 20
    return np.clip((db + 100) / 100, 0.0, 1.0)


@pytest.fixture(scope="module")
def speech(speech_file) -> np.ndarray:
    audio, rate = load_audio(speech_file, SR)
    assert rate == SR
    return audio[: 2 * SR]


@pytest.mark.numerics
def test_hifigan_mel_matches_numpy_librosa_reference(speech):
    mel = MelSpectrogram.from_preset("hifigan")(torch.from_numpy(speech)).double().numpy()
    ref = reference_hifigan_mel(speech)
    assert mel.shape == ref.shape == (80, len(speech) // 256)
    assert mel.max() > 0 and mel.min() < -8  # a real recording: loud and quiet bands, so the test is not vacuous
    # An absolute 1e-4 for bands above ln mel = -9 left 5% to spare on the first demo file (9.5e-5) and would fail on
    # another (1.9e-4): the error follows the band's level below its frame's loudest, not its own level.
    assert_log_mel_close(mel, ref)
    assert np.median(np.abs(mel - ref)) < 1e-5  # measured 7e-7 to 1.1e-6


@pytest.mark.numerics
def test_diffwave_mel_is_in_unit_range_and_close_to_reference(speech):
    mel = MelSpectrogram.from_preset("diffwave")(torch.from_numpy(speech)).double().numpy()
    ref = reference_diffwave_mel(speech)
    assert mel.shape == ref.shape == (80, len(speech) // 256 + 1)
    assert mel.min() >= 0.0 and mel.max() <= 1.0
    assert 0.0 < mel.mean() < 1.0 and mel.std() > 0.05
    assert_log_mel_close(mel, ref, "diffwave")  # measured at most 3.5e-5
    assert np.median(np.abs(mel - ref)) < 1e-5  # measured 1e-7


@pytest.mark.numerics
def test_diffwave_mel_matches_reference_diffwave_exactly(speech):
    mel = MelSpectrogram.from_preset("diffwave")(torch.from_numpy(speech)).double().numpy()
    assert_log_mel_close(mel, reference_diffwave_mel(speech), "diffwave")


def test_mel_window_and_filterbank_are_non_persistent_buffers():
    m = MelSpectrogram.from_preset("hifigan")
    buffers = dict(m.named_buffers())
    assert set(buffers) >= {"fbank", "window"} and buffers["fbank"].shape == (80, 513)
    assert m.state_dict() == {}  # nothing to save: rebuilt from the config


@pytest.mark.parametrize("preset,extra", [("hifigan", 0), ("diffwave", 1)])
@pytest.mark.parametrize("length", [22050, 22051, 25599, 25600, 30000])
def test_frame_count(preset, extra, length):
    cfg = mel_config(preset)
    x = torch.from_numpy(harmonic(length / SR))
    assert len(x) == length
    frames = MelSpectrogram(cfg)(x).shape[-1]
    assert frames == length // 256 + extra == cfg.num_frames(length)


@pytest.mark.numerics
def test_mel_keeps_leading_dims():
    x = torch.from_numpy(harmonic(0.5))
    m = MelSpectrogram.from_preset("hifigan")
    batched = m(torch.stack([x, 0.5 * x]))
    assert batched.shape == (2, 80, len(x) // 256)
    # STFTs and GEMMs of another batch shape: float32 rounding as against the float64 reference (bitwise equal with
    # 1 and 2 threads here).
    assert_log_mel_close(batched[0], m(x))


def test_mel_rejects_too_short_audio_and_unknown_preset():
    with pytest.raises(AudiodiffError, match="too short"):
        MelSpectrogram.from_preset("hifigan")(torch.zeros(100))
    with pytest.raises(AudiodiffError, match="hifigan"):
        mel_config("tacotron")
    assert set(PRESETS) >= {"hifigan", "diffwave"}


# --- load_audio / save_audio ----------------------------------------------------------------------------------

def test_load_audio_mixes_stereo_to_mono(tmp_path):
    left, right = harmonic(0.25, 220.0), harmonic(0.25, 330.0, seed=1)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), SR, subtype="FLOAT")
    audio, rate = load_audio(path)
    assert rate == SR and audio.dtype == np.float32 and audio.ndim == 1
    # FLOAT files hold float32 exactly, and (l + r) / 2 rounds once whether summed in float32 or float64: bitwise.
    np.testing.assert_array_equal(audio, (left + right) / 2)


def test_load_audio_resamples_44k_to_22k(tmp_path):
    x = harmonic(0.5, 440.0, sr=44100)
    path = write_wav(tmp_path / "hi.wav", x, sr=44100, subtype="FLOAT")
    audio, rate = load_audio(path, 22050)
    assert rate == 22050
    assert len(audio) == len(x) // 2
    # Pitch is kept: the spectral peak of a 440 Hz fundamental stays at 440 Hz.
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    assert np.fft.rfftfreq(len(audio), 1 / 22050)[spectrum.argmax()] == pytest.approx(440.0, abs=3.0)  # 2 Hz bins
    # Unchanged rate when sample_rate is None.
    assert load_audio(path)[1] == 44100


def test_load_audio_errors_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudiodiffError, match="no such file") as err:
        load_audio(missing)
    assert "missing.wav" in str(err.value)

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudiodiffError) as err:
        load_audio(empty)
    assert "empty.wav" in str(err.value) and "\n" not in str(err.value)

    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    with pytest.raises(AudiodiffError, match="not a readable audio file") as err:
        load_audio(text)
    assert "notes.wav" in str(err.value) and "wav" in str(err.value) and "\n" not in str(err.value)

    no_samples = tmp_path / "zero.wav"
    sf.write(str(no_samples), np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudiodiffError, match="no samples"):
        load_audio(no_samples)


def test_load_audio_says_a_zero_byte_file_is_empty(tmp_path):
    take = tmp_path / "take1.wav"
    take.write_bytes(b"")
    with pytest.raises(AudiodiffError, match="empty|0 bytes"):
        load_audio(take)


def test_save_audio_pcm16_round_trip(tmp_path):
    x = harmonic(0.25)
    path = save_audio(tmp_path / "sub" / "out.wav", torch.from_numpy(x), SR)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", len(x))
    back, rate = load_audio(path)
    assert rate == SR
    # Within one int16 step (libsndfile 1.2 floors x * 32768: -1 to 0 steps; rounding would halve that), plus float32.
    np.testing.assert_allclose(back, x, atol=1 / 32768 + 1e-7)
    # Out-of-range samples are clipped rather than wrapped; int16 / 32768 is exact in float32.
    save_audio(path, np.array([2.0, -2.0, 0.5], dtype=np.float32), SR)
    np.testing.assert_array_equal(load_audio(path)[0], np.array([32767 / 32768, -1.0, 0.5], dtype=np.float32))
