"""`audiodiff generate`: a U-Net's mels become wav and PNG files, deterministically under a seed, and a vocoder
with other mel settings is refused with a message that says what to do."""

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.mel import MelConfig
from audiodiff.cli import main
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.factory import build_backbone
from audiodiff.melgen import MelGenerator
from audiodiff.vocoder import Vocoder

MEL = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16, fmax=4000.0)


@pytest.fixture()
def generator_dir(tmp_path):
    torch.manual_seed(0)
    model = ModelConfig(arch="unet2d", channels=8, channel_mults=(1, 2), blocks_per_level=1, embed_dim=16,
                        num_classes=3, image_frames=12)
    net = build_backbone(model, MEL)
    with torch.no_grad():  # zero-initialised branches would make every sample the prior's mean
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.2)
    diffusion = DiffusionConfig(schedule="cosine", steps=100, sampler="ddim", sample_steps=3)
    return MelGenerator(net, MEL, model, diffusion).save_pretrained(tmp_path / "gen")


def run(*args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return exit_info.value.code


def test_generate_writes_wavs_and_pngs_deterministically(generator_dir, tmp_path, capsys):
    for out in ("a", "b"):
        assert run("generate", generator_dir, tmp_path / out, "--n", 2, "--class", 1, "--guidance", 2,
                   "--steps", 2, "--device", "cpu", "--seed", 5) == 0
    assert "wrote 2 wav and png files" in capsys.readouterr().out
    for i in range(2):
        wav_a, sr = sf.read(tmp_path / "a" / f"sample_{i:03d}.wav")
        wav_b, _ = sf.read(tmp_path / "b" / f"sample_{i:03d}.wav")
        assert sr == 8000 and len(wav_a) == 12 * 64 and np.array_equal(wav_a, wav_b)
        assert (tmp_path / "a" / f"sample_{i:03d}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first, _ = sf.read(tmp_path / "a" / "sample_000.wav")
    second, _ = sf.read(tmp_path / "a" / "sample_001.wav")
    assert not np.array_equal(first, second)  # two samples, two noises


def test_vocoder_with_other_mel_settings_is_refused(generator_dir, tmp_path, capsys):
    mel = MelConfig()  # 22.05 kHz hifigan, not the generator's 8 kHz mel
    model = ModelConfig(residual_layers=1, residual_channels=2, dilation_cycle=1, embed_dim=8)
    Vocoder(build_backbone(model, mel), mel, model, DiffusionConfig()).save_pretrained(tmp_path / "voc")
    assert run("generate", generator_dir, tmp_path / "o", "--n", 1, "--vocoder", tmp_path / "voc",
               "--device", "cpu") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: vocoder ") and "use --vocoder griffinlim" in err and err.count("\n") == 1


def test_class_names_and_the_paired_vocoder_are_used(generator_dir, tmp_path, capsys):
    gen = MelGenerator.from_pretrained(generator_dir, device="cpu")
    gen.classes = ["brass", "organ", "piano"]
    gen.save_pretrained(generator_dir)
    model = ModelConfig(residual_layers=1, residual_channels=2, dilation_cycle=1, embed_dim=8)
    torch.manual_seed(0)
    Vocoder(build_backbone(model, MEL), MEL, model, DiffusionConfig()).save_pretrained(generator_dir / "vocoder")
    args = ("--n", 1, "--guidance", 2, "--steps", 2, "--device", "cpu", "--seed", 3)
    assert run("generate", generator_dir, tmp_path / "name", "--class", "organ", *args) == 0
    assert run("generate", generator_dir, tmp_path / "index", "--class", 1, *args) == 0
    assert "no paired vocoder" not in capsys.readouterr().out
    named, _ = sf.read(tmp_path / "name" / "sample_000.wav")
    assert np.array_equal(named, sf.read(tmp_path / "index" / "sample_000.wav")[0])
    assert run("generate", generator_dir, tmp_path / "gl", "--class", 1, "--vocoder", "griffinlim", *args) == 0
    assert not np.array_equal(named, sf.read(tmp_path / "gl" / "sample_000.wav")[0])  # the paired vocoder ran
    assert run("generate", generator_dir, tmp_path / "bad", "--class", "harp", *args) == 1
    assert "unknown class 'harp'; this generator's classes: brass, organ, piano" in capsys.readouterr().err
