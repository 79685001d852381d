"""audiodiff.artifacts, the one reader and writer of exported model directories: nothing else in the package opens
their files; the config and recipe read without the weights; a tuned schedule is recorded without touching
anything else; any exported model loads by its format tag."""

from __future__ import annotations

import ast
import json
import shutil

import pytest
import torch

from audiodiff import artifacts, melgen, vocoder
from audiodiff.audio.mel import MelConfig
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone
from audiodiff.melgen import MelGenerator
from audiodiff.vocoder import Vocoder
from conftest import REPO

FILES = (artifacts.CONFIG, artifacts.WEIGHTS)
STAT_CALLS = ("is_file", "exists")  # a test that a file is there opens nothing


def model_file_uses(source: str) -> list[str]:
    """Where ``source`` imports safetensors or builds a path to a model directory's files (``x / "config.json"``,
    ``open("model.safetensors")``, ``Path(...)``, ``os.path.join``), other than to test that the file exists."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] == "safetensors"]
        if not (isinstance(node, ast.Constant) and node.value in FILES):
            continue
        parent = parents.get(node)
        as_path = (isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div)) or (
            isinstance(parent, ast.Call) and node in parent.args)
        if not as_path:
            continue
        holder = parents.get(parent)
        stat = isinstance(holder, ast.Attribute) and holder.attr in STAT_CALLS and holder.value is parent
        if not stat:
            found.append(f"line {node.lineno}: {ast.unparse(parent)}")
    return found


def test_the_checker_finds_reads_and_writes_and_passes_existence_tests():
    assert model_file_uses("cfg = json.loads((path / 'config.json').read_text())") == [
        "line 1: path / 'config.json'"]
    assert model_file_uses("f = open('model.safetensors', 'rb')") == ["line 1: open('model.safetensors', 'rb')"]
    assert model_file_uses("from safetensors.torch import load_file") == ["line 1: imports safetensors.torch"]
    assert model_file_uses("import safetensors") == ["line 1: imports safetensors"]
    assert model_file_uses("ok = (path / 'config.json').is_file()") == []
    assert model_file_uses('"""Writes config.json."""\nraise E(f"{p} needs config.json")') == []


def test_only_artifacts_opens_a_model_directorys_files():
    package = REPO / "audiodiff"
    uses = {str(p.relative_to(REPO)): model_file_uses(p.read_text()) for p in sorted(package.rglob("*.py"))
            if p != package / "artifacts.py"}
    assert len(uses) > 40  # the whole package was read
    assert {path: found for path, found in uses.items() if found} == {}
    assert model_file_uses((package / "artifacts.py").read_text())  # where they are opened: the checker sees it


def make_generator(path):
    torch.manual_seed(0)
    mel = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16, fmax=4000.0)
    model = ModelConfig(arch="unet2d", channels=8, channel_mults=(1, 2), blocks_per_level=1, embed_dim=16,
                        num_classes=3, image_frames=12)
    diffusion = DiffusionConfig(schedule="cosine", steps=100, sampler="ddim", sample_steps=2)
    return MelGenerator(build_backbone(model, mel), mel, model, diffusion, ["a", "b", "c"]).save_pretrained(path)


def test_formats_name_the_inference_classes():
    assert artifacts.FORMATS == {vocoder.FORMAT: ("audiodiff.vocoder", "Vocoder"),
                                 melgen.FORMAT: ("audiodiff.melgen", "MelGenerator")}


def test_load_model_picks_the_class_by_format(tiny_model_dir, tmp_path):
    voc = artifacts.load_model(tiny_model_dir, device="cpu", steps=2)
    assert type(voc) is Vocoder and voc.steps == 2 and voc.n_mels == 80
    gen = artifacts.load_model(make_generator(tmp_path / "gen"), device="cpu")
    assert type(gen) is MelGenerator and gen.classes == ["a", "b", "c"]
    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, odd)
    cfg = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**cfg, "format": "other"}))
    with pytest.raises(AudiodiffError) as err:
        artifacts.load_model(odd)
    assert str(err.value) == (f"{odd / 'config.json'}: not a valid audiodiff model config (format is 'other', not "
                              f"'audiodiff-vocoder' or 'audiodiff-melgen')")


def test_read_recipe_needs_no_weights(tiny_model_dir, tmp_path):
    only_config = tmp_path / "cfg"
    only_config.mkdir()
    shutil.copy(tiny_model_dir / "config.json", only_config / "config.json")
    cfg, recipe = artifacts.read_recipe(only_config, weights=False)
    assert recipe.mel == Vocoder.from_pretrained(tiny_model_dir, device="cpu").mel_config
    assert cfg["format"] == vocoder.FORMAT
    with pytest.raises(AudiodiffError) as err:
        artifacts.read_recipe(only_config)
    assert str(err.value) == (f"{only_config} is not an audiodiff model (needs config.json and model.safetensors); "
                              f"pass a directory made by `audiodiff export`")
    with pytest.raises(AudiodiffError) as err:
        artifacts.read_recipe(tmp_path, weights=False)
    assert str(err.value) == (f"{tmp_path} is not an audiodiff model (needs config.json); pass a directory made by "
                              f"`audiodiff export`")
    (only_config / "config.json").write_text("[1, 2]")
    with pytest.raises(AudiodiffError, match=r"config.json: not a valid audiodiff model config \(format is None"):
        artifacts.read_recipe(only_config, weights=False)


def test_store_tuned_schedule_rewrites_only_the_schedule(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = json.loads((model / "config.json").read_text())
    weights = (model / "model.safetensors").read_bytes()
    artifacts.store_tuned_schedule(model, 2, [0.25, 0.5])
    artifacts.store_tuned_schedule(model, 3, [0.001, 0.01, 0.5])
    after = json.loads((model / "config.json").read_text())
    assert after == {**before, "tuned_schedules": {"2": [0.25, 0.5], "3": [0.001, 0.01, 0.5]}}
    assert list(after) == list(before)  # the keys keep their order
    assert (model / "model.safetensors").read_bytes() == weights
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "model.safetensors"]  # no temporary left
    assert Vocoder.from_pretrained(model, device="cpu").tuned_schedules == after["tuned_schedules"]


def test_store_tuned_schedule_refuses_a_generator(tmp_path):
    gen = make_generator(tmp_path / "gen")
    config = (gen / "config.json").read_bytes()
    with pytest.raises(AudiodiffError, match="format is 'audiodiff-melgen', not 'audiodiff-vocoder'"):
        artifacts.store_tuned_schedule(gen, 2, [0.25, 0.5])
    assert (gen / "config.json").read_bytes() == config
