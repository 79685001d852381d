"""Training on a few generated tones: the run directory, checkpoint rotation, resume that reproduces an
uninterrupted run, export to a loadable vocoder, and DDP replicas that stay identical (2 CPU processes)."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest
import torch
import yaml

from audiodiff.config import recipe_from_dict
from audiodiff.errors import AudiodiffError
from audiodiff.training import export, train
from audiodiff.training.state import lr_factor
from audiodiff.training.checkpoint import list_checkpoints, load_checkpoint
from audiodiff.vocoder import Vocoder

from conftest import states_equal, torchrun_train

TINY = {
    "model": {"residual_layers": 2, "residual_channels": 4, "embed_dim": 16},
    "data": {"crop_frames": 8, "num_workers": 0, "valid_files": 0},
    "train": {"batch_size": 2, "max_steps": 4, "checkpoint_every": 2, "valid_every": 1000, "log_every": 1,
              "warmup_steps": 2, "lr": 1e-2, "ema_decay": 0.9},
}


def tiny_recipe(data, **train):
    raw = {section: dict(values) for section, values in TINY.items()}
    raw["data"]["path"] = str(data)
    raw["train"].update(train)
    return recipe_from_dict(raw)


def run(recipe, run_dir, seed: int = 0):
    # The caller's global RNG must not matter (test_same_recipe_same_weights); `seed` varies it to show that.
    torch.manual_seed(seed)
    return train(recipe, run_dir, device="cpu", progress=False)


def test_run_directory_checkpoints_and_rotation(tone_dir, tmp_path):
    recipe = tiny_recipe(tone_dir, max_steps=5, checkpoint_every=1, keep_checkpoints=2)
    last = run(recipe, tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recipe_from_dict(saved) == recipe  # the resolved recipe, every field
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000004.pt", "ckpt-00000005.pt"]
    assert last == tmp_path / "run" / "checkpoints" / "ckpt-00000005.pt"
    state = load_checkpoint(last)
    assert state["step"] == 5 and state["ema"]["updates"] == 5
    assert {"model", "ema", "optimizer", "scheduler", "scaler", "recipe", "elapsed"} <= set(state)
    assert recipe_from_dict(state["recipe"]) == recipe
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))  # no temporary files left behind
    assert any((tmp_path / "run" / "logs").iterdir())  # TensorBoard events


def test_final_step_is_saved_even_off_the_checkpoint_grid(tone_dir, tmp_path):
    run(tiny_recipe(tone_dir, max_steps=3, checkpoint_every=2), tmp_path / "run")
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000002.pt", "ckpt-00000003.pt"]


def test_resume_reproduces_an_uninterrupted_run(tone_dir, tmp_path):
    full = load_checkpoint(run(tiny_recipe(tone_dir, max_steps=4), tmp_path / "full"))
    first = load_checkpoint(run(tiny_recipe(tone_dir, max_steps=2), tmp_path / "split"))
    assert first["step"] == 2
    resumed = load_checkpoint(run(tiny_recipe(tone_dir, max_steps=4), tmp_path / "split", seed=123))  # any RNG state
    assert resumed["step"] == 4 and resumed["ema"]["updates"] == 4
    assert not states_equal(first["model"], resumed["model"])  # it trained on
    assert states_equal(full["model"], resumed["model"])
    assert states_equal(full["ema"]["model"], resumed["ema"]["model"])
    for (ka, a), (kb, b) in zip(full["optimizer"]["state"].items(), resumed["optimizer"]["state"].items()):
        assert ka == kb and all(torch.equal(a[n], b[n]) for n in a)
    assert full["scheduler"]["last_epoch"] == resumed["scheduler"]["last_epoch"] == 4
    # Resuming a finished run trains no further and keeps the last checkpoint.
    again = run(tiny_recipe(tone_dir, max_steps=4), tmp_path / "split")
    assert again.name == "ckpt-00000004.pt" and states_equal(load_checkpoint(again)["model"], resumed["model"])


def test_cosine_decay_warms_up_then_falls_to_zero_at_max_steps():
    tc = tiny_recipe("unused", warmup_steps=10, max_steps=110, lr_decay="cosine").train
    # Closed forms in float64 (a ramp, a cosine at exact points): a few eps64 off; approx's 1e-6 relative is ample.
    assert lr_factor(0, tc) == pytest.approx(0.1) and lr_factor(9, tc) == pytest.approx(1.0)
    assert lr_factor(10, tc) == pytest.approx(1.0) and lr_factor(60, tc) == pytest.approx(0.5)
    assert lr_factor(110, tc) == pytest.approx(0.0, abs=1e-12) and lr_factor(500, tc) == pytest.approx(0.0, abs=1e-12)
    factors = [lr_factor(s, tc) for s in range(10, 111)]
    assert all(a > b for a, b in zip(factors, factors[1:]))  # strictly falling after the warm-up
    constant = tiny_recipe("unused", warmup_steps=10, max_steps=110).train
    assert [lr_factor(s, constant) for s in (0, 9, 60, 500)] == pytest.approx([0.1, 1.0, 1.0, 1.0])


def test_training_follows_the_recipes_learning_rate_curve_and_data_options(tone_dir, tmp_path):
    # train() must use lr_factor with the recipe's lr_decay, and pass data.speed_perturb to its dataset.
    for decay, expected in (("none", 1e-2), ("cosine", 0.0)):
        state = load_checkpoint(run(tiny_recipe(tone_dir, warmup_steps=1, lr_decay=decay), tmp_path / decay))
        # After max_steps = 4: lr times an exact factor (1, or 0.5 (1 + cos pi) = 0) in float64.
        assert state["scheduler"]["_last_lr"][0] == pytest.approx(expected, abs=1e-12)
    raw = {section: dict(values) for section, values in TINY.items()}
    raw["data"].update(path=str(tone_dir), speed_perturb=0.7)
    with pytest.raises(AudiodiffError, match="speed_perturb"):
        run(recipe_from_dict(raw), tmp_path / "perturb")


def test_same_recipe_same_weights(tone_dir, tmp_path):
    # train.seed alone decides the initial weights (e7043d2 still drew them from the caller's global RNG).
    recipe = tiny_recipe(tone_dir, max_steps=1)
    torch.manual_seed(1)
    a = load_checkpoint(train(recipe, tmp_path / "a", device="cpu", progress=False))
    torch.manual_seed(2)  # whatever the caller's RNG state, train.seed should decide
    b = load_checkpoint(train(recipe, tmp_path / "b", device="cpu", progress=False))
    assert states_equal(a["model"], b["model"])
    c = load_checkpoint(run(tiny_recipe(tone_dir, max_steps=1, seed=1), tmp_path / "c"))
    assert not states_equal(a["model"], c["model"])


def test_validation_logs_loss_and_a_sample(tone_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = recipe_from_dict({**TINY, "data": {**TINY["data"], "path": str(tone_dir), "valid_files": 1},
                               "train": {**TINY["train"], "max_steps": 2, "valid_every": 2}})
    run(recipe, tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "logs"), size_guidance={"audio": 0, "images": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "valid/loss"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("valid/loss")] == [2]
    assert "valid/generated" in tags["audio"] and "valid/mel_generated" in tags["images"]


def test_resume_refuses_a_different_model(tone_dir, tmp_path):
    run(tiny_recipe(tone_dir, max_steps=1), tmp_path / "run")
    other = recipe_from_dict({**TINY, "model": {**TINY["model"], "residual_channels": 8},
                              "data": {**TINY["data"], "path": str(tone_dir)}})
    with pytest.raises(AudiodiffError, match="different model settings"):
        run(other, tmp_path / "run")


def test_training_without_data_says_how_to_give_it(tmp_path, monkeypatch):
    monkeypatch.delenv("AUDIODIFF_DATA", raising=False)
    recipe = recipe_from_dict(TINY)  # no data.path
    with pytest.raises(AudiodiffError, match="--data"):
        run(recipe, tmp_path / "run")


def test_export_writes_a_loadable_model_with_the_ema_weights(tone_dir, tmp_path):
    last = run(tiny_recipe(tone_dir, max_steps=2), tmp_path / "run")
    out = export(tmp_path / "run", tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    voc = Vocoder.from_pretrained(out, device="cpu")
    assert states_equal(voc.net.state_dict(), load_checkpoint(last)["ema"]["model"])
    assert voc.model_config.residual_layers == 2 and voc.mel_config.hop_length == 256
    wav = voc(torch.zeros(80, 4) - 5.0, seed=0)
    assert wav.shape == (4 * 256,) and torch.isfinite(wav).all()
    trained = Vocoder.from_pretrained(export(tmp_path / "run", tmp_path / "trained", weights="model"), device="cpu")
    assert states_equal(trained.net.state_dict(), load_checkpoint(last)["model"])  # bench/quality.py --weights model
    assert not states_equal(trained.net.state_dict(), voc.net.state_dict())
    with pytest.raises(AudiodiffError, match="must differ from the run directory"):
        export(tmp_path / "run", tmp_path / "run")
    with pytest.raises(AudiodiffError, match="no checkpoint"):
        export(tmp_path / "empty", tmp_path / "model2")


def test_init_fine_tunes_from_an_exported_model(tone_dir, tmp_path):
    run(tiny_recipe(tone_dir, max_steps=2), tmp_path / "run")
    model = export(tmp_path / "run", tmp_path / "model")
    start = Vocoder.from_pretrained(model, device="cpu").net.state_dict()
    last = run(tiny_recipe(tone_dir, max_steps=1, lr=0.0, init=str(model)), tmp_path / "tuned")
    # lr 0: the step changes nothing, so the weights are exactly the exported model's.
    assert states_equal(load_checkpoint(last)["model"], start)
    scratch = run(tiny_recipe(tone_dir, max_steps=1, lr=0.0), tmp_path / "scratch")
    assert not states_equal(load_checkpoint(scratch)["model"], start)


def test_init_refuses_a_model_with_other_settings(tone_dir, tmp_path):
    run(tiny_recipe(tone_dir, max_steps=1), tmp_path / "run")
    model = export(tmp_path / "run", tmp_path / "model")
    other = recipe_from_dict({**TINY, "model": {**TINY["model"], "residual_channels": 8},
                              "data": {**TINY["data"], "path": str(tone_dir)},
                              "train": {**TINY["train"], "init": str(model)}})
    with pytest.raises(AudiodiffError, match="train.init: .* different model settings"):
        run(other, tmp_path / "tuned")
    with pytest.raises(AudiodiffError, match="train.init must name"):
        run(tiny_recipe(tone_dir, init=str(tmp_path / "nowhere")), tmp_path / "tuned2")


DDP_SCRIPT = textwrap.dedent("""
    # Runs `audiodiff train` through the CLI under torchrun. The network is captured where the loop builds it:
    # rank 1's initial weights are perturbed (so only DDP's broadcast can make the replicas agree), and after
    # training every rank saves its initial and final weights for the test to compare.
    import os, sys
    import torch
    from audiodiff import cli
    from audiodiff.training import loop

    rank = int(os.environ["RANK"])
    built, init = [], {}
    original = loop.build_backbone

    def build(*args, **kwargs):
        net = original(*args, **kwargs)
        if rank == 1:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.1)
        init.update({k: v.clone() for k, v in net.state_dict().items()})
        built.append(net)
        return net

    loop.build_backbone = build
    try:
        cli.main(sys.argv[2:])
    except SystemExit as exit:
        assert exit.code in (0, None), exit.code
    torch.save({"init": init, "final": built[0].state_dict()}, os.path.join(sys.argv[1], f"rank{rank}.pt"))
""")


def test_ddp_replicas_hold_identical_weights(tone_dir, tmp_path):
    r0, r1 = torchrun_train(tmp_path, {**TINY, "train": {**TINY["train"], "max_steps": 3, "checkpoint_every": 3,
                                                        "keep_checkpoints": 1}}, DDP_SCRIPT, tone_dir, 240)
    assert not states_equal(r0["init"], r1["init"])  # the replicas were built differently...
    assert states_equal(r0["final"], r1["final"])  # ...and DDP kept them identical
    assert not states_equal(r0["init"], r0["final"])  # training moved the weights
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt-00000003.pt")
    assert state["step"] == 3 and states_equal(state["model"], r0["final"])
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000003.pt"]
