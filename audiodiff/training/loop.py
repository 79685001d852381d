"""The training loop, top to bottom: build, resume, then step / log / validate / checkpoint.

DiffWave training (Kong et al. 2021, Algorithm 1) with the usual modern kit: AdamW, linear warm-up, bf16 or fp16
autocast on GPU, gradient clipping, an EMA of the weights, TensorBoard logs with a synthesised validation sample,
atomic checkpoints every N steps, and automatic resume from the run directory. The mel is computed on the device
from the crop's padded segment (see ``data/dataset.py``), so no feature files are ever stale.

Randomness is a pure function of ``(seed, step, rank)``: the batch, the noise levels and the noise of step ``s``
are the same whether or not the run was interrupted before it, and the initial weights depend on ``seed`` alone.
A step whose loss or (in fp32/bf16) gradient is not finite is skipped; ``train.max_bad_steps`` of them in a row
stop the run. Faults tested: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from audiodiff import artifacts, atomic
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.config import Recipe, recipe_from_dict, save_recipe
from audiodiff.data import AudioCrops, StepBatchSampler, class_labels, split_files
from audiodiff.diffusion import sigmas_for
from audiodiff.diffusion.guidance import drop_labels
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone, build_denoiser, build_schedule, check_buildable
from audiodiff.training import checkpoint as ckpt
from audiodiff.training import distributed
from audiodiff.training.ema import EMA
from audiodiff.training.lock import run_lock
from audiodiff.training.resume import apply_changes, resume_changes
from audiodiff.training.targets import auxiliary_loss, check_image_crops, diffusion_inputs
from audiodiff.training.validate import validate

log = logging.getLogger("audiodiff")
DATA_ENV = "AUDIODIFF_DATA"


def lr_factor(step: int, tc) -> float:
    """The learning rate of ``step`` (0-based) as a share of ``train.lr``: a linear warm-up over
    ``warmup_steps``, then constant (``lr_decay: none``, DiffWave's) or a half cosine that reaches 0 at
    ``max_steps`` (``cosine``). A pure function of the step, so a resumed run follows the same curve."""
    warm = min(1.0, (step + 1) / max(1, tc.warmup_steps))
    if tc.lr_decay == "none" or step < tc.warmup_steps:
        return warm
    done = min(1.0, (step - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * done))


class Interrupted(Exception):
    """Raised after SIGINT/SIGTERM once a checkpoint has been saved."""


def resolve_data(recipe: Recipe) -> str:
    path = recipe.data.path or os.environ.get(DATA_ENV)
    if not path:
        raise AudiodiffError(f"no training data: pass --data DIR, set data.path in the recipe or ${DATA_ENV}")
    return path


def check_resume_compatible(run_dir: Path, recipe: Recipe) -> None:
    """Refuse to resume a run whose model, mel or diffusion settings differ from the recipe's."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    try:
        raw = yaml.safe_load(saved_path.read_text())
        if not isinstance(raw, dict):
            raise AudiodiffError("empty" if raw is None else f"expected a mapping, got {type(raw).__name__}")
        saved = recipe_from_dict(raw)
    except (yaml.YAMLError, AudiodiffError) as err:
        raise AudiodiffError(f"{saved_path} is not a readable recipe ({str(err).splitlines()[0]}); restore it, "
                             f"or delete it to resume with this recipe's settings") from None
    for section in ("mel", "model", "diffusion"):
        if getattr(saved, section) != getattr(recipe, section):
            raise AudiodiffError(
                f"{run_dir} holds a run with different {section} settings; use a new --run-dir or the same recipe"
            )


def load_initial_weights(net: torch.nn.Module, source: str, recipe: Recipe) -> None:
    """Copy an exported model's weights into ``net`` (fine-tuning); its model and mel settings must be the
    recipe's. ``source`` is a model directory or "pretrained" (the vocoder bundled with audiodiff)."""
    from audiodiff import melgen, vocoder

    path = vocoder.DEFAULT_MODEL if source == "pretrained" else Path(source)
    fmt, noun = (vocoder.FORMAT, "model") if recipe.model.arch == "diffwave" else (melgen.FORMAT, "mel generator")
    _, other, weights = artifacts.load(path, fmt, noun, "train.init must name")
    for section in ("model", "mel"):
        if getattr(other, section) != getattr(recipe, section):
            raise AudiodiffError(f"train.init: {path} was trained with different {section} settings "
                                 f"({getattr(other, section)}); use a recipe whose {section} section matches it")
    net.load_state_dict(weights.state_dict())


def precision_dtype(precision: str, device: torch.device):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) * 1009 + rank)
    return g


