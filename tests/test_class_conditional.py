"""Class-conditional waveform models: labels from file names reach the backbone, with label dropout to the null
class, and mismatched settings fail with a message that says what to set."""

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.config import recipe_from_dict
from audiodiff.data import class_labels
from audiodiff.errors import AudiodiffError
from audiodiff.training import train
from audiodiff.training.checkpoint import load_latest


def _corpus(folder):
    folder.mkdir()
    t = np.arange(22050) / 22050
    for label, f0 in (("3", 150.0), ("7", 260.0)):
        for take in range(2):
            sf.write(folder / f"{label}_spk_{take}.wav", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 22050)
    return folder


def test_labels_from_file_name_prefix(tmp_path):
    files = sorted(_corpus(tmp_path / "d").iterdir())
    labels, classes = class_labels(files, "prefix", 2)
    assert classes == ["3", "7"] and labels == [0, 0, 1, 1]
    with pytest.raises(AudiodiffError, match="set model.num_classes: 2"):
        class_labels(files, "prefix", 10)
    with pytest.raises(AudiodiffError, match="set data.labels: prefix"):
        class_labels(files, None, 2)


def test_class_conditional_training_learns_every_class_and_the_null_token(tmp_path):
    data = _corpus(tmp_path / "d")
    recipe = recipe_from_dict({
        "mel": {"n_mels": 16, "hop_length": 64, "n_fft": 256, "win_length": 256},
        "model": {"residual_layers": 2, "residual_channels": 4, "dilation_cycle": 2, "embed_dim": 16,
                  "conditional": False, "num_classes": 2},
        "data": {"path": str(data), "labels": "prefix", "valid_files": 0, "crop_frames": 8, "num_workers": 0},
        "train": {"batch_size": 4, "max_steps": 3, "checkpoint_every": 3, "valid_every": 1000, "warmup_steps": 1,
                  "label_dropout": 0.5, "lr": 1e-2},
    })
    train(recipe, tmp_path / "run", device="cpu", progress=False)
    assert (tmp_path / "run" / "classes.txt").read_text().split() == ["3", "7"]
    state, _ = load_latest(tmp_path / "run")
    torch.manual_seed(recipe.train.seed)  # the initial table, as train() builds it
    from audiodiff.factory import build_backbone

    initial = build_backbone(recipe.model, recipe.mel).class_embedding.table.weight
    trained = state["model"]["class_embedding.table.weight"]
    changed = (trained - initial).abs().sum(dim=1) > 0
    assert changed.tolist() == [True, True, True]  # both classes and the null token (row 2) received gradients


@pytest.mark.parametrize("name, classes", [("unconditional", None), ("class-conditional", ["3", "7"])])
def test_waveform_generator_recipes_train(tmp_path, name, classes):
    """recipes/unconditional.yaml and recipes/class-conditional.yaml load and train (tiny sizes, 2 steps, with
    validation): a waveform model without mel input, with class embeddings for every class and the null class when
    class-conditional, on labels read from the digit prefix of the file names."""
    from pathlib import Path

    from audiodiff.config import load_recipe

    folder = tmp_path / "digits"
    folder.mkdir()
    t = np.arange(8000) / 8000
    for label, f0 in (("3", 150.0), ("7", 260.0)):
        for take in range(3):
            sf.write(folder / f"{label}_spk_{take}.wav", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 8000)
    path = Path(__file__).resolve().parents[1] / "recipes" / f"{name}.yaml"
    full = load_recipe(path)
    assert (full.model.arch, full.model.conditional, full.mel.sample_rate) == ("diffwave", False, 8000)
    assert full.model.num_classes == (10 if classes else 0) and full.data.labels == ("prefix" if classes else None)
    tiny = load_recipe(path, [f"data.path={folder}", "data.valid_files=2", "data.crop_frames=8", "data.num_workers=0",
                              "model.residual_layers=2", "model.residual_channels=4", "model.dilation_cycle=2",
                              "model.embed_dim=16", f"model.num_classes={len(classes or [])}", "train.batch_size=2",
                              "train.max_steps=2", "train.checkpoint_every=2", "train.valid_every=2",
                              "train.warmup_steps=1"])
    train(tiny, tmp_path / "run", device="cpu", progress=False)
    state, path = load_latest(tmp_path / "run")
    assert path.name == "ckpt-00000002.pt" and state["recipe"] == tiny.to_dict()
    assert not any("upsampler" in k or "cond_proj" in k for k in state["model"])  # no mel input
    table = state["model"].get("class_embedding.table.weight")
    assert (table is None) if classes is None else table.shape[0] == len(classes) + 1
    listed = tmp_path / "run" / "classes.txt"
    assert (listed.read_text().split() if listed.exists() else None) == classes
    assert any((tmp_path / "run" / "logs").iterdir())  # validation ran (its loss) without a mel to vocode
    # Exported, the run is a WaveGenerator that keeps the class names and samples at the model's rate.
    from audiodiff.training.export import export
    from audiodiff.wavegen import WaveGenerator

    export(tmp_path / "run", tmp_path / "model")
    gen = WaveGenerator.from_pretrained(tmp_path / "model", device="cpu")
    assert gen.classes == classes
    wav = gen(labels=[gen.label(c) for c in classes] if classes else None, batch=None if classes else 2, frames=4, steps=2, seed=0)
    assert wav.shape == (2, 4 * tiny.mel.hop_length) and torch.isfinite(torch.as_tensor(wav)).all()
