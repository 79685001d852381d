"""Few-step fine-tuning (issue 21): the discriminators' outputs on 1-D input, the LSGAN and feature-matching losses on
known values, samplers with autograd equal to the no-grad ones, the generator's gradient through every unrolled
step, and a tiny fine-tuning that resumes as if uninterrupted, exports without its discriminators, and loads as a
vocoder that samples at its recorded steps and schedule by default; the bundled recipe fits the bundled model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from audiodiff import artifacts
from audiodiff.config import load_recipe, recipe_from_dict
from audiodiff.diffusion import SAMPLERS, fast_betas, prior, sigmas_for, with_grad
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone, build_denoiser, build_schedule
from audiodiff.models.discriminators import Discriminators, PeriodDiscriminator, ResolutionDiscriminator
from audiodiff.training import export, train
from audiodiff.training.adversarial import discriminator_loss, feature_matching_loss, generator_loss
from audiodiff.training.checkpoint import load_checkpoint
from audiodiff.training.fewstep import student, unrolled_sigmas
from audiodiff.training.loop import check_before_writing, load_initial_weights
from audiodiff.vocoder import DEFAULT_MODEL, FORMAT, Vocoder

from conftest import REPO, rel_l2, states_equal, tiny_net, torchrun_train

TINY = {
    "model": {"residual_layers": 2, "residual_channels": 4, "embed_dim": 16},
    "diffusion": {"sampler": "fast", "sample_steps": 2},
    "data": {"crop_frames": 8, "num_workers": 0, "valid_files": 0},
    "train": {"batch_size": 2, "max_steps": 4, "checkpoint_every": 2, "valid_every": 1000, "log_every": 1,
              "warmup_steps": 2, "lr": 1e-3, "ema_decay": 0.9},
    # The discriminators at 1/16 of HiFi-GAN's widths (2..64 channels), two periods; adversarial from step 1, so
    # that a run of 4 covers both phases and a resume at 2 restores trained discriminators.
    "fewstep": {"steps": 2, "betas": [1e-3, 0.4], "adversarial_after": 1, "disc_width": 0.0625, "periods": [2, 3]},
}


def tiny_recipe(path=None, **sections):
    raw = {section: dict(values) for section, values in TINY.items()}
    if path is not None:
        raw["data"]["path"] = str(path)
    for section, values in sections.items():
        raw[section].update(values)
    return recipe_from_dict(raw)


def run(recipe, run_dir, seed: int = 0):
    torch.manual_seed(seed)  # the caller's RNG must not matter
    return train(recipe, run_dir, device="cpu", progress=False)


def optimizer_states_equal(a: dict, b: dict) -> bool:
    return a["state"].keys() == b["state"].keys() and all(
        torch.equal(torch.as_tensor(a["state"][k][n]), torch.as_tensor(b["state"][k][n]))
        for k in a["state"] for n in a["state"][k])


# --- discriminators and losses ----------------------------------------------------------------------------------

def test_discriminators_give_logits_and_feature_maps_of_every_sub_discriminator():
    torch.manual_seed(0)
    disc = Discriminators(periods=(2, 3, 5), period_channels=(2, 4, 8, 8, 8), resolution_channels=4)
    x = (0.1 * torch.randn(2, 1, 3001)).requires_grad_()  # a length no period divides
    logits, features = disc(x)
    assert len(logits) == 3 + 3 and len(features) == 6 * 6  # 5 convolutions + the output one per sub-discriminator
    assert all(lg.ndim == 2 and lg.shape[0] == 2 for lg in logits)
    for i, p in enumerate((2, 3, 5)):
        maps = features[6 * i: 6 * i + 6]
        assert all(f.shape[-1] == p for f in maps)  # [B, C, T / p, p]: the period's phases stay apart
        assert maps[0].shape[1] == 2 and maps[-1].shape[1] == 1
        assert maps[0].shape[2] == -(-(-(-3001 // p) * p // p) // 3)  # stride 3 along the folded time axis
    for j, (n_fft, hop, _) in enumerate(((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))):
        maps = features[18 + 6 * j: 24 + 6 * j]
        assert maps[0].shape[2] == n_fft // 2 + 1  # [B, C, bins, frames]
        assert maps[0].shape[3] == 1 + (3001 + 2 * ((n_fft - hop) // 2) - n_fft) // hop
        assert maps[1].shape[3] == -(-maps[0].shape[3] // 2)  # stride 2 along time
    sum(lg.sum() for lg in logits).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any("window" in k for k in disc.state_dict())  # rebuilt, never saved
    with pytest.raises(ValueError, match="period"):
        PeriodDiscriminator(0)
    with pytest.raises(ValueError, match="hop <= win <= n_fft"):
        ResolutionDiscriminator(512, 600, 240)


def test_lsgan_and_feature_matching_losses_on_known_values():
    ones, zeros = torch.ones(3, 5), torch.zeros(3, 5)
    # A perfect discriminator (real 1, generated 0) has loss 0 and leaves the generator 1 per sub-discriminator.
    assert torch.equal(discriminator_loss([ones, ones], [zeros, zeros]), torch.zeros(3))
    assert torch.equal(generator_loss([zeros, zeros]), torch.full((3,), 2.0))
    # Real 0.5, generated 0.25: (0.5 - 1)^2 + 0.25^2 = 0.3125 for D, (0.25 - 1)^2 = 0.5625 for G (exact in binary).
    half = torch.full((3, 5), 0.5)
    quarter = torch.full((3, 5), 0.25)
    assert torch.equal(discriminator_loss([half], [quarter]), torch.full((3,), 0.3125))
    assert torch.equal(generator_loss([quarter]), torch.full((3,), 0.5625))
    # Feature matching: the mean |difference| of each map, summed over maps, one value per example.
    real = [torch.ones(2, 4, 3), torch.zeros(2, 2)]
    fake = [torch.zeros(2, 4, 3), torch.tensor([[0.5, -0.5], [1.0, 0.0]])]
    assert torch.equal(feature_matching_loss(real, fake), torch.tensor([1.5, 1.5]))
    # The real maps are targets: no gradient reaches them.
    r = torch.ones(2, 3, requires_grad=True)
    f = torch.zeros(2, 3, requires_grad=True)
    feature_matching_loss([r], [f]).sum().backward()
    assert r.grad is None and torch.equal(f.grad, torch.full((2, 3), -1 / 3))


# --- the unrolled student ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fast", "ddim", "dpmpp", "heun", "pc"])
def test_samplers_with_autograd_equal_the_no_grad_ones_and_differentiate(name):
    w = torch.tensor(0.7, requires_grad=True)

    def denoise(x, sigma):
        return torch.tanh(x) * w  # any differentiable denoiser

    sigmas = torch.tensor([2.0, 0.8, 0.2, 0.0])
    x = torch.randn(2, 1, 64, generator=torch.Generator().manual_seed(0))
    plain = SAMPLERS[name](denoise, x, sigmas, generator=torch.Generator().manual_seed(1))
    assert not plain.requires_grad  # the samplers themselves stay no-grad
    out = with_grad(SAMPLERS[name])(denoise, x, sigmas, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.detach(), plain)
    out.square().sum().backward()
    assert w.grad is not None and w.grad != 0


@pytest.mark.numerics
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_the_generator_gradient_flows_through_every_unrolled_step(steps):
    recipe = tiny_recipe(diffusion={"sample_steps": steps}, fewstep={"steps": steps, "betas": []})
    net = tiny_net(channels=4)
    denoiser = build_denoiser(net, recipe.diffusion)
    sigmas = unrolled_sigmas(recipe, denoiser.schedule)
    assert torch.equal(sigmas, sigmas_for("fast", steps, denoiser.schedule, fast_betas(steps)))  # inference's
    inputs = []

    def recording(x, sigma, **cond):  # the denoiser, keeping each step's input for its gradient
        x.retain_grad()
        inputs.append(x)
        return denoiser(x, sigma, **cond)

    noise = torch.randn(2, 1, 8 * 256, generator=torch.Generator().manual_seed(0)).requires_grad_()
    mel = torch.randn(2, 80, 8, generator=torch.Generator().manual_seed(1)) - 5
    fake = student(recording, noise, {"mel": mel}, sigmas, torch.Generator().manual_seed(2))
    fake.square().mean().backward()
    assert len(inputs) == steps
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in inputs)  # back to the first step's input
    assert noise.grad.abs().sum() > 0 and net.output_proj.weight.grad.abs().sum() > 0
    # It is what synthesis computes: the no-grad fast sampler from the same start and noise.
    with torch.no_grad():
        x = prior(noise.shape, float(sigmas[0]), noise_sampler=lambda _: noise.detach())
        plain = SAMPLERS["fast"](denoiser, x, sigmas, generator=torch.Generator().manual_seed(2),
                                 extra_args={"mel": mel})
    # The network runs its convolutions with autograd on and its linear-layer path without (models/diffwave.py),
    # which round differently: float32 rounding, where a wrong noise level or noise would differ by order 1.
    assert rel_l2(fake, plain) < 1e-4


# --- the fine-tuning run ----------------------------------------------------------------------------------------

def test_fewstep_fine_tuning_resumes_exports_and_loads_without_discriminators(tone_dir, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def recipe(**train):  # validating at step 2 too: it must not disturb the resume
        return tiny_recipe(tone_dir, data={"valid_files": 1}, train={"valid_every": 2, **train})

    full = load_checkpoint(run(recipe(), tmp_path / "full"))
    first = load_checkpoint(run(recipe(max_steps=2), tmp_path / "split"))
    resumed = load_checkpoint(run(recipe(), tmp_path / "split", seed=123))
    assert first["step"] == 2 and resumed["step"] == 4
    assert not states_equal(first["discriminator"]["model"], resumed["discriminator"]["model"])  # trained on
    assert not states_equal(first["model"], resumed["model"])
    assert states_equal(full["model"], resumed["model"]) and states_equal(full["ema"]["model"], resumed["ema"]["model"])
    assert states_equal(full["discriminator"]["model"], resumed["discriminator"]["model"])
    assert optimizer_states_equal(full["optimizer"], resumed["optimizer"])
    assert optimizer_states_equal(full["discriminator"]["optimizer"], resumed["discriminator"]["optimizer"])
    # Step 0 trained the discriminators not at all (adversarial_after 1), steps 1..3 did: 3 AdamW steps.
    assert {int(s["step"]) for s in full["discriminator"]["optimizer"]["state"].values()} == {3}

    events = EventAccumulator(str(tmp_path / "full" / "logs"), size_guidance={"audio": 0}).Reload()
    assert "valid/generated" in events.Tags()["audio"]  # the validation sample, at the few-step schedule
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "fewstep/mel", "fewstep/adversarial", "fewstep/feature_matching",
            "fewstep/discriminator", "fewstep/discriminator_grad_norm"} <= scalars
    assert [e.step for e in events.Scalars("fewstep/adversarial")] == [2, 3, 4]  # from step 1 (0-based) on

    out = export(tmp_path / "full", tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    weights = load_file(str(out / "model.safetensors"))
    assert weights.keys() == full["ema"]["model"].keys()  # the generator's EMA only: no discriminator weights
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tuned_schedules"] == {"2": [1e-3, 0.4]}
    voc = Vocoder.from_pretrained(out, device="cpu")
    assert (voc.sampler, voc.steps) == ("fast", 2) and states_equal(voc.net.state_dict(), full["ema"]["model"])

    calls = []
    fast = SAMPLERS["fast"]

    def spy(denoise, x, sigmas, **kwargs):
        calls.append(sigmas.clone())
        return fast(denoise, x, sigmas, **kwargs)

    monkeypatch.setitem(SAMPLERS, "fast", spy)
    mel = torch.zeros(80, 6) - 5.0
    wav = voc(mel, seed=0)
    expected = sigmas_for("fast", 2, voc.denoiser.schedule, [1e-3, 0.4])
    assert len(calls) == 1 and torch.equal(calls[0], expected)  # the recorded steps and schedule by default
    assert wav.shape == (6 * 256,) and torch.isfinite(wav).all()
    six = voc(mel, seed=0, steps=6)  # other step counts still run, on the fast sampler's own schedules
    assert len(calls) == 2 and len(calls[1]) == 7 and torch.isfinite(six).all()
    assert torch.isfinite(voc(mel, seed=0, sampler="ddim", steps=3)).all()


def test_resume_refuses_other_discriminators_and_applies_a_new_discriminator_lr(tone_dir, tmp_path):
    # (every fewstep key has a resume policy: tests/test_run_dir.py)
    run(tiny_recipe(tone_dir, train={"max_steps": 2}), tmp_path / "run")
    with pytest.raises(AudiodiffError, match="fewstep.disc_width is 0.0625 in the run being resumed"):
        run(tiny_recipe(tone_dir, fewstep={"disc_width": 0.125}), tmp_path / "run")
    last = load_checkpoint(run(tiny_recipe(tone_dir, fewstep={"disc_lr": 1e-5}), tmp_path / "run"))
    assert [g["lr"] for g in last["discriminator"]["optimizer"]["param_groups"]] == [1e-5]


def test_fewstep_recipe_rules_name_the_fix():
    with pytest.raises(AudiodiffError, match="set diffusion.sampler: fast and diffusion.sample_steps: 2"):
        tiny_recipe(diffusion={"sampler": "ddim"})
    with pytest.raises(AudiodiffError, match="set diffusion.sampler: fast and diffusion.sample_steps: 4"):
        tiny_recipe(fewstep={"steps": 4, "betas": []})
    with pytest.raises(AudiodiffError, match="fewstep.betas: .* has 3 entries for fewstep.steps 2"):
        tiny_recipe(fewstep={"betas": [1e-4, 1e-2, 0.5]})
    with pytest.raises(AudiodiffError, match="fp16 is not supported"):
        tiny_recipe(train={"precision": "fp16"})
    with pytest.raises(AudiodiffError, match="set data.crop_frames to at least 4"):
        check_before_writing(tiny_recipe(data={"crop_frames": 3}), world=1)
    with pytest.raises(AudiodiffError, match="trains a vocoder"):
        tiny_recipe(model={"conditional": False})
    with pytest.raises(AudiodiffError, match=r"fewstep.betas: \[0.0001, 1.5\] is out of range; expected each item in"):
        tiny_recipe(fewstep={"betas": [1e-4, 1.5]})
    assert tiny_recipe(fewstep={"steps": 0}, diffusion={"sampler": "ddim"}).fewstep.schedules() == {}  # off


def test_init_refuses_a_model_trained_on_other_noise_levels(tone_dir, tmp_path):
    plain = recipe_from_dict({**TINY, "diffusion": {}, "fewstep": {},
                              "data": {**TINY["data"], "path": str(tone_dir)}, "train": {**TINY["train"],
                                                                                         "max_steps": 1}})
    run(plain, tmp_path / "teacher")
    model = export(tmp_path / "teacher", tmp_path / "model")
    tuned = run(tiny_recipe(tone_dir, train={"init": str(model), "max_steps": 1}), tmp_path / "tuned")
    assert load_checkpoint(tuned)["step"] == 1  # same diffusion settings but the default sampling: accepted
    with pytest.raises(AudiodiffError, match="train.init: .* different diffusion settings"):
        run(tiny_recipe(tone_dir, diffusion={"beta_end": 0.04}, train={"init": str(model)}), tmp_path / "other")


def test_the_bundled_fewstep_recipe_fits_the_bundled_model():
    recipe = load_recipe(REPO / "recipes" / "speech-fewstep.yaml")
    _, bundled, weights = artifacts.load(DEFAULT_MODEL, FORMAT, "model")
    assert recipe.model == bundled.model and recipe.mel == bundled.mel  # what --init pretrained checks
    d = recipe.diffusion
    assert (d.sampler, d.sample_steps, recipe.fewstep.steps) == ("fast", 2, 2)
    assert {k: v for k, v in vars(d).items() if k not in ("sampler", "sample_steps")} == \
        {k: v for k, v in vars(bundled.diffusion).items() if k not in ("sampler", "sample_steps")}
    assert recipe.train.init == "pretrained" and recipe.train.precision != "fp16"
    net = build_backbone(recipe.model, recipe.mel)
    load_initial_weights(net, "pretrained", recipe)  # raises on any mismatch
    assert states_equal(net.state_dict(), weights.state_dict())
    sigmas = unrolled_sigmas(recipe, build_schedule(d))
    assert len(sigmas) == 3 and sigmas[0] <= build_schedule(d).sigma_max


DDP_SCRIPT = """
# `audiodiff train` under torchrun, rank 1's generator and discriminators perturbed where the loop builds them (so
# only DDP's broadcast can make the replicas agree); every rank saves both networks' initial and final weights.
import os, sys
import torch
from audiodiff import cli
from audiodiff.training import fewstep, loop

