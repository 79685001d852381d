"""The image path: the 2-D U-Net keeps any image size, starts at zero, takes class and null labels and plugs into the
shared samplers; log-mel images map back to the vocoder's mel exactly; a tiny class-conditional U-Net trains."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.mel import MelConfig, MelSpectrogram, mel_config
from audiodiff.audio.spectro_image import LN_MAX, LN_MIN, MelImage
from audiodiff.config import DiffusionConfig, ModelConfig, load_recipe, recipe_from_dict, save_recipe
from audiodiff.diffusion import (NULL_LABEL, SAMPLERS, Denoiser, DiscreteSchedule, guided, linear_betas, prior,
                                 sigmas_for)
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone
from audiodiff.melgen import MelGenerator
from audiodiff.models import UNet2D
from audiodiff.vocoder import Vocoder
from audiodiff.training import export, train
from audiodiff.training.checkpoint import load_latest

from conftest import rel_l2


def tiny_unet(num_classes: int = 3, seed: int = 0, randomize_output: bool = True) -> UNet2D:
    torch.manual_seed(seed)
    net = UNet2D(in_channels=1, channels=8, channel_mults=(1, 2, 2), blocks_per_level=1, attention_levels=(1,),
                 embed_dim=16, num_classes=num_classes, heads=2, groups=4)
    if randomize_output:  # output and residual branches start at zero; random weights let tests tell inputs apart
        with torch.no_grad():
            for p in net.parameters():
                if p.ndim > 1 and not p.any():
                    p.normal_(0, 0.2)
    return net


@pytest.mark.parametrize("shape", [(80, 61), (64, 33), (7, 5)])
def test_shape_kept_for_any_size_and_output_zero_at_init(shape):
    net = tiny_unet(randomize_output=False)
    x = torch.randn(2, 1, *shape)
    y = net(x, torch.tensor([0.0, 12.5]), torch.tensor([1, NULL_LABEL]))
    assert y.shape == x.shape
    assert torch.count_nonzero(y) == 0  # zero-initialised output conv
    y.sum().backward()
    assert net.output_conv.weight.grad.abs().sum() > 0  # yet it learns from the first step


def test_class_labels_and_null_label_steer_the_output():
    net = tiny_unet().eval()
    x, t = torch.randn(1, 1, 16, 12), torch.tensor([5.0])
    with torch.no_grad():
        outs = [net(x, t, torch.tensor([c])) for c in (0, 1, NULL_LABEL)]
        default = net(x, t)  # no labels: the null class
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    assert torch.equal(default, outs[2])  # the same embedding row through the same operations: bitwise
    with pytest.raises(ValueError, match="attention_levels"):
        UNet2D(channels=8, channel_mults=(1, 2), attention_levels=(2,), groups=4)


@pytest.mark.numerics
def test_output_of_a_region_does_not_depend_on_the_padding():
    # The internal pad is cropped back: the result must not change with the batch's other members or run twice.
    net = tiny_unet().eval()
    x = torch.randn(2, 1, 20, 13)
    with torch.no_grad():
        both = net(x, torch.tensor([3.0, 3.0]), torch.tensor([0, 0]))
        one = net(x[1:], torch.tensor([3.0]), torch.tensor([0]))
    # fp32, batches of 2 and 1: convolutions (K <= 9 x 16 = 144 terms), group norms and attention may reassociate
    # their sums, ~sqrt(K) eps = 1.4e-6 per layer over ~10 layers; measured 1.0e-6 (relative L2) with 1 and 2
    # threads. A pad or a batch statistic leaking into the region changes it by O(0.1).
    assert rel_l2(one, both[1:]) < 1e-4


def test_mel_image_round_trip_and_range():
    img = MelImage(frames=16)
    mel = torch.empty(8, 40, dtype=torch.float64).uniform_(LN_MIN, LN_MAX)
    image = img.to_image(mel)
    assert image.min() >= -1 and image.max() <= 1
    assert float(img.to_image(torch.tensor(LN_MIN))) == -1 and float(img.to_image(torch.tensor(LN_MAX))) == 1
    silence = MelSpectrogram(mel_config("hifigan", n_mels=8))(torch.zeros(2048))
    assert (img.to_image(silence) == -1).all()  # the front end's floor is the image's floor
    # The affine maps run in float64: a few roundings of |mel| <= 11.5, ~1e-14 (measured 9e-16).
    torch.testing.assert_close(img.to_mel(image), mel, rtol=0, atol=1e-12)
    mel32 = mel.float()
    # float32 in and out: the image's rounding (half an ulp of 1, 6e-8) scaled by (hi - lo) / 2 ~ 7, plus the
    # mel's own (half an ulp of 11.5, 4.8e-7): < 1e-6 (measured 2.4e-7).
    torch.testing.assert_close(img.to_mel(img.to_image(mel32)), mel32, rtol=0, atol=2e-6)
    # Outside the range: clamped, so the inverse returns the bound (in float32: to 3e-8 relative; approx allows 1e-6).
    assert float(img.to_mel(img.to_image(torch.tensor(9.0)))) == pytest.approx(LN_MAX)
    assert float(img.to_mel(torch.tensor(3.0))) == pytest.approx(LN_MAX)
    # The diffwave front end is already in [0, 1].
    dw = MelImage.for_mel(mel_config("diffwave"))
    assert (dw.lo, dw.hi) == (0.0, 1.0)
    assert torch.equal(dw.to_mel(dw.to_image(torch.tensor([0.0, 0.25, 1.0]))), torch.tensor([0.0, 0.25, 1.0]))  # dyadic


def test_mel_image_of_real_front_end_and_tiles():
    mel_cfg = mel_config("hifigan", sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=64, fmax=4000)
    t = torch.arange(8000) / 8000
    mel = MelSpectrogram(mel_cfg)(0.5 * torch.sin(2 * math.pi * 440 * t))  # [64, 125]
    img = MelImage.for_mel(mel_cfg, frames=32)
    image = img.to_image(mel)
    tiles = img.tiles(image)
    assert tiles.shape == (4, 1, 64, 32)  # ceil(125 / 32)
    assert (tiles[-1, 0, :, 125 - 96:] == -1).all()  # the short last tile padded with the floor
    assert torch.equal(img.stitch(tiles, image.shape[-1]), image)  # tiles and stitch only move values
    inside = (mel > LN_MIN) & (mel < LN_MAX)
    assert inside.float().mean() > 0.5
    torch.testing.assert_close(img.to_mel(image)[inside], mel[inside], rtol=0, atol=2e-6)  # float32, as above


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_generation_with_the_shared_samplers_is_deterministic(sampler):
    net = tiny_unet().eval()
    denoiser = Denoiser(net, DiscreteSchedule(linear_betas(50)))
    sigmas = sigmas_for(sampler, 4, denoiser.schedule)
    labels = torch.tensor([0, 2])

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        x = prior((2, 1, 24, 17), float(sigmas[0]), g)
        with torch.no_grad():
            return SAMPLERS[sampler](denoiser, x, sigmas, generator=g, extra_args={"class_labels": labels})

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (2, 1, 24, 17) and torch.isfinite(a).all()
    assert torch.equal(a, b)  # same seed, same operations: bitwise
    assert not torch.allclose(a, c)
    # Classifier-free guidance wraps the same denoiser; scale 1 is the conditional model exactly.
    g = torch.Generator().manual_seed(0)
    x = prior((2, 1, 24, 17), float(sigmas[0]), g)
    with torch.no_grad():
        d = SAMPLERS[sampler](guided(denoiser, 1.0, {"class_labels": NULL_LABEL}), x, sigmas, generator=g,
                              extra_args={"class_labels": labels})
    assert torch.equal(d, a)  # guided() makes only the conditional call at scale 1


def test_config_builds_a_unet_and_round_trips_through_yaml(tmp_path):
    recipe = recipe_from_dict({"model": {"arch": "unet2d", "channels": 8, "channel_mults": [1, 2],
                                         "attention_levels": [1], "blocks_per_level": 1, "embed_dim": 16,
                                         "num_classes": 10, "image_frames": 32}})
    assert recipe.model.channel_mults == (1, 2) and recipe.model.attention_levels == (1,)
    net = build_backbone(recipe.model, recipe.mel)
    assert isinstance(net, UNet2D) and net.class_embedding.num_classes == 10
    save_recipe(recipe, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml") == recipe
    assert ModelConfig().arch == "diffwave"  # old recipes unchanged
    with pytest.raises(AudiodiffError, match="model.channel_mults: expected a list of ints"):
        recipe_from_dict({"model": {"channel_mults": "1,2"}})
    with pytest.raises(AudiodiffError, match="attention_levels"):
        build_backbone(ModelConfig(arch="unet2d", channel_mults=(1, 2), attention_levels=(3,)), recipe.mel)


def _digits(folder, sr=8000):
    folder.mkdir()
    t = np.arange(sr // 2) / sr
    for label, f0 in (("0", 300.0), ("1", 700.0)):
        for take in range(2):
            sf.write(folder / f"{label}_spk_{take}.wav", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), sr)
    return folder


def test_tiny_class_conditional_unet_trains_on_mel_images(tmp_path):
    data = _digits(tmp_path / "d")
    raw = {
        "mel": {"sample_rate": 8000, "n_fft": 256, "hop_length": 64, "win_length": 256, "n_mels": 16, "fmax": 4000},
        "model": {"arch": "unet2d", "channels": 8, "channel_mults": [1, 2], "blocks_per_level": 1,
                  "attention_levels": [], "embed_dim": 16, "num_classes": 2, "image_frames": 12},
        "data": {"path": str(data), "labels": "prefix", "valid_files": 0, "crop_frames": 12, "num_workers": 0},
        "train": {"batch_size": 4, "max_steps": 3, "checkpoint_every": 3, "valid_every": 1000, "warmup_steps": 1,
                  "label_dropout": 0.5, "lr": 1e-2},
    }
    recipe = recipe_from_dict(raw)
    losses = []
    from audiodiff.training import loop

    original = loop.train_step

    def spy(*args, **kwargs):
        loss = original(*args, **kwargs)
        losses.append(loss.item())
        return loss

    loop.train_step = spy
    try:
        train(recipe, tmp_path / "run", device="cpu", progress=False)
    finally:
        loop.train_step = original
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)
    state, _ = load_latest(tmp_path / "run")
    assert state["step"] == 3
    net = build_backbone(recipe_from_dict(state["recipe"]).model, recipe.mel)
    net.load_state_dict(state["ema"]["model"])
    assert torch.count_nonzero(net.output_conv.weight) > 0  # trained away from the zero init
    with torch.no_grad():
        out = net(torch.randn(2, 1, 16, 12), torch.tensor([1.0, 2.0]), torch.tensor([0, NULL_LABEL]))
    assert out.shape == (2, 1, 16, 12) and torch.isfinite(out).all()
    # Export writes a MelGenerator with the run's class names and, with a vocoder of the same mel, pairs it; it
    # reloads with identical weights and generates deterministically.
    voc_model = ModelConfig(residual_layers=1, residual_channels=2, dilation_cycle=1, embed_dim=8)
    Vocoder(build_backbone(voc_model, recipe.mel), recipe.mel, voc_model, DiffusionConfig()).save_pretrained(
        tmp_path / "voc")
    gen = MelGenerator.from_pretrained(export(tmp_path / "run", tmp_path / "out", vocoder=tmp_path / "voc"),
                                       device="cpu")
    assert gen.classes == ["0", "1"] and gen.label("1") == 1
    assert Vocoder.from_pretrained(tmp_path / "out" / "vocoder", device="cpu").mel_config == recipe.mel
    other = MelConfig()  # 22.05 kHz: not the generator's mel
    Vocoder(build_backbone(voc_model, other), other, voc_model, DiffusionConfig()).save_pretrained(tmp_path / "v2")
    with pytest.raises(AudiodiffError, match="uses other mel settings"):
        export(tmp_path / "run", tmp_path / "out2", vocoder=tmp_path / "v2")
    assert not (tmp_path / "out2").exists()
    for k, v in net.state_dict().items():
        assert torch.equal(gen.net.state_dict()[k], v), k  # exported as float32: bitwise
    mel = gen([0, 1], steps=3, sampler="ddim", guidance=2.0, seed=0)
    assert mel.shape == (2, 16, 12) and (mel >= LN_MIN).all() and (mel <= LN_MAX).all()
    assert torch.equal(gen([0, 1], steps=3, sampler="ddim", guidance=2.0, seed=0), mel)  # same seed: bitwise
    assert gen(batch=3, frames=7, steps=2, sampler="ddpm", seed=1).shape == (3, 16, 7)  # unconditional
    with pytest.raises(AudiodiffError, match="labels must lie in 0..1"):
        gen([2])
    with pytest.raises(AudiodiffError, match="not an audiodiff mel generator"):
        MelGenerator.from_pretrained(tmp_path / "nowhere")
    raw["data"]["crop_frames"] = 13
    with pytest.raises(AudiodiffError, match="set data.crop_frames: 12"):
        train(recipe_from_dict(raw), tmp_path / "run2", device="cpu", progress=False)


class _Writer:
    def __init__(self):
        self.scalars, self.images = {}, {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value

    def add_image(self, tag, image, step):
        self.images[tag] = image


def test_validation_scores_images_and_short_clips_pad_with_silence(tmp_path):
    from audiodiff.data import AudioCrops
    from audiodiff.training.validate import validate

    data = _digits(tmp_path / "d")
    write = 8000 // 20  # a 50 ms clip: shorter than one 12-frame crop (768 samples)
    sf.write(data / "1_spk_short.wav", (0.3 * np.sin(np.arange(write) * 0.5)).astype(np.float32), 8000)
    recipe = recipe_from_dict({
        "mel": {"sample_rate": 8000, "n_fft": 256, "hop_length": 64, "win_length": 256, "n_mels": 16, "fmax": 4000},
        "model": {"arch": "unet2d", "channels": 8, "channel_mults": [1, 2], "blocks_per_level": 1,
                  "embed_dim": 16, "num_classes": 2, "image_frames": 12},
        "data": {"crop_frames": 12, "pad_short": True},
        "train": {"valid_every": 5},
    })
    files = sorted(data.glob("*.wav"))
    assert len(AudioCrops(files, recipe.mel, 12).audio) == 4  # skipped by default
    crops = AudioCrops(files, recipe.mel, 12, labels=[0, 0, 1, 1, 1], pad_short=True)
    assert len(crops.audio) == 5
    short = crops.files.index(str(data / "1_spk_short.wav"))
    assert (crops.audio[short][crops.mel.pad[0] + write + 1:] == 0).all()  # trailing silence
    torch.manual_seed(0)
    net = build_backbone(recipe.model, recipe.mel)
    writer = _Writer()
    loss = validate(net, recipe, crops, MelSpectrogram(recipe.mel), writer, 5, torch.device("cpu"))
    assert math.isfinite(loss) and writer.scalars["valid/loss"] == loss
    assert set(writer.images) == {"valid/mel_generated", "valid/mel_original"}
    assert writer.images["valid/mel_generated"].shape[0] == 3


def test_digits_recipe_builds_a_class_conditional_unet():
    from pathlib import Path

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "digits.yaml")
    assert recipe.model.arch == "unet2d" and recipe.model.num_classes == 10 and recipe.data.labels == "prefix"
    assert recipe.data.crop_frames == recipe.model.image_frames and recipe.mel.sample_rate == 8000
    net = build_backbone(recipe.model, recipe.mel)
    assert isinstance(net, UNet2D) and net.class_embedding.num_classes == 10


@pytest.mark.parametrize("name", ["digits", "music"])
def test_each_generator_recipe_has_a_vocoder_recipe_with_its_mel(name):
    from pathlib import Path

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    gen, voc = load_recipe(recipes / f"{name}.yaml"), load_recipe(recipes / f"{name}-vocoder.yaml")
    assert gen.model.arch == "unet2d" and voc.model.arch == "diffwave"
    assert gen.mel == voc.mel  # export --vocoder refuses a pair whose mels differ
    assert gen.data.crop_frames == gen.model.image_frames and gen.data.labels == "prefix"
    # the generator's tile fits the U-Net: every level halves the image, so both sides divide 2 ** (levels - 1)
    net = build_backbone(gen.model, gen.mel)
    x = torch.zeros(1, 1, gen.mel.n_mels, gen.model.image_frames)
    with torch.no_grad():
        assert net(x, torch.tensor([1.0]), torch.tensor([0])).shape == x.shape
