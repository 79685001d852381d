"""Resuming a run directory with a recipe: what may change, checked in one place (``check_resume``).

A run directory holds its recipe in two places, on purpose. Every checkpoint carries the recipe its state was made
with: it is written atomically with the weights, so it is the source of truth, and a resumed run is compared with
the newest checkpoint's. ``config.yaml`` is the resolved recipe written before step 0 (EDM's
``training_options.json``), for people and tools to read; it is rewritten at every (re)start and never read back
while a checkpoint exists. It is the only record of a run stopped before its first checkpoint, and then the recipe is
compared with it, so that such a run is not silently taken over by other model settings either.

The mel, model and diffusion sections never change within a run. Each ``train``, ``data`` and ``fewstep`` setting
is either
applied to the resumed run or refused before anything is written, so that ``config.yaml`` and every later checkpoint
record only values in use. An applied change is logged, ``resume: train.lr 0.0002 -> 0.5``; a refused one is one
error line naming the key, its value in the run and the fix.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from audiodiff.config import Recipe, TrainConfig, recipe_from_dict
from audiodiff.errors import AudiodiffError

FIXED = ("mel", "model", "diffusion")  # the sections a run never changes

# Refused on resume, and why. Every other train.* and data.* key is applied (APPLIED says how).
REFUSED = {
    "train.seed": "the initial weights and every step's random draws come from it",
    "train.init": "it only picks the starting weights of a new run, and this run continues from its checkpoint",
    "data.labels": "it decides which class each file belongs to, which the model has learned",
    "fewstep.steps": "it decides whether the run is diffusion training or few-step fine-tuning, and how many steps "
                     "the generator unrolls",
}
APPLIED = {
    "train.batch_size": "the data loader is built with it",
    "train.lr": "written into the restored optimizer's param groups and the scheduler's base_lrs",
    "train.weight_decay": "written into the restored optimizer's param groups",
    "train.warmup_steps": "the learning-rate curve is recomputed at the resumed step",
    "train.lr_decay": "the learning-rate curve is recomputed at the resumed step",
    "train.max_steps": "the loop runs to it (and a cosine curve is recomputed); a run already past it is done",
    "train.max_minutes": "read at every step; the restored elapsed time counts towards it",
    "train.grad_clip": "read at every step",
    "train.ema_decay": "the EMA is built with it (its state holds no decay)",
    "train.precision": "autocast follows it; a GradScaler starts fresh when switching to fp16",
    "train.log_every": "read at every step",
    "train.valid_every": "read at every step",
    "train.checkpoint_every": "read at every step",
    "train.keep_checkpoints": "applied at the next checkpoint",
    "train.max_bad_steps": "read at every step",
    "train.compile": "the training step is compiled or not when the loop is built (GPU only)",
    "train.label_dropout": "read at every step",
    "train.mel_loss": "read at every step",
    "train.mel_loss_sigma": "read at every step",
    "train.stft_loss": "read at every step",
    "data.path": "the training files are listed afresh",
    "data.manifest": "the training files are read from it afresh",
    "data.valid_path": "the validation files are listed afresh",
    "data.valid_files": "the validation split is made afresh",
    "data.crop_frames": "the crops are cut with it (a U-Net's must still equal model.image_frames)",
    "data.num_workers": "the data loader is built with it",
    "data.preload": "the data set is built with it (the same crops: files at the training rate give identical "
                    "items either way, others differ by the resampler's rounding)",
    "data.pad_short": "the data set is built with it",
    "data.speed_perturb": "the data set is built with it",
    "data.pairs": "the data set is built with it (the same crops, conditioned on the given mels or the audio's)",
    "data.mel_path": "the data set is built with it",
    "data.mel_preset": "the data set is built with it",
    "data.mel_set": "the data set is built with it",
    "fewstep.betas": "the unrolled noise levels are computed with it (the export records the last)",
    "fewstep.mel_weight": "read at every step",
    "fewstep.stft_weight": "read at every step",
    "fewstep.fm_weight": "read at every step",
    "fewstep.adv_weight": "read at every step",
    "fewstep.adversarial_after": "read at every step",
    "fewstep.disc_lr": "written into the restored discriminator optimizer's param groups",
    "fewstep.disc_betas": "written into the restored discriminator optimizer's param groups",
}
# fewstep keys that shape the discriminators, whose saved weights must fit them
REFUSED.update({f"fewstep.{k}": "the discriminators are built with it, and their saved weights fit only that"
                for k in ("periods", "disc_width")})
LR_KEYS = {"train.lr", "train.weight_decay", "train.warmup_steps", "train.lr_decay", "train.max_steps"}


def _show(value) -> str:
    return "null" if value is None else str(value)


def first_difference(saved: dict, recipe: Recipe, section: str) -> str | None:
    """``"section.key OLD -> NEW"`` for the first key of ``section`` that differs from the saved recipe mapping."""
    for key, value in recipe.to_dict()[section].items():
        old = (saved.get(section) or {}).get(key, value)  # a key the saved recipe predates: nothing to compare
        if old != value:
            return f"{section}.{key} {_show(old)} -> {_show(value)}"
    return None


def check_resume(run_dir: Path, recipe: Recipe, saved: dict | None, checkpoint: Path | None) -> list:
    """``(key, old, new)`` for each train/data setting of ``recipe`` that differs from ``saved``, the recipe in
    ``checkpoint`` (None: the run has no checkpoint); raises ``AudiodiffError`` for a mel/model/diffusion change (from
    the checkpoint, else from ``run_dir/config.yaml``) or a change of a key in ``REFUSED``."""
    if saved is None:
        config = read_run_config(run_dir)
        if config is not None:
            _refuse_fixed_changes(run_dir, config, recipe, "config.yaml")
        return []
    _refuse_fixed_changes(run_dir, saved, recipe, f"checkpoint {checkpoint.name}")
    new, changes = recipe.to_dict(), []
    for section in ("train", "data", "fewstep"):
        for key, value in new[section].items():
            name, old = f"{section}.{key}", (saved.get(section) or {}).get(key, value)
            if old == value:
                continue
            if name in REFUSED:
                raise AudiodiffError(f"{name} is {_show(old)} in the run being resumed ({checkpoint}) and cannot "
                                     f"change to {_show(value)}: {REFUSED[name]}; set it back to {_show(old)}, or "
                                     f"pass another --run-dir to start a new run")
            changes.append((name, old, value))
    return changes


def read_run_config(run_dir: Path) -> dict | None:
    """The recipe mapping of ``run_dir/config.yaml`` (validated as a recipe), or None when there is none."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict):
            raise AudiodiffError("empty" if raw is None else f"expected a mapping, got {type(raw).__name__}")
        recipe_from_dict(raw)
    except (yaml.YAMLError, AudiodiffError) as err:
        raise AudiodiffError(f"{path} is not a readable recipe ({str(err).splitlines()[0]}); restore it, "
                             f"or delete it to resume with this recipe's settings") from None
    return raw


