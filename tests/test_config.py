"""Recipes: validation errors that name the key and suggest the fix, ``--set`` overrides, the shipped recipes, and
the to_dict -> recipe_from_dict round trip that run directories and checkpoints rely on."""

from __future__ import annotations

import pytest
import torch
import yaml

from audiodiff.audio.mel import PRESETS, MelSpectrogram
from audiodiff.config import Recipe, apply_overrides, load_recipe, recipe_from_dict, save_recipe
from audiodiff.errors import AudiodiffError

from conftest import REPO


@pytest.mark.parametrize("raw,key,suggestion", [
    ({"train": {"batchsize": 2}}, "train.batchsize", "batch_size"),
    ({"mel": {"hop_lenght": 300}}, "mel.hop_lenght", "hop_length"),
    ({"model": {"residual_layer": 2}}, "model.residual_layer", "residual_layers"),
    ({"data": {"crop_frame": 8}}, "data.crop_frame", "crop_frames"),
])
def test_unknown_key_names_it_and_suggests_the_nearest(raw, key, suggestion):
    with pytest.raises(AudiodiffError) as err:
        recipe_from_dict(raw)
    msg = str(err.value)
    assert key in msg and repr(suggestion) in msg and "\n" not in msg


def test_unknown_section_names_it_and_suggests_the_nearest():
    with pytest.raises(AudiodiffError, match=r"'trian'.*'train'"):
        recipe_from_dict({"trian": {"batch_size": 2}})


def test_unknown_key_without_a_close_match_lists_the_valid_keys():
    with pytest.raises(AudiodiffError, match="valid keys") as err:
        recipe_from_dict({"train": {"zzzzzz": 1}})
    assert "batch_size" in str(err.value)


@pytest.mark.parametrize("raw,key,expected", [
    ({"train": {"batch_size": "eight"}}, "train.batch_size", "int"),
    ({"train": {"batch_size": True}}, "train.batch_size", "int"),  # bool is not an int here
    ({"train": {"batch_size": 2.5}}, "train.batch_size", "int"),
    ({"train": {"lr": "fast"}}, "train.lr", "float"),
    ({"train": {"compile": "yes please"}}, "train.compile", "bool"),
    ({"mel": {"fmax": "high"}}, "mel.fmax", "float or null"),
    ({"data": {"path": 3}}, "data.path", "str or null"),
])
def test_wrong_type_names_the_key_and_the_expected_type(raw, key, expected):
    with pytest.raises(AudiodiffError) as err:
        recipe_from_dict(raw)
    assert key in str(err.value) and f"expected {expected}" in str(err.value)


@pytest.mark.parametrize("key, value, suggestion", [("precision", "fp8", None), ("lr_decay", "cosin", "cosine")])
def test_string_keys_with_fixed_values_are_checked_when_the_recipe_loads(key, value, suggestion):
    with pytest.raises(AudiodiffError, match=rf"train\.{key}: '{value}' is not one of") as err:
        recipe_from_dict({"train": {key: value}})
    assert (f"did you mean '{suggestion}'" in str(err.value)) == (suggestion is not None)


def test_section_must_be_a_mapping():
    with pytest.raises(AudiodiffError, match="'train' must be a mapping"):
        recipe_from_dict({"train": 3})


def test_ints_are_accepted_for_floats_and_nulls_where_allowed():
    r = recipe_from_dict({"train": {"lr": 1, "max_minutes": 2}, "mel": {"fmax": None}})
    assert r.train.lr == 1.0 and isinstance(r.train.lr, float) and r.train.max_minutes == 2.0
    assert r.mel.fmax is None


def test_mel_preset_with_overrides():
    r = recipe_from_dict({"mel": {"preset": "diffwave", "n_mels": 64}})
    assert r.mel == PRESETS["diffwave"].__class__(**{**PRESETS["diffwave"].__dict__, "n_mels": 64})
    with pytest.raises(AudiodiffError, match="unknown mel preset 'tacotron'"):
        recipe_from_dict({"mel": {"preset": "tacotron"}})


def test_overrides_parse_yaml_values():
    raw = apply_overrides({"train": {"batch_size": 16}}, [
        "train.batch_size=8", "train.lr=2.0e-4", "train.compile=true", "data.path=null", "data.crop_frames=8",
        "mel.preset=diffwave", "train.precision=bf16",
    ])
    r = recipe_from_dict(raw)
    assert r.train.batch_size == 8 and r.train.lr == 2e-4 and r.train.compile is True
    assert r.data.path is None and r.data.crop_frames == 8 and r.train.precision == "bf16"
    assert r.mel == PRESETS["diffwave"]


