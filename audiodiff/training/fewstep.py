"""Few-step fine-tuning (issue 21): the vocoder's sampler, unrolled at N steps, is trained as a GAN generator.

The generator is the sampling itself, not a new network: the fast sampler (DiffWave Alg. 3, ancestral on a short
variance schedule) run for ``fewstep.steps`` network calls from the recipe's prior, with gradients through every
step (``samplers.with_grad``), as InferGrad (Chen et al., ICASSP 2022) trains a diffusion vocoder through its
few-step inference and PeriodWave-Turbo (Lee et al. 2024) a flow-matching one through its 2- or 4-step Euler
solver. Its losses are HiFi-GAN's (Kong et al. 2020, eq. 6): ``mel_weight`` times the log-mel L1 (WaveFit,
Koizumi et al. 2022, trains its fixed-point iterations with a spectral loss of the same kind) plus ``fm_weight``
times feature matching plus ``adv_weight`` times the least-squares generator loss, against the multi-period and
multi-resolution discriminators of ``models/discriminators.py`` (``adversarial.py``); ``stft_weight`` adds Parallel
WaveGAN's multi-resolution STFT loss. Before ``fewstep.adversarial_after`` steps only the spectral losses train
(the discriminators neither train nor judge).

The noise levels are the ones inference uses: ``sigmas_for("fast", N, schedule, tuned=fewstep.schedules())``, the
same call the exported ``Vocoder`` makes with the schedule it records (``FewStepConfig.schedules``). The start is the
batch's noise (``targets.batch_inputs``) scaled as ``samplers.prior`` scales it, the ancestral steps' fresh noise
comes from the step's generator, and the shaped prior of ``diffusion.prior``, when set, is applied as in synthesis:
a resumed run draws the same noise.

One host synchronisation a step, as the main loop's: the generator's losses are computed against the
discriminators before their update, whose own loss follows on the detached audio (simultaneous updates rather than
HiFi-GAN's alternating ones), so that one finiteness check covers the four losses and gradient norms, and a step
with any of them non-finite is skipped whole. The discriminators and their optimiser (``Critic``) are saved in the
training checkpoint under ``"discriminator"``; the export reads only the generator's EMA (``export.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from audiodiff.config import Recipe
from audiodiff.diffusion import SAMPLERS, prior, sigmas_for, with_grad
from audiodiff.errors import AudiodiffError
from audiodiff.models.discriminators import PERIOD_CHANNELS, RESOLUTION_CHANNELS, RESOLUTIONS, Discriminators
from audiodiff.training import distributed
from audiodiff.training.adversarial import discriminator_loss, feature_matching_loss, generator_loss, split_batch
from audiodiff.training.targets import batch_inputs, mel_loss, stft_loss

SAMPLER = "fast"  # the unrolled sampler (FewStepConfig's rule requires diffusion.sampler: fast)
CHECKPOINT_KEY = "discriminator"
FAULTS = ("loss", "gradient", "discriminator loss", "discriminator gradient")


def build_discriminators(fewstep) -> Discriminators:
    """The discriminators of a ``FewStepConfig``: its periods, the UnivNet resolutions, at ``disc_width`` of
    HiFi-GAN's channel widths."""
    width = fewstep.disc_width
    return Discriminators(fewstep.periods, RESOLUTIONS, tuple(max(1, round(c * width)) for c in PERIOD_CHANNELS),
                          max(1, round(RESOLUTION_CHANNELS * width)))


@dataclass
class Critic:
    """The discriminators, their AdamW optimiser (constant learning rate) and the module the step calls (compiled
    and DDP-wrapped as the generator is: ``loop.for_training``)."""

    net: nn.Module
    opt: torch.optim.Optimizer
    model: nn.Module
    pending: bool = False  # gradients of this step are waiting for update()

    @classmethod
    def build(cls, recipe: Recipe, device: torch.device, wrap) -> "Critic":
        """Built from ``train.seed`` alone (the caller's RNG untouched), like the generator's initial weights."""
        fc = recipe.fewstep
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.train.seed + 1)
            net = build_discriminators(fc).to(device)
        # weight decay 0.01: torch's AdamW default, which HiFi-GAN's discriminators train with
        opt = torch.optim.AdamW(net.parameters(), lr=fc.disc_lr, betas=tuple(fc.disc_betas), weight_decay=0.01,
                                fused=device.type == "cuda")
        return cls(net, opt, wrap(net))

    def update(self) -> None:
        """Apply this step's discriminator gradients (none before ``fewstep.adversarial_after``)."""
        if self.pending:
            self.opt.step()
            self.pending = False

    def state_dict(self) -> dict:
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])

    def load_saved(self, saved: dict, path) -> None:
        """Restore the discriminators of the training checkpoint ``saved`` (read from ``path``)."""
        if CHECKPOINT_KEY not in saved:
            raise AudiodiffError(f"{path} holds no discriminators: it is not a few-step run; pass another --run-dir "
                                 f"to fine-tune from it (train.init takes an export of it)")
        self.load_state_dict(saved[CHECKPOINT_KEY])