def _refuse_fixed_changes(run_dir: Path, saved: dict, recipe: Recipe, where: str) -> None:
    for section in FIXED:
        diff = first_difference(saved, recipe, section)
        if diff:
            raise AudiodiffError(f"{run_dir} holds a run with different {section} settings ({diff}, {where}); "
                                 f"use a new --run-dir or the same recipe")


def apply_changes(changes, opt, sched, train: TrainConfig) -> None:
    """Write changed learning-rate settings into the restored optimizer and LambdaLR scheduler, whose state_dicts
    carry the old ``lr`` (as ``base_lrs``) and ``weight_decay``; the next step then uses them. Every other applied
    setting is read afresh from the recipe and needs nothing here."""
    if not LR_KEYS & {key for key, _, _ in changes}:
        return
    sched.base_lrs = [train.lr for _ in opt.param_groups]
    for group, factor in zip(opt.param_groups, sched.lr_lambdas):
        group["initial_lr"] = train.lr
        group["weight_decay"] = train.weight_decay
        group["lr"] = train.lr * factor(sched.last_epoch)  # what LambdaLR.step computes
    sched._last_lr = [group["lr"] for group in opt.param_groups]


def apply_critic_changes(changes, opt, fewstep) -> None:
    """Write a changed ``fewstep.disc_lr`` or ``disc_betas`` into the restored discriminator optimizer."""
    if {"fewstep.disc_lr", "fewstep.disc_betas"} & {key for key, _, _ in changes}:
        for group in opt.param_groups:
            group["lr"], group["betas"] = fewstep.disc_lr, tuple(fewstep.disc_betas)