rank = int(os.environ["RANK"])
nets = {}

def capture(name, original):
    def build(*args, **kwargs):
        net = original(*args, **kwargs)
        if rank == 1:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.1)
        nets[name] = (net, {k: v.clone() for k, v in net.state_dict().items()})
        return net
    return build

loop.build_backbone = capture("generator", loop.build_backbone)
fewstep.build_discriminators = capture("discriminators", fewstep.build_discriminators)
try:
    cli.main(sys.argv[2:])
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
torch.save({name: {"init": init, "final": net.state_dict()} for name, (net, init) in nets.items()},
           os.path.join(sys.argv[1], f"rank{rank}.pt"))
"""


def test_ddp_replicas_of_both_networks_stay_identical(tone_dir, tmp_path):
    r0, r1 = torchrun_train(tmp_path, {**TINY, "train": {**TINY["train"], "max_steps": 3, "checkpoint_every": 3}},
                            DDP_SCRIPT, tone_dir, 300)
    for name in ("generator", "discriminators"):
        assert not states_equal(r0[name]["init"], r1[name]["init"]), name  # built differently...
        assert states_equal(r0[name]["final"], r1[name]["final"]), name  # ...kept identical by DDP
        assert not states_equal(r0[name]["init"], r0[name]["final"]), name  # and trained
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt-00000003.pt")
    assert states_equal(state["discriminator"]["model"], r0["discriminators"]["final"])
