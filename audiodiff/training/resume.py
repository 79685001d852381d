"""Resuming with changed settings. Each ``train`` and ``data`` setting is either applied to the resumed run or
refused before anything is written, so that ``config.yaml`` and every later checkpoint record only values in use.

The comparison is with the recipe stored in the checkpoint being resumed (the settings its state was made with).
An applied change is logged, ``resume: train.lr 0.0002 -> 0.5``; a refused one is one error line naming the key,
its value in the run and the fix. The mel, model and diffusion sections never change within a run.
"""

from __future__ import annotations

from pathlib import Path

from audiodiff.config import Recipe, TrainConfig
from audiodiff.errors import AudiodiffError

# Refused on resume, and why. Every other train.* and data.* key is applied (APPLIED says how).
REFUSED = {
    "train.seed": "the initial weights and every step's random draws come from it",
    "train.init": "it only picks the starting weights of a new run, and this run continues from its checkpoint",
    "data.labels": "it decides which class each file belongs to, which the model has learned",
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
    "data.valid_path": "the validation files are listed afresh",
    "data.valid_files": "the validation split is made afresh",
    "data.crop_frames": "the crops are cut with it (a U-Net's must still equal model.image_frames)",
    "data.num_workers": "the data loader is built with it",
    "data.preload": "the data set is built with it",
    "data.pad_short": "the data set is built with it",
    "data.speed_perturb": "the data set is built with it",
}
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


def resume_changes(saved: dict, recipe: Recipe, checkpoint: Path) -> list[tuple[str, object, object]]:
    """``(key, old, new)`` for each train/data setting of ``recipe`` that differs from ``saved`` (the recipe in
    ``checkpoint``); raises ``AudiodiffError`` for a mel/model/diffusion change or a key in ``REFUSED``."""
    run_dir = checkpoint.parent.parent
    for section in ("mel", "model", "diffusion"):
        diff = first_difference(saved, recipe, section)
        if diff:
            raise AudiodiffError(f"{run_dir} holds a run with different {section} settings ({diff}, checkpoint "
                                 f"{checkpoint.name}); use a new --run-dir or the same recipe")
    new, changes = recipe.to_dict(), []
    for section in ("train", "data"):
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

