"""Conversion between mel conventions: exact where only the values' convention differs, measured where the band
layout or the framing differs, and ``audiodiff synth --mel-preset``."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.convert import approximations, band_mapping, convert_mel, same_layout
from audiodiff.audio.mel import PRESETS, MelSpectrogram, decompress, mel_config
from audiodiff.errors import AudiodiffError

from conftest import SR, write_wav
from test_cli import invoke

# The hifigan layout and framing in other value conventions: every pair converts exactly.
VALUE_CONVENTIONS = {
    "ln": mel_config("hifigan"),
    "log10": mel_config("hifigan", log="log10"),
    "coqui": mel_config("hifigan", log="db", db_norm="symmetric", log_floor=1e-8),
    "coqui-positive": mel_config("hifigan", log="db", db_norm="positive", max_norm=1.0),
    "nemo-guard": mel_config("hifigan", log_guard="add"),
    "espnet-mvn": mel_config("hifigan", log="log10", mean=tuple(np.linspace(-3, -1, 80)),
                             std=tuple(np.linspace(0.5, 1.5, 80))),
}


def _speechlike(sr: int, seconds: float = 1.0) -> torch.Tensor:
    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * np.cumsum(110 + 40 * np.sin(2 * np.pi * 1.5 * t)) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 40)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    noise = np.random.default_rng(1).standard_normal(len(t))
    return torch.from_numpy(0.15 * x / np.abs(x).max() + 0.02 * noise).float()


@pytest.mark.parametrize("src", sorted(VALUE_CONVENTIONS))
@pytest.mark.parametrize("dst", sorted(VALUE_CONVENTIONS))
def test_value_conventions_convert_exactly(src, dst):
    s, d = VALUE_CONVENTIONS[src], VALUE_CONVENTIONS[dst]
    assert approximations(s, d) == []
    audio = _speechlike(SR)
    got = convert_mel(MelSpectrogram(s)(audio), s, d)
    np.testing.assert_allclose(got.numpy(), MelSpectrogram(d)(audio).numpy(), rtol=0, atol=2e-4)


def test_numpy_in_numpy_out_and_the_identity_within_float_rounding():
    mel = MelSpectrogram(mel_config("hifigan"))(_speechlike(SR)).numpy()
    out = convert_mel(mel, mel_config("hifigan"), mel_config("bigvgan-22k"))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, mel, rtol=0, atol=1e-6)


def test_diffwave_to_hifigan_inverts_the_normalised_stft_gain():
    """diffwave's centred, normalised, HTK mel -> hifigan's: within a dB on average (layout and framing mapped)."""
    audio = _speechlike(SR)
    src, dst = mel_config("diffwave"), mel_config("hifigan")
    got, want = convert_mel(MelSpectrogram(src)(audio), src, dst), MelSpectrogram(dst)(audio)
    assert got.shape == want.shape
    db = 20 / np.log(10) * (got - want).abs()  # ln units -> dB
    assert float(db.mean()) < 1.5, float(db.mean())


def test_band_mapping_recovers_a_band_layout():
    """24 kHz / 100 bands -> 22.05 kHz / 80 bands (and a 64-band layout of the same audio): the mapped mel is
    within about a dB of the one computed directly, and much closer than the best single gain on the nearest bands."""
    src, dst = mel_config("bigvgan-24k"), mel_config("hifigan")
    assert not same_layout(src, dst) and band_mapping(src, dst).shape == (80, 100)
    import soxr

    audio24 = _speechlike(24000)
    audio22 = torch.from_numpy(soxr.resample(audio24.numpy(), 24000, SR)).float()
    got = convert_mel(MelSpectrogram(src)(audio24), src, dst)
    want = MelSpectrogram(dst)(audio22)
    n = min(got.shape[-1], want.shape[-1])
    db = 20 / np.log(10) * (got[:, 2:n - 2] - want[:, 2:n - 2]).abs()  # edge frames see different padding
    assert float(db.mean()) < 1.5, float(db.mean())
    nearest = torch.nn.functional.interpolate(MelSpectrogram(src)(audio24)[None, None], size=(80, n - 4))[0, 0]
    assert float(db.mean()) < 0.5 * float((20 / np.log(10) * (nearest - want[:, 2:n - 2]).abs()).mean())


def test_framing_of_a_steady_spectrum_converts_exactly():
    """Centred and HiFi-GAN framing differ by half a hop: a spectrum constant in time converts exactly."""
    src, dst = mel_config("speechbrain"), mel_config("hifigan")
    assert approximations(src, dst) == ["framing (frames interpolated in time)"]
    steady = torch.linspace(-8, 0, 80)[:, None].expand(80, 50)
    got = convert_mel(steady, src, dst)
    assert got.shape == (80, 49)  # floor(T / hop) + 1 centred frames -> floor(T / hop) frames
    np.testing.assert_allclose(got.numpy(), steady[:, :49].numpy(), atol=1e-5)


def test_mag_power_is_reported_as_approximate():
    assert "magnitude power" in approximations(mel_config("hifigan"), mel_config("hifigan", mag_power=2.0))
    lin = decompress(torch.full((80, 3), -2.0), mel_config("hifigan"))
    two = convert_mel(torch.full((80, 3), -2.0), mel_config("hifigan"), mel_config("hifigan", mag_power=2.0))
    np.testing.assert_allclose(two.numpy(), np.log(lin.numpy() ** 2), atol=1e-6)


def test_a_mel_with_the_wrong_band_count_is_refused():
    with pytest.raises(AudiodiffError, match="80 bands"):
        convert_mel(np.zeros((100, 20)), mel_config("hifigan"), mel_config("espnet"))


def test_synth_mel_preset_converts_before_vocoding(capsys, tmp_path, tiny_model_dir):
    clip = write_wav(tmp_path / "clip.wav", _speechlike(SR, 0.5).numpy())
    assert invoke(capsys, "mel", clip, tmp_path / "esp.npy", "--preset", "espnet")[0] == 0
    assert invoke(capsys, "mel", clip, tmp_path / "hifi.npy")[0] == 0
    esp = np.load(tmp_path / "esp.npy")
    assert esp.shape == (80, SR // 2 // 256 + 1) and esp.max() < 1  # log10 mel: the centred frame count
    code, out, err = invoke(capsys, "synth", tmp_path / "esp.npy", tmp_path / "out.wav", "--model", tiny_model_dir,
                            "--mel-preset", "espnet", "--device", "cpu")
    assert code == 0 and "approximate in: band layout" in err and "wrote" in out
    assert sf.read(str(tmp_path / "out.wav"))[0].shape == (SR // 2 // 256 * 256,)
    # A mel already in the model's convention: --mel-preset hifigan changes nothing.
    invoke(capsys, "synth", tmp_path / "hifi.npy", tmp_path / "a.wav", "--model", tiny_model_dir, "--seed", 1)
    code, _, err = invoke(capsys, "synth", tmp_path / "hifi.npy", tmp_path / "b.wav", "--model", tiny_model_dir,
                          "--seed", 1, "--mel-preset", "hifigan")
    assert code == 0 and "exactly" in err
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_synth_of_a_folder_converts_every_mel(capsys, tmp_path, tiny_model_dir):
    clip = write_wav(tmp_path / "clip.wav", _speechlike(SR, 0.5).numpy())
    (tmp_path / "mels").mkdir()
    assert invoke(capsys, "mel", clip, tmp_path / "mels" / "esp.npy", "--preset", "espnet")[0] == 0
    np.save(tmp_path / "mels" / "short.npy", np.load(tmp_path / "mels" / "esp.npy")[:, :20])
    code, out, err = invoke(capsys, "synth", tmp_path / "mels", tmp_path / "wavs", "--model", tiny_model_dir,
                            "--mel-preset", "espnet", "--device", "cpu", "--no-progress")
    assert code == 0 and "wrote 2 wav files" in out and err.count("approximate in: band layout") == 2, err
    for name in ("esp", "short"):  # each as the one-file command converts and writes it
        assert invoke(capsys, "synth", tmp_path / "mels" / f"{name}.npy", tmp_path / "one.wav", "--model",
                      tiny_model_dir, "--mel-preset", "espnet", "--device", "cpu")[0] == 0
        one, many = (sf.read(str(p))[0] for p in (tmp_path / "one.wav", tmp_path / "wavs" / f"{name}.wav"))
        assert one.shape == many.shape and np.abs(one).max() > 0


def test_mel_set_and_stats_options(capsys, tmp_path):
    clip = write_wav(tmp_path / "clip.wav", _speechlike(SR, 0.5).numpy())
    code, _, _ = invoke(capsys, "mel", clip, tmp_path / "m.npy", "--preset", "nemo", "--set", "fmax=null",
                        "--set", "mel.n_mels=64")
    assert code == 0 and np.load(tmp_path / "m.npy").shape == (64, SR // 2 // 256 + 1)
    ref = MelSpectrogram(dataclasses.replace(mel_config("nemo"), fmax=None, n_mels=64))(
        torch.from_numpy(sf.read(str(clip), dtype="float32")[0])).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), ref, atol=1e-5)
    code, _, err = invoke(capsys, "mel", clip, tmp_path / "m.npy", "--set", "fmaxx=1")
    assert code == 1 and "unknown recipe key mel.fmaxx; did you mean 'fmax'?" in err
    feats = np.load(tmp_path / "m.npy")
    stats = tmp_path / "feats_stats.npz"
    np.savez(stats, count=10, sum=np.full(80, -20.0), sum_square=np.full(80, 50.0))
    code, _, _ = invoke(capsys, "mel", clip, tmp_path / "e.npy", "--preset", "espnet", "--stats", stats)
    plain = invoke(capsys, "mel", clip, tmp_path / "p.npy", "--preset", "espnet")[0]
    assert code == 0 == plain and feats is not None
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), (np.load(tmp_path / "p.npy") + 2.0) / 1.0, atol=1e-5)
    code, out, _ = invoke(capsys, "mel", "--list-presets")
    assert code == 0 and [line.split()[0] for line in out.strip().splitlines()] == list(PRESETS)


def test_the_help_names_every_preset():
    from audiodiff.cli.vocoding import PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS)
