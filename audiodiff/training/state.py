"""What a training run carries from step to step, and how it goes into and comes out of a checkpoint.

``Trainable``: one network with its AdamW optimiser, learning-rate schedule and EMA, the things an optimisation step
updates: the denoiser's backbone. Few-step fine-tuning adds discriminators (``fewstep.Critic``: no EMA, a constant
learning rate), saved under their own key beside it (``loop.save``). ``TrainState``: the run's counters (step, elapsed
time, the last checkpoint, consecutive skipped steps, a stop signal), one dataclass instead of loop variables.

The learning rate is a pure function of the step (``lr_factor``), so a resumed run follows the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from audiodiff.config import Recipe, TrainConfig
from audiodiff.training.ema import EMA


def lr_factor(step: int, tc) -> float:
    """The learning rate of ``step`` (0-based) as a share of ``train.lr``: a linear warm-up over
    ``warmup_steps``, then constant (``lr_decay: none``, DiffWave's) or a half cosine that reaches 0 at
    ``max_steps`` (``cosine``). A pure function of the step, so a resumed run follows the same curve."""
    warm = min(1.0, (step + 1) / max(1, tc.warmup_steps))
    if tc.lr_decay == "none" or step < tc.warmup_steps:
        return warm
    done = min(1.0, (step - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * done))


@dataclass
class Trainable:
    """A network and what trains it. ``net`` is the plain module (on its device); the EMA holds its own copy."""

    net: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: EMA

    @classmethod
    def build(cls, net: nn.Module, tc: TrainConfig, device: torch.device) -> "Trainable":
        """AdamW (fused on a GPU) with ``tc``'s learning rate, warm-up and decay, and an EMA of ``net``."""
        net = net.to(device)
        ema = EMA(net, tc.ema_decay)
        opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                fused=device.type == "cuda")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc))
        return cls(net, opt, sched, ema)

    def update(self, scaler: torch.amp.GradScaler) -> None:
        """Apply the (clipped) gradients: optimiser, schedule and EMA one step on."""
        scaler.step(self.opt)
        scaler.update()
        self.sched.step()
        self.ema.update(self.net)

    def state_dict(self) -> dict:
        return {"model": self.net.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])


@dataclass
class TrainState:
    """The run's counters. ``saved_step`` is the step of ``checkpoint``, the last one written or resumed from."""

    step: int = 0
    elapsed: float = 0.0  # seconds of training, summed over resumes
    checkpoint: Path | None = None
    saved_step: int | None = None
    bad_steps: int = 0  # consecutive steps skipped for a non-finite loss or gradient
    stop_signal: int | None = None  # SIGINT/SIGTERM received: stop after this step, with a checkpoint

    @classmethod
    def resumed(cls, state: dict, path: Path) -> "TrainState":
        step = int(state["step"])
        return cls(step=step, elapsed=float(state["elapsed"]), checkpoint=path, saved_step=step)


def checkpoint_state(st: TrainState, model: Trainable, scaler: torch.amp.GradScaler, recipe: Recipe) -> dict:
    """The resumable checkpoint: counters, the denoiser's ``Trainable`` (top-level keys model, ema, optimizer,
    scheduler), the GradScaler and the recipe the state was made with (``resume.py``: the run's source of truth).
    The few-step discriminators go under their own key, ``"discriminator"`` (``loop.save``)."""
    return {"step": st.step, "elapsed": st.elapsed, **model.state_dict(), "scaler": scaler.state_dict(),
            "recipe": recipe.to_dict()}


def load_scaler(scaler: torch.amp.GradScaler, state: dict) -> None:
    if state["scaler"]:  # empty when saved without fp16: a run switched to fp16 starts a fresh scaler
        scaler.load_state_dict(state["scaler"])