def ignore_stop_signals(_worker_id: int) -> None:
    # Ctrl-C and a scheduler's SIGTERM reach the whole process group. The main process stops the loader itself
    # after saving; a data worker killed first would turn that clean stop into a "worker killed" crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset, batch_size: int, start: int, dist, workers: int, steps=None) -> DataLoader:
    sampler = StepBatchSampler(batch_size, start, dist.rank, dist.world, steps)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=dist.device.type == "cuda",
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      worker_init_fn=ignore_stop_signals if workers > 0 else None)


def write_config(recipe: Recipe, path: Path) -> None:
    with atomic.replacing(path, "run config") as tmp:  # a kill mid-write must not truncate it and block the resume
        save_recipe(recipe, tmp)


def train_step(denoiser, mel_fn, batch, gen, device, amp_dtype, recipe: Recipe):
    audio = batch["audio"].to(device, non_blocking=True).unsqueeze(1)  # [B, 1, N * hop]
    segment = batch["segment"].to(device, non_blocking=True)
    with torch.no_grad():
        mel = mel_fn(segment, pad=False)  # [B, n_mels, N]
    sigma = denoiser.sample_training_sigma(audio.shape[0], generator=gen)
    x0, cond = diffusion_inputs(recipe, audio, mel, mel_fn)  # waveform, or log-mel image for unet2d
    noise = torch.randn(x0.shape, generator=gen, device=device)
    if recipe.model.num_classes:  # drawn after the noise: the waveform path's random stream is unchanged
        cond["class_labels"] = drop_labels(batch["label"].to(device), recipe.train.label_dropout, gen)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        if not (recipe.train.mel_loss or recipe.train.stft_loss):
            return denoiser.loss(x0, sigma, noise, **cond).mean()
        loss, x0_hat = denoiser.loss(x0, sigma, noise, with_x0=True, **cond)
        return loss.mean() + auxiliary_loss(recipe, mel_fn, x0_hat, x0, mel, sigma)  # targets.py


def backward(loss, net, opt, scaler, clip: float, world: int):
    """Clipped gradients of ``loss``; returns ``(fault, grad_norm)``, ``fault`` "loss" or "gradient" when that is
    not finite (on any process), and the step must then be skipped.

    Without a GradScaler (bf16, fp32) the backward is queued before the loss is read, so the step waits on the GPU
    once, not twice. fp16 reads the loss first, before the scaler sees it, and leaves overflowed gradients to the
    scaler, which skips those steps itself and lowers its scale."""
    opt.zero_grad(set_to_none=True)
    if scaler.is_enabled():
        if not distributed.all_finite(loss.detach(), world)[0]:
            return "loss", None
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        return None, torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    loss_ok, grad_ok = distributed.all_finite(torch.stack([loss.detach().float(), grad_norm.float()]), world)
    return (None if grad_ok else "gradient") if loss_ok else "loss", grad_norm


def check_before_writing(recipe: Recipe, world: int) -> None:
    """What the recipe's declared ranges (``config.py``) cannot see, checked before the run directory is touched:
    crops that fit a U-Net tile, a batch that splits across the processes, a backbone that builds (on the meta
    device: no memory), and noise levels for the default sampler, which validation and the exported model use."""
    check_image_crops(recipe)
    StepBatchSampler(recipe.train.batch_size, world=world)
    check_buildable(recipe.model, recipe.mel)
    d = recipe.diffusion
    try:
        sigmas_for(d.sampler, d.sample_steps, build_schedule(d))
    except AudiodiffError as err:
        raise AudiodiffError(f"diffusion.sampler {d.sampler} with diffusion.sample_steps {d.sample_steps}: "
                             f"{err}") from None