def test_overrides_do_not_mutate_the_raw_recipe():
    raw = {"train": {"batch_size": 16}}
    apply_overrides(raw, ["train.batch_size=8"])
    assert raw == {"train": {"batch_size": 16}}


@pytest.mark.parametrize("item,match", [
    ("train.batch_size", "expected section.key=value"),
    ("batch_size=8", "expected section.key=value"),
    ("trian.batch_size=8", r"unknown section 'trian'; did you mean 'train'"),
])
def test_malformed_overrides_explain_the_syntax(item, match):
    with pytest.raises(AudiodiffError, match=match):
        apply_overrides({}, [item])


def test_override_of_an_unknown_key_names_it():
    with pytest.raises(AudiodiffError, match=r"train\.batchsize; did you mean 'batch_size'"):
        recipe_from_dict(apply_overrides({}, ["train.batchsize=8"]))


def test_override_accepts_scientific_notation_without_a_dot():
    assert recipe_from_dict(apply_overrides({}, ["train.lr=1e-3"])).train.lr == 1e-3  # a parsed literal: exact


def test_shipped_recipes_load():
    speech = load_recipe(REPO / "recipes" / "speech.yaml")
    assert speech.mel == PRESETS["hifigan"]
    assert (speech.model.residual_layers, speech.model.residual_channels) == (30, 64)
    assert (speech.diffusion.steps, speech.diffusion.beta_end, speech.data.crop_frames) == (50, 0.05, 62)
    demo = load_recipe(REPO / "recipes" / "demo.yaml", ["train.max_steps=5"])
    assert demo.data.path == "data/demo" and demo.train.max_steps == 5 and demo.train.lr == 1e-3


