"""Recipe values are checked before anything is written: the valid choices and ranges declared on the config fields
(``audiodiff/ranges.py``), the relations between fields, the model's size, and what only code can check (the
backbone builds, the default sampler can sample). A refused ``train`` leaves no run directory behind, and the
corrected command then trains in it. docs/reliability.md lists these cases.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from audiodiff.audio.mel import MelConfig
from audiodiff.config import ModelConfig, apply_overrides, model_parameters, recipe_from_dict
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone

from test_reliability import assert_one_error_line, corpus, run_cli, write_recipe  # noqa: F401 (corpus: a fixture)

SAMPLERS = "ddim, ddpm, dpmpp, fast, heun, pc"

# Bad recipe values and the one line each gives (after "error: "). Each is refused before the run directory exists,
# so that the corrected command then runs in the same directory, and before any training (a bad sampler would
# otherwise show only at export, and max_steps -1 would exit 0 having done nothing).
ISSUE_CASES = {
    "diffusion.schedule=cosin": "recipe key diffusion.schedule: 'cosin' is not one of linear, cosine; did you mean "
                                "'cosine'?",
    "diffusion.prediction=x0": "recipe key diffusion.prediction: 'x0' is not one of eps, v",
    "diffusion.loss=l3": "recipe key diffusion.loss: 'l3' is not one of l1, l2",
    "mel.log=log2": "recipe key mel.log: 'log2' is not one of ln, log10, db, diffwave; did you mean 'log10'?",
    "mel.mel_scale=mel": "recipe key mel.mel_scale: 'mel' is not one of slaney, htk",
    "diffusion.sampler=fsat": f"recipe key diffusion.sampler: 'fsat' is not one of {SAMPLERS}; did you mean 'fast'?",
    "train.batch_size=0": "recipe key train.batch_size: 0 is out of range; expected an integer >= 1",
    "train.batch_size=-2": "recipe key train.batch_size: -2 is out of range; expected an integer >= 1",
    "train.checkpoint_every=0": "recipe key train.checkpoint_every: 0 is out of range; expected an integer >= 1",
    "train.log_every=0": "recipe key train.log_every: 0 is out of range; expected an integer >= 1",
    "data.crop_frames=0": "recipe key data.crop_frames: 0 is out of range; expected an integer >= 1",
    "data.crop_frames=-8": "recipe key data.crop_frames: -8 is out of range; expected an integer >= 1",
    "train.max_steps=-1": "recipe key train.max_steps: -1 is out of range; expected an integer >= 1",
    "model.residual_channels=200000": "recipe keys model.residual_layers 2, model.residual_channels 200000, "
                                      "model.embed_dim 16 make a diffwave of about 6.8e+11 parameters (13,600 GB to "
                                      "train); expected at most 1e+09; make the model smaller",
}


@pytest.mark.parametrize("override", list(ISSUE_CASES))
def test_bad_value_is_refused_before_the_run_directory_exists(tmp_path, corpus, capsys, override):
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=2), tmp_path / "run"
    code, out, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress", "--set", override)
    assert_one_error_line(code, err, ISSUE_CASES[override])
    assert out == "" and not run_dir.exists()
    code, out, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress")  # the corrected command
    assert code == 0, err
    assert out.startswith(f"done: checkpoint {run_dir / 'checkpoints' / 'ckpt-00000002.pt'};")


# Checks that need code, made by train() before the run directory is touched. A unet2d case replaces the tiny
# recipe's diffwave model section (whose keys a unet2d section refuses) with a tiny U-Net's.
UNET = {"arch": "unet2d", "channels": 8, "channel_mults": [1], "blocks_per_level": 1, "embed_dim": 16}
CODE_CASES = {
    "fast sampler, too many steps": (
        None, ["diffusion.sample_steps=14"],
        "diffusion.sampler fast with diffusion.sample_steps 14: fast: the short schedule for 14 steps reaches sigma "
        "1.62, above the model's sigma_max 1.6 (alpha_bar 0.276 < 0.28); use fewer steps, smaller betas, or "
        "the ddim sampler"),
    "unet2d width not split into attention heads": (
        UNET, ["model.channels=6"], "model: attention: 6 channels do not split into 4 heads"),
    "unet2d crops not a tile": (
        {**UNET, "image_frames": 64}, [],
        "data.crop_frames (8) must equal model.image_frames (64) for arch unet2d; set data.crop_frames: 64"),
}


@pytest.mark.parametrize("case", list(CODE_CASES))
def test_what_only_code_can_check_is_checked_before_writing(tmp_path, corpus, capsys, case):
    model, overrides, message = CODE_CASES[case]
    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", corpus, max_steps=2), tmp_path / "run"
    if model is not None:
        raw = yaml.safe_load(recipe.read_text())
        recipe.write_text(yaml.safe_dump({**raw, "model": model}))
    sets = [a for o in overrides for a in ("--set", o)]
    code, out, err = run_cli(capsys, "train", recipe, "--run-dir", run_dir, "--no-progress", *sets)
    assert_one_error_line(code, err, message)
    assert not run_dir.exists()


# Every other declared range and relation, at the recipe level: (--set items, the key the message must name first).
RANGE_CASES = {
    "mel.sample_rate=0": "mel.sample_rate: 0 is out of range; expected an integer >= 1",
    "mel.n_fft=100000": "mel.n_fft: 100000 is out of range; expected an integer in [1, 65536]",
    "mel.hop_length=0": "mel.hop_length: 0 is out of range; expected an integer >= 1",
    "mel.n_mels=0": "mel.n_mels: 0 is out of range; expected an integer >= 1",
    "mel.fmin=-1": "mel.fmin: -1.0 is out of range; expected a number >= 0",
    "mel.fmax=0": "mel.fmax: 0.0 is out of range; expected a number > 0",
    "mel.fmax=12000": "mel.fmax: 12000 is above half of mel.sample_rate 22050; expected at most 11025 Hz, or null for "
                      "sample_rate / 2",
    "mel.sample_rate=8000": "mel.fmax: 8000 is above half of mel.sample_rate 8000; expected at most 4000 Hz, or null "
                            "for sample_rate / 2",
    "mel.fmin=9000": "mel.fmin: 9000 is not below mel.fmax (8000 Hz); expected fmin < fmax",
    "mel.hop_length=2000": "mel.hop_length: 2000 exceeds mel.win_length 1024, so frames would skip audio between "
                           "windows; expected hop_length <= win_length",
    "mel.mel_norm=area": "mel.mel_norm: 'area' is not one of slaney, null",
    "mel.mag_eps=-1e-9": "mel.mag_eps: -1e-09 is out of range; expected a number >= 0",
    "model.arch=unet3d": "model.arch: 'unet3d' is not one of diffwave, unet2d; did you mean 'unet2d'?",
    "model.residual_layers=0": "model.residual_layers: 0 is out of range; expected an integer >= 1",
    "model.dilation_cycle=40": "model.dilation_cycle: 40 is out of range; expected an integer in [1, 16]",
    "model.embed_dim=0": "model.embed_dim: 0 is out of range; expected an integer >= 1",
    "model.num_classes=-1": "model.num_classes: -1 is out of range; expected an integer >= 0",
    "model.channel_mults=[1,0]": "model.channel_mults: [1, 0] is out of range; expected each item >= 1",
    "model.blocks_per_level=0": "model.blocks_per_level: 0 is out of range; expected an integer >= 1",
    "model.image_frames=0": "model.image_frames: 0 is out of range; expected an integer >= 1",
    "diffusion.steps=0": "diffusion.steps: 0 is out of range; expected an integer in [1, 10000]",
    "diffusion.beta_end=1": "diffusion.beta_end: 1.0 is out of range; expected a number in (0, 1)",
    "diffusion.beta_start=0.1": "diffusion.beta_start: 0.1 is not below diffusion.beta_end 0.05; expected beta_start "
                                "< beta_end (DiffWave: 1e-4 and 0.05)",
    "diffusion.sample_steps=0": "diffusion.sample_steps: 0 is out of range; expected an integer in [1, 10000]",
    "data.valid_files=-1": "data.valid_files: -1 is out of range; expected an integer >= 0",
    "data.num_workers=-1": "data.num_workers: -1 is out of range; expected an integer >= 0",
    "data.labels=suffix": "data.labels: 'suffix' is not one of prefix, null",
    "data.speed_perturb=0.5": "data.speed_perturb: 0.5 is out of range; expected a number in [0, 0.5)",
    "train.lr=-1e-3": "train.lr: -0.001 is out of range; expected a number >= 0",
    "train.lr=.nan": "train.lr: nan is out of range; expected a number >= 0",
    "train.lr=.inf": "train.lr: inf is out of range; expected a number >= 0",
    "train.weight_decay=-0.1": "train.weight_decay: -0.1 is out of range; expected a number >= 0",
    "train.warmup_steps=-1": "train.warmup_steps: -1 is out of range; expected an integer >= 0",
    "train.max_steps=0": "train.max_steps: 0 is out of range; expected an integer >= 1",
    "train.max_minutes=-5": "train.max_minutes: -5.0 is out of range; expected a number >= 0",
    "train.grad_clip=0": "train.grad_clip: 0.0 is out of range; expected a number > 0",
    "train.ema_decay=1": "train.ema_decay: 1.0 is out of range; expected a number in [0, 1)",
    "train.seed=-1": "train.seed: -1 is out of range; expected an integer in [0, 4294967295]",
    "train.valid_every=0": "train.valid_every: 0 is out of range; expected an integer >= 1",
    "train.keep_checkpoints=-1": "train.keep_checkpoints: -1 is out of range; expected an integer >= 0 (0 keeps every "
                                 "checkpoint)",
    "train.max_bad_steps=0": "train.max_bad_steps: 0 is out of range; expected an integer >= 1",
    "train.label_dropout=1": "train.label_dropout: 1.0 is out of range; expected a number in [0, 1)",
    "train.precision=fp8": "train.precision: 'fp8' is not one of auto, bf16, fp16, fp32",
    "train.lr_decay=cosin": "train.lr_decay: 'cosin' is not one of none, cosine; did you mean 'cosine'?",
}


@pytest.mark.parametrize("override", list(RANGE_CASES))
def test_declared_ranges_name_the_key_the_value_and_what_is_valid(override):
    with pytest.raises(AudiodiffError) as err:
        recipe_from_dict(apply_overrides({}, [override]))
    assert str(err.value) == f"recipe key {RANGE_CASES[override]}"


@pytest.mark.parametrize("overrides, message", [
    (["model.arch=unet2d", "model.attention_levels=[5]"],
     "recipe key model.attention_levels: [5] names level 5, but model.channel_mults [1, 2, 2, 4] has levels 0..3; "
     "expected levels in that range"),
    (["model.arch=unet2d", "model.channel_mults=[]"],
     "recipe key model.channel_mults: [] is empty; expected one width multiple per level, e.g. [1, 2, 2, 4]"),
    (["model.arch=unet2d", "model.channels=100000"],
     "recipe keys model.channels 100000, model.channel_mults [1, 2, 2, 4], model.blocks_per_level 2, model.embed_dim "
     "512 make a unet2d of about 2.98e+13 parameters (596,446 GB to train); expected at most 1e+09; make the model "
     "smaller"),
    (["model.embed_dim=100000"],
     "recipe keys model.residual_layers 30, model.residual_channels 64, model.embed_dim 100000 make a diffwave of "
     "about 1.02e+10 parameters (204 GB to train); expected at most 1e+09; make the model smaller"),
])
def test_relations_between_fields_are_checked(overrides, message):
    with pytest.raises(AudiodiffError) as err:
        recipe_from_dict(apply_overrides({}, overrides))
    assert str(err.value) == message


def test_valid_boundary_values_load():
    r = recipe_from_dict(apply_overrides({}, [
        "train.lr=0", "train.keep_checkpoints=0", "train.ema_decay=0", "train.warmup_steps=0", "data.valid_files=0",
        "mel.fmax=null", "mel.fmax=11025", "mel.sample_rate=8000", "mel.fmax=4000", "train.seed=4294967295",
        "mel.mel_norm=null", "model.arch=unet2d", "model.attention_levels=[3]", "data.labels=null"]))
    assert (r.train.lr, r.mel.fmax, r.model.attention_levels, r.mel.mel_norm) == (0.0, 4000.0, (3,), None)


@pytest.mark.parametrize("model", [
    ModelConfig(), ModelConfig(conditional=False), ModelConfig(num_classes=10),
    ModelConfig(residual_layers=2, residual_channels=4, dilation_cycle=2, embed_dim=16),
    ModelConfig(arch="unet2d"), ModelConfig(arch="unet2d", channels=8, channel_mults=(1, 2), blocks_per_level=1,
                                            attention_levels=(0,), embed_dim=16, num_classes=3),
], ids=["diffwave", "unconditional", "classes", "tiny", "unet2d", "unet2d-tiny"])
def test_parameter_estimate_matches_the_built_model(model):
    mel = MelConfig()
    with torch.device("meta"):
        built = sum(p.numel() for p in build_backbone(model, mel).parameters())
    assert abs(model_parameters(model, mel.n_mels) - built) <= 200  # all but the mel upsampler's 194


def test_exported_model_config_is_checked_by_the_same_ranges(tmp_path, tiny_model_dir):
    from audiodiff.vocoder import Vocoder

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    cfg = json.loads((model / "config.json").read_text())
    cfg["diffusion"]["sampler"] = "fsat"
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AudiodiffError) as err:
        Vocoder.from_pretrained(model, device="cpu")
    assert str(err.value) == (f"{model / 'config.json'}: not a valid audiodiff model config (recipe key "
                              f"diffusion.sampler: 'fsat' is not one of {SAMPLERS}; did you mean 'fast'?)")