def check(recipe: Recipe) -> None:
    """What the recipe's rules cannot see (``loop.check_before_writing``): crops long enough for the
    discriminators' reflect padding (the widest resolution pads ``(n_fft - hop) / 2`` samples a side) and for
    their longest period."""
    if not recipe.fewstep.steps:
        return
    samples = recipe.data.crop_frames * recipe.mel.hop_length
    need = max([(n_fft - hop) // 2 for n_fft, hop, _ in RESOLUTIONS] + list(recipe.fewstep.periods))
    if samples <= need:
        raise AudiodiffError(f"data.crop_frames {recipe.data.crop_frames} gives crops of {samples} samples; the "
                             f"few-step discriminators need more than {need}: set data.crop_frames to at least "
                             f"{need // recipe.mel.hop_length + 1}")


def unrolled_sigmas(recipe: Recipe, schedule) -> torch.Tensor:
    """The N-step noise levels ``[N + 1]`` (on the CPU: the samplers read them as Python floats, no device sync),
    exactly those the exported model samples with."""
    return sigmas_for(SAMPLER, recipe.fewstep.steps, schedule, tuned=recipe.fewstep.schedules())


def student(denoiser, noise: torch.Tensor, cond: dict, sigmas: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The generator's waveform ``[B, 1, T]``: the fast sampler from ``noise`` (standard normal, the start's shape)
    through ``len(sigmas) - 1`` denoiser calls, with autograd through all of them. ``cond`` is the denoiser's
    conditioning (mel, and the shaped prior's transform when the recipe has one: the sampler then runs in its
    whitened coordinates and the result is coloured, as ``Vocoder`` synthesises)."""
    x = prior(noise.shape, float(sigmas[0]), device=noise.device, noise_sampler=lambda _: noise)
    y = with_grad(SAMPLERS[SAMPLER])(denoiser, x, sigmas, generator=gen, extra_args=cond)
    shaped = cond.get("prior")
    return y if shaped is None else shaped.apply(y)


class Step(NamedTuple):
    """What one fine-tuning step gives the loop: the generator's total loss and gradient norm (device tensors),
    the fault that skips it (one of ``FAULTS``) and its value, and the loss terms to log."""

    loss: torch.Tensor
    grad_norm: torch.Tensor
    fault: str | None
    value: torch.Tensor | None
    parts: dict


def train_step(denoiser, critic: Critic, net: nn.Module, opt, mel_fn, batch, gen, device, amp_dtype, recipe: Recipe,
               step: int, sigmas: torch.Tensor, world: int) -> Step:
    """One few-step fine-tuning step, up to (not including) the optimiser updates: the generator's losses and
    gradients (``net``'s, through ``opt``), then the discriminators' (``critic``), then one finiteness check."""
    fc, clip = recipe.fewstep, recipe.train.grad_clip
    x = batch_inputs(recipe, batch, mel_fn, denoiser, gen, device)
    adversarial = step >= fc.adversarial_after
    autocast = dict(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
    n = x.x0.shape[0]
    with torch.autocast(**autocast):
        fake = student(denoiser, x.noise, x.cond, sigmas, gen)  # [B, 1, T]
        parts = {"mel": mel_loss(mel_fn, fake, x.mel).mean()}
        loss = fc.mel_weight * parts["mel"]
        if fc.stft_weight:
            parts["stft"] = stft_loss(fake, x.x0).mean()
            loss = loss + fc.stft_weight * parts["stft"]
        if adversarial:
            real_out, fake_out = split_batch(critic.model(torch.cat([x.x0, fake])), n)
            parts["adversarial"] = generator_loss(fake_out[0]).mean()
            parts["feature_matching"] = feature_matching_loss(real_out[1], fake_out[1]).mean()
            loss = loss + fc.adv_weight * parts["adversarial"] + fc.fm_weight * parts["feature_matching"]
    opt.zero_grad(set_to_none=True)
    loss.backward()  # also leaves gradients in the discriminators, cleared before their own backward
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    checked = [loss.detach().float(), grad_norm.float()]
    if adversarial:
        with torch.autocast(**autocast):
            real_out, fake_out = split_batch(critic.model(torch.cat([x.x0, fake.detach()])), n)
            d_loss = discriminator_loss(real_out[0], fake_out[0]).mean()
        critic.opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_norm = torch.nn.utils.clip_grad_norm_(critic.net.parameters(), clip)
        critic.pending = True
        parts.update(discriminator=d_loss.detach(), discriminator_grad_norm=d_norm)
        checked += [d_loss.detach().float(), d_norm.float()]
    ok = distributed.all_finite(torch.stack(checked), world)  # the step's one host synchronisation
    bad = next((i for i, good in enumerate(ok) if not good), None)
    if bad is not None:
        critic.pending = False
        return Step(loss, grad_norm, FAULTS[bad], checked[bad], parts)
    return Step(loss, grad_norm, None, None, {k: v.detach() for k, v in parts.items()})