def test_load_recipe_errors(tmp_path):
    with pytest.raises(AudiodiffError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(AudiodiffError, match="not valid YAML"):
        load_recipe(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# all defaults\ntrain:\n")
    assert load_recipe(empty) == Recipe()


@pytest.mark.parametrize("text", ["- a\n- b\n", "train: 3\n"])
def test_recipe_file_that_is_not_a_mapping_is_a_user_error(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(AudiodiffError, match="mapping"):
        load_recipe(path)


@pytest.mark.parametrize("raw", [
    {},
    {"mel": {"preset": "diffwave"}, "train": {"batch_size": 4, "lr": 1.0e-3}, "data": {"path": "x/y"}},
    {"model": {"conditional": False, "num_classes": 3}, "diffusion": {"schedule": "cosine", "prediction": "v"}},
])
def test_to_dict_round_trip(raw, tmp_path):
    r = recipe_from_dict(raw)
    assert isinstance(r, Recipe)
    assert recipe_from_dict(r.to_dict()) == r
    save_recipe(r, tmp_path / "config.yaml")  # what a run directory keeps
    assert recipe_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text())) == r
    assert load_recipe(tmp_path / "config.yaml") == r


@pytest.mark.parametrize("raw,win,frames", [
    ({"mel": {"preset": "hifigan", "hop_length": 300}}, 1024, 22050 // 300),  # padded by (n_fft - hop) / 2: T // hop
    ({"mel": {"preset": "diffwave", "hop_length": 200}}, 800, 22050 // 200 + 1),  # centred frames: T // hop + 1
])
def test_a_valid_recipe_builds_its_mel_front_end(raw, win, frames):
    mel = recipe_from_dict(raw).mel
    assert mel.win_length == win  # the diffwave preset's window follows the hop (4 x hop), hifigan's stays
    out = MelSpectrogram(mel)(torch.zeros(22050))
    assert out.shape == (80, frames)  # the front end frames the audio with the recipe's hop


def test_diffwave_preset_with_a_larger_hop_fails_at_load_time():
    # Its window (4 x 300) would exceed n_fft: refused when the recipe loads, with the fix, and the fix works.
    with pytest.raises(AudiodiffError) as err:
        recipe_from_dict({"mel": {"preset": "diffwave", "hop_length": 300}})
    assert str(err.value) == ("mel: win_length 1200 exceeds n_fft 1024; set mel.n_fft to at least 1200 (the "
                              "diffwave preset uses win = 4 * hop)")
    mel = recipe_from_dict({"mel": {"preset": "diffwave", "hop_length": 300, "n_fft": 2048}}).mel
    assert mel.win_length == 1200 and MelSpectrogram(mel)(torch.zeros(22050)).shape == (80, 22050 // 300 + 1)


# --- the model section, tagged by model.arch ---------------------------------------------------------------------
# Every model key before the section was split by arch: what config.yaml, checkpoints and exported config.json files
# written until then hold, whatever the arch.
UNION = {"arch": "diffwave", "residual_layers": 30, "residual_channels": 64, "dilation_cycle": 10, "embed_dim": 512,
         "conditional": True, "num_classes": 0, "channels": 64, "channel_mults": [1, 2, 2, 4], "blocks_per_level": 2,
         "attention_levels": [], "image_frames": 64}


def test_model_section_is_the_dataclass_its_arch_names():
    from audiodiff.config import DiffWaveConfig, ModelConfig, UNet2DConfig

    assert type(recipe_from_dict({}).model) is DiffWaveConfig
    unet = recipe_from_dict({"model": {"arch": "unet2d", "channels": 8}}).model
    assert type(unet) is UNet2DConfig and unet.channels == 8 and not hasattr(unet, "residual_layers")
    assert ModelConfig(arch="unet2d", channels=8) == unet and ModelConfig() == DiffWaveConfig()
    assert isinstance(unet, ModelConfig) and isinstance(ModelConfig(), ModelConfig)
    with pytest.raises(AudiodiffError, match="unknown model.arch 'unet3d'; expected one of diffwave, unet2d"):
        ModelConfig(arch="unet3d")


@pytest.mark.parametrize("model, key, owner", [
    ({"channels": 8}, "channels", "unet2d"),
    ({"arch": "diffwave", "image_frames": 64}, "image_frames", "unet2d"),
    ({"arch": "unet2d", "residual_layers": 2}, "residual_layers", "diffwave"),
    ({"arch": "unet2d", "conditional": False}, "conditional", "diffwave"),
])
def test_a_key_of_the_other_arch_is_refused_by_name(model, key, owner):
    with pytest.raises(AudiodiffError) as err:
        recipe_from_dict({"model": model})
    arch = model.get("arch", "diffwave")
    assert str(err.value) == (f"recipe key model.{key} belongs to model.arch {owner}, not {arch}; remove it, or set "
                              f"model.arch: {owner}")


@pytest.mark.parametrize("arch", ["diffwave", "unet2d"])
def test_files_written_before_the_split_still_load(arch):
    old = {"model": {**UNION, "arch": arch, "num_classes": 3}}
    new = recipe_from_dict({"model": {"arch": arch, "num_classes": 3}})
    assert recipe_from_dict(old) == new  # the other arch's keys, all present, are dropped
    bundled = (REPO / "audiodiff" / "pretrained" / "speech-22k" / "config.json")
    import json

    cfg = json.loads(bundled.read_text())
    assert "channels" in cfg["model"]  # still an old, union file
    assert recipe_from_dict({k: cfg[k] for k in ("mel", "model", "diffusion")}).model == recipe_from_dict({}).model


def test_a_unet_tile_is_the_crop_width():
    r = recipe_from_dict({"model": {"arch": "unet2d"}, "data": {"crop_frames": 32}})
    assert r.model.image_frames == 32  # taken from data.crop_frames
    assert recipe_from_dict(r.to_dict()) == r  # and written out resolved
    assert recipe_from_dict({"model": {"arch": "unet2d"}}).model.image_frames == 64  # no crop width given: default
    digits = load_recipe(REPO / "recipes" / "digits.yaml")
    assert digits.model.image_frames == digits.data.crop_frames == 64


def test_the_mel_map_and_init_keys_round_trip_and_are_checked(tmp_path):
    r = recipe_from_dict({"model": {"mel_shift": 9.21, "mel_scale": 0.087, "init": "kaiming"}})
    save_recipe(r, tmp_path / "r.yaml")
    again = load_recipe(tmp_path / "r.yaml")
    assert (again.model.mel_shift, again.model.mel_scale, again.model.init) == (9.21, 0.087, "kaiming")
    with pytest.raises(AudiodiffError, match="model.mel_scale"):
        recipe_from_dict({"model": {"mel_scale": 0}})
    with pytest.raises(AudiodiffError, match="model.init"):
        recipe_from_dict({"model": {"init": "xavier"}})