def train(recipe: Recipe, run_dir: str | Path, *, device: str | None = None, progress: bool = True) -> Path:
    """Train (or resume) in ``run_dir``; returns the path of the last checkpoint. Everything checkable is checked
    before anything is written, and ``run_dir`` is locked for the whole run (``lock.py``): a second trainer there
    stops at once with an error naming this one."""
    run_dir = Path(run_dir)
    dist = distributed.setup(device)
    data_path = resolve_data(recipe)
    check_before_writing(recipe, dist.world)
    with run_lock(run_dir) if dist.main else contextlib.nullcontext():
        return _train(recipe, run_dir, dist, data_path, progress)


def _train(recipe: Recipe, run_dir: Path, dist: distributed.Dist, data_path: str, progress: bool) -> Path:
    """The run itself, ``run_dir`` locked: build, resume, then the loop."""
    tc = recipe.train
    check_resume_compatible(run_dir, recipe)
    state, path = ckpt.load_latest(run_dir, map_location=dist.device)  # refused changes stop here, unwritten
    changes = resume_changes(state["recipe"], recipe, path) if state is not None else []
    if dist.main:
        write_config(recipe, run_dir / "config.yaml")  # resolved config, before step 0 and before the data is read

    # Build.
    train_files, valid_files = split_files(data_path, recipe.data.valid_path, recipe.data.valid_files)
    labels, classes = class_labels(train_files + valid_files, recipe.data.labels, recipe.model.num_classes)
    train_labels = labels[: len(train_files)] if labels else None
    valid_labels = labels[len(train_files):] if labels else None
    if classes and dist.main:
        atomic.write_text(run_dir / "classes.txt", "\n".join(classes) + "\n", "class list")
    dataset = AudioCrops(train_files, recipe.mel, recipe.data.crop_frames, seed=tc.seed, labels=train_labels,
                         progress=progress, pad_short=recipe.data.pad_short,
                         speed_perturb=recipe.data.speed_perturb)
    valid_set = AudioCrops(valid_files, recipe.mel, recipe.data.crop_frames, seed=tc.seed + 1,
                           labels=valid_labels, pad_short=recipe.data.pad_short) \
        if valid_files else None
    with torch.random.fork_rng(devices=[]):  # initial weights from train.seed, the caller's RNG untouched
        torch.manual_seed(tc.seed)
        net = build_backbone(recipe.model, recipe.mel)
    if tc.init and state is None:  # a resumed run continues from its checkpoint
        load_initial_weights(net, tc.init, recipe)
    net = net.to(dist.device)
    ema = EMA(net, tc.ema_decay)
    fused = dist.device.type == "cuda"
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc))
    amp_dtype = precision_dtype(tc.precision, dist.device)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=amp_dtype == torch.float16)
    mel_fn = MelSpectrogram(recipe.mel).to(dist.device)

    # Resume.
    step, elapsed, last_ckpt = 0, 0.0, None
    if state is not None:
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved without fp16: a run switched to fp16 starts a fresh scaler
            scaler.load_state_dict(state["scaler"])
        apply_changes(changes, opt, sched, tc)
        step, elapsed, last_ckpt = int(state["step"]), float(state["elapsed"]), path
        if dist.main:
            log.info("resumed from %s at step %d", path, step)
            for key, old, new in changes:
                log.info("resume: %s %s -> %s", key, old, new)
    # compile only on a GPU: the channels-last layers are 2.2x faster compiled there (docs/performance.md); on the
    # CPU the compile time outweighs the gain for the short runs people make there.
    model = torch.compile(net) if tc.compile and dist.device.type == "cuda" else net
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index]
                                                          if dist.device.type == "cuda" else None)
    denoiser = build_denoiser(model, recipe.diffusion)

    writer = None
    if dist.main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(run_dir / "logs"))
        log.info("training on %d files (%.1f min), validating on %d; %d parameters; device %s",
                 len(dataset.audio), dataset.seconds / 60, len(valid_set.audio) if valid_set else 0,
                 sum(p.numel() for p in net.parameters()), dist.device)
        if tc.lr_decay == "cosine":  # the curve is fixed by max_steps, which a time-limited run may never reach
            log.info("learning rate %g, warm-up %d steps, then a half cosine to 0 at step %d (train.max_steps)",
                     tc.lr, tc.warmup_steps, tc.max_steps)

    def state_dict() -> dict:
        return {"step": step, "elapsed": elapsed, "model": net.state_dict(), "ema": ema.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                "recipe": recipe.to_dict()}

    def save() -> Path:
        nonlocal last_ckpt
        if dist.main:
            last_ckpt = ckpt.save_checkpoint(state_dict(), run_dir, step, tc.keep_checkpoints)
        return last_ckpt

    stop = {"signal": None}
    old_handlers = {s: signal.signal(s, lambda n, _: stop.update(signal=n)) for s in (signal.SIGINT, signal.SIGTERM)}

    # Loop.
    remaining = max(0, tc.max_steps - step)
    loader = make_loader(dataset, tc.batch_size, step, dist, recipe.data.num_workers, steps=remaining)
    bar = None
    if dist.main and progress:
        from tqdm import tqdm
        bar = tqdm(total=tc.max_steps, initial=step, unit="step", dynamic_ncols=True, desc="train")
    bad_steps, t0, window = 0, time.perf_counter() - elapsed, []
    t_log = time.perf_counter()
    net.train()
    try:
        for batch in loader:
            gen = step_generator(tc.seed, step, dist.rank, dist.device)
            loss = train_step(denoiser, mel_fn, batch, gen, dist.device, amp_dtype, recipe)
            fault, grad_norm = backward(loss, net, opt, scaler, tc.grad_clip, dist.world)
            if fault is not None:
                bad_steps += 1
                opt.zero_grad(set_to_none=True)
                log.warning("step %d: non-finite %s (%s); step skipped", step, fault,
                            (loss if fault == "loss" else grad_norm).item())
                if bad_steps >= tc.max_bad_steps:
                    where = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was saved"
                    raise AudiodiffError(f"training diverged: {bad_steps} non-finite steps in a row at step "
                                         f"{step}; {where}; lower train.lr or check the data")
                step += 1
                if stop["signal"] is not None:
                    break
                continue
            bad_steps = 0
            scaler.step(opt)
            scaler.update()
            sched.step()
            ema.update(net)
            step += 1
            elapsed = time.perf_counter() - t0
            window.append(loss.detach())
            if step % tc.log_every == 0 and dist.main:
                mean_loss = torch.stack(window).mean().item()
                window.clear()
                writer.add_scalar("train/loss", mean_loss, step)
                writer.add_scalar("train/grad_norm", grad_norm.item(), step)
                writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
                writer.add_scalar("train/minutes", elapsed / 60, step)
                if bar is not None:
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                else:
                    log.info("step %d  loss %.4f  %.2f steps/s  %.1f min", step, mean_loss,
                             tc.log_every / max(1e-9, time.perf_counter() - t_log), elapsed / 60)
                t_log = time.perf_counter()
            if bar is not None:
                bar.update(1)
            if step % tc.valid_every == 0 and dist.main and valid_set is not None:
                validate(ema.model, recipe, valid_set, mel_fn, writer, step, dist.device)
            if step % tc.checkpoint_every == 0:
                save()
            out_of_time = tc.max_minutes > 0 and elapsed > tc.max_minutes * 60
            if stop["signal"] is not None or out_of_time:
                break
        if step != (int(last_ckpt.stem.split("-")[1]) if last_ckpt else -1):
            save()
        if stop["signal"] is not None:
            raise Interrupted(f"stopped by signal {stop['signal']} at step {step}; checkpoint {last_ckpt}; "
                              f"run the same command to resume")
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        distributed.teardown()
    return last_ckpt
