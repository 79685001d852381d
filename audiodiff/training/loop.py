"""The training loop, top to bottom: build, resume, then step / log / validate / checkpoint (``_train``).

DiffWave training (Kong et al. 2021, Algorithm 1) with the usual modern kit: AdamW, linear warm-up, bf16 or fp16
autocast on GPU, gradient clipping, an EMA of the weights, TensorBoard logs with a synthesised validation sample,
atomic checkpoints every N steps, and automatic resume from the run directory. The mel is computed on the device
from the crop's padded segment (see ``data/dataset.py``), so no feature files are ever stale.

Randomness is a pure function of ``(seed, step, rank)``: the batch, the noise levels and the noise of step ``s``
are the same whether or not the run was interrupted before it, and the initial weights depend on ``seed`` alone.
A step whose loss or (in fp32/bf16) gradient is not finite is skipped; ``train.max_bad_steps`` of them in a row
stop the run. Faults tested: docs/reliability.md.

With ``fewstep.steps`` set, each step is few-step fine-tuning instead (``fewstep.py``): the sampler unrolled at
that many steps is trained against discriminators (a ``fewstep.Critic``, saved in the checkpoint beside the
generator); the build, resume, logging, validation and saving are this loop's.

The loop's state is a ``TrainState`` and the network it trains a ``Trainable`` (``state.py``), the helpers are at
module level (the shape of EDM's ``training_loop.py`` and nanoGPT's ``train.py``); what depends on the model's kind
is its family's (``families.py``), and what may change on resume is decided in ``resume.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
from pathlib import Path

import torch

from audiodiff import artifacts, atomic
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.config import Recipe, save_recipe
from audiodiff.data import StepBatchSampler
from audiodiff.diffusion import sigmas_for
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone, build_denoiser, build_schedule, check_buildable
from audiodiff.families import family_of
from audiodiff.training import checkpoint as ckpt
from audiodiff.training import distributed, fewstep
from audiodiff.training.data import build_data, make_loader, resolve_data
from audiodiff.training.lock import run_lock
from audiodiff.training.resume import apply_changes, apply_critic_changes, check_resume
from audiodiff.training.state import Trainable, TrainState, checkpoint_state, load_scaler
from audiodiff.training.targets import auxiliary_loss, batch_inputs
from audiodiff.training.validate import validate

log = logging.getLogger("audiodiff")


class Interrupted(Exception):
    """Raised after SIGINT/SIGTERM once a checkpoint has been saved."""


def load_initial_weights(net: torch.nn.Module, source: str, recipe: Recipe) -> None:
    """Copy an exported model's weights into ``net`` (fine-tuning); its model and mel settings must be the
    recipe's. ``source`` is a model directory or "pretrained" (the vocoder bundled with audiodiff)."""
    from audiodiff import vocoder

    path = vocoder.DEFAULT_MODEL if source == "pretrained" else Path(source)
    fmt, noun = family_of(recipe.model).artefact_format()
    _, other, weights = artifacts.load(path, fmt, noun, "train.init must name")
    for section in ("model", "mel"):
        if getattr(other, section) != getattr(recipe, section):
            raise AudiodiffError(f"train.init: {path} was trained with different {section} settings "
                                 f"({getattr(other, section)}); use a recipe whose {section} section matches it")
    # Few-step fine-tuning unrolls the sampler on the model's own noise levels and prior: all but the default
    # sampling must be the model's.
    sampling = {"sampler": recipe.diffusion.sampler, "sample_steps": recipe.diffusion.sample_steps}
    if recipe.fewstep.steps and dataclasses.replace(other.diffusion, **sampling) != recipe.diffusion:
        raise AudiodiffError(f"train.init: {path} was trained with different diffusion settings "
                             f"({other.diffusion}); few-step fine-tuning needs the model's own, but for "
                             f"diffusion.sampler and diffusion.sample_steps")
    net.load_state_dict(weights.state_dict())


def precision_dtype(precision: str, device: torch.device):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) * 1009 + rank)
    return g


def write_config(recipe: Recipe, path: Path) -> None:
    with atomic.replacing(path, "run config") as tmp:  # a kill mid-write must not truncate it and block the resume
        save_recipe(recipe, tmp)


def train_step(denoiser, mel_fn, batch, gen, device, amp_dtype, recipe: Recipe):
    """The training loss of one batch (a scalar): the denoiser's loss, plus ``train.mel_loss`` times the weighted
    log-mel loss of its estimate when that is on."""
    x = batch_inputs(recipe, batch, mel_fn, denoiser, gen, device, label_dropout=recipe.train.label_dropout)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        if not (recipe.train.mel_loss or recipe.train.stft_loss):
            return denoiser.loss(x.x0, x.sigma, x.noise, **x.cond).mean()
        loss, x0_hat = denoiser.loss(x.x0, x.sigma, x.noise, with_x0=True, **x.cond)
        return loss.mean() + auxiliary_loss(recipe, mel_fn, x0_hat, x.x0, x.mel, x.sigma)  # targets.py


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
    crops that fit a U-Net tile (or the few-step discriminators), a batch that splits across the processes, a
    backbone that builds (on the meta device: no memory), and noise levels for the default sampler, which
    validation and the exported model use."""
    family_of(recipe.model).check(recipe)
    fewstep.check(recipe)
    StepBatchSampler(recipe.train.batch_size, world=world)
    check_buildable(recipe.model, recipe.mel)
    d = recipe.diffusion
    try:
        sigmas_for(d.sampler, d.sample_steps, build_schedule(d), tuned=recipe.fewstep.schedules())
    except AudiodiffError as err:
        raise AudiodiffError(f"diffusion.sampler {d.sampler} with diffusion.sample_steps {d.sample_steps}: "
                             f"{err}") from None


def train(recipe: Recipe, run_dir: str | Path, *, device: str | None = None, progress: bool = True) -> Path:
    """Train (or resume) in ``run_dir``; returns the path of the last checkpoint (None in processes other than
    rank 0 of a distributed run, which write nothing). Everything checkable is checked
    before anything is written, and ``run_dir`` is locked for the whole run (``lock.py``): a second trainer there
    stops at once with an error naming this one."""
    run_dir = Path(run_dir)
    dist = distributed.setup(device)
    data_path = resolve_data(recipe)
    check_before_writing(recipe, dist.world)
    with run_lock(run_dir) if dist.main else contextlib.nullcontext():
        return _train(recipe, run_dir, dist, data_path, progress)


def _train(recipe: Recipe, run_dir: Path, dist: distributed.Dist, data_path: str, progress: bool) -> Path:
    """The run itself, ``run_dir`` locked: build, resume, then the loop (step, log, validate, save)."""
    tc = recipe.train
    saved, path = ckpt.load_latest(run_dir, map_location=dist.device)
    changes = check_resume(run_dir, recipe, saved and saved["recipe"], path)  # refused changes stop here, unwritten
    if dist.main:
        write_config(recipe, run_dir / "config.yaml")  # resolved config, before step 0 and before the data is read

    # Build.
    dataset, valid_set = build_data(recipe, data_path, run_dir, dist, progress)
    with torch.random.fork_rng(devices=[]):  # initial weights from train.seed, the caller's RNG untouched
        torch.manual_seed(tc.seed)
        net = build_backbone(recipe.model, recipe.mel)
    if tc.init and saved is None:  # a resumed run continues from its checkpoint
        load_initial_weights(net, tc.init, recipe)
    model = Trainable.build(net, tc, dist.device)
    amp_dtype = precision_dtype(tc.precision, dist.device)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=amp_dtype == torch.float16)
    mel_fn = MelSpectrogram(recipe.mel).to(dist.device)
    critic = fewstep.Critic.build(recipe, dist.device, lambda d: for_training(d, tc, dist)) \
        if recipe.fewstep.steps else None

    # Resume.
    st = TrainState()
    if saved is not None:
        model.load_state_dict(saved)
        load_scaler(scaler, saved)
        if critic is not None:
            critic.load_saved(saved, path)
            apply_critic_changes(changes, critic.opt, recipe.fewstep)
        apply_changes(changes, model.opt, model.sched, tc)
        st = TrainState.resumed(saved, path)
        if dist.main:
            log.info("resumed from %s at step %d", path, st.step)
            for key, old, new in changes:
                log.info("resume: %s %s -> %s", key, old, new)
    denoiser = build_denoiser(for_training(model.net, tc, dist), recipe.diffusion)
    sigmas = fewstep.unrolled_sigmas(recipe, denoiser.schedule) if critic is not None else None

    # Loop.
    loader = make_loader(dataset, tc.batch_size, st.step, dist, recipe.data.num_workers,
                         steps=max(0, tc.max_steps - st.step))
    with contextlib.ExitStack() as stack:
        stack.callback(distributed.teardown)
        logger = stack.enter_context(Logger(run_dir, recipe, dist, progress, st.step))
        logger.start(dataset, valid_set, model.net)
        stack.enter_context(stop_signals(st))
        t0 = time.perf_counter() - st.elapsed
        model.net.train()
        for batch in loader:
            gen = step_generator(tc.seed, st.step, dist.rank, dist.device)
            if critic is None:
                loss = train_step(denoiser, mel_fn, batch, gen, dist.device, amp_dtype, recipe)
                fault, grad_norm = backward(loss, model.net, model.opt, scaler, tc.grad_clip, dist.world)
                value, parts = (loss if fault == "loss" else grad_norm), None
            else:
                loss, grad_norm, fault, value, parts = fewstep.train_step(
                    denoiser, critic, model.net, model.opt, mel_fn, batch, gen, dist.device, amp_dtype, recipe,
                    st.step, sigmas, dist.world)
            if fault is None:
                st.bad_steps = 0
                model.update(scaler)
                if critic is not None:
                    critic.update()
                logger.add(loss, grad_norm, parts)
            else:
                skip_step(st, fault, value, model.opt, tc)
            st.step += 1
            st.elapsed = time.perf_counter() - t0
            if fault is None:  # a skipped step is not logged, validated or saved: nothing changed
                logger.step(st, model.sched)
                if st.step % tc.valid_every == 0 and dist.main and valid_set is not None:
                    validate(model.ema.model, recipe, valid_set, mel_fn, logger.writer, st.step, dist.device)
                if st.step % tc.checkpoint_every == 0:
                    save(st, model, scaler, recipe, run_dir, dist, critic)
            if st.stop_signal is not None or (tc.max_minutes > 0 and st.elapsed > tc.max_minutes * 60):
                break
        if st.step != st.saved_step:
            save(st, model, scaler, recipe, run_dir, dist, critic)
        if st.stop_signal is not None:
            raise Interrupted(f"stopped by signal {st.stop_signal} at step {st.step}; checkpoint {st.checkpoint}; "
                              f"run the same command to resume")
    return st.checkpoint if dist.main else None


def for_training(net: torch.nn.Module, tc, dist) -> torch.nn.Module:
    """``net`` as the training step calls it: compiled (GPU only) and wrapped for DDP across processes."""
    # compile only on a GPU, where compiled channels-last layers are faster (docs/performance.md); on the CPU the
    # compile time outweighs the gain for the short runs people make there.
    model = torch.compile(net) if tc.compile and dist.device.type == "cuda" else net
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index]
                                                          if dist.device.type == "cuda" else None)
    return model


def skip_step(st: TrainState, fault: str, value, opt, tc) -> None:
    """Record a step whose update is skipped (non-finite ``fault``: "loss" or "gradient"); raise once
    ``train.max_bad_steps`` come in a row."""
    st.bad_steps += 1
    opt.zero_grad(set_to_none=True)
    log.warning("step %d: non-finite %s (%s); step skipped", st.step, fault, value.item())
    if st.bad_steps >= tc.max_bad_steps:
        where = f"the last good checkpoint is {st.checkpoint}" if st.checkpoint else "no checkpoint was saved"
        raise AudiodiffError(f"training diverged: {st.bad_steps} non-finite steps in a row at step {st.step}; "
                             f"{where}; lower train.lr or check the data")


def save(st: TrainState, model: Trainable, scaler, recipe: Recipe, run_dir: Path, dist, critic=None) -> None:
    """Write the checkpoint of ``st.step`` (the main process only; every process records it as saved, so that
    their messages name it), with the few-step discriminators when there are some."""
    if dist.main:
        state = checkpoint_state(st, model, scaler, recipe)
        if critic is not None:
            state[fewstep.CHECKPOINT_KEY] = critic.state_dict()
        st.checkpoint = ckpt.save_checkpoint(state, run_dir, st.step, recipe.train.keep_checkpoints)
    else:
        st.checkpoint = ckpt.checkpoint_path(run_dir, st.step)
    st.saved_step = st.step


@contextlib.contextmanager
def stop_signals(st: TrainState):
    """SIGINT and SIGTERM set ``st.stop_signal`` (the loop then stops after its step, with a checkpoint)."""
    old = {s: signal.signal(s, lambda n, _: setattr(st, "stop_signal", n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Logger:
    """TensorBoard scalars every ``train.log_every`` steps (mean loss of the steps since the last), the progress
    bar or a log line, after each applied step; the main process only. ``writer`` is what validation logs to."""

    def __init__(self, run_dir: Path, recipe: Recipe, dist, progress: bool, step: int):
        self.tc, self.dist, self.writer, self.bar = recipe.train, dist, None, None
        self.window, self.parts, self.grad_norm, self.t_log = [], [], None, time.perf_counter()
        if not dist.main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is the train extra: an inference-only install leaves it out
            raise AudiodiffError("training logs to TensorBoard, which an inference-only install leaves out: "
                                 "pip install 'audiodiff[train]'") from None

        self.writer = SummaryWriter(str(run_dir / "logs"))
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=self.tc.max_steps, initial=step, unit="step", dynamic_ncols=True, desc="train")

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def start(self, dataset, valid_set, net) -> None:
        if not self.dist.main:
            return
        tc = self.tc
        log.info("training on %d files (%.1f min), validating on %d; %d parameters; device %s",
                 dataset.num_files, dataset.seconds / 60, valid_set.num_files if valid_set else 0,
                 sum(p.numel() for p in net.parameters()), self.dist.device)
        if tc.lr_decay == "cosine":  # the curve is fixed by max_steps, which a time-limited run may never reach
            log.info("learning rate %g, warm-up %d steps, then a half cosine to 0 at step %d (train.max_steps)",
                     tc.lr, tc.warmup_steps, tc.max_steps)

    def add(self, loss, grad_norm, parts: dict | None = None) -> None:
        """A good step's loss and gradient norm, and its loss terms ``parts`` (few-step fine-tuning's), all kept on
        the device until they are logged."""
        self.window.append(loss.detach())
        self.grad_norm = grad_norm
        if parts and self.dist.main:
            self.parts.append(parts)

    def step(self, st: TrainState, sched) -> None:
        if not self.dist.main:
            return
        if st.step % self.tc.log_every == 0:
            mean_loss = torch.stack(self.window).mean().item()
            self.window.clear()
            self.writer.add_scalar("train/loss", mean_loss, st.step)
            self.writer.add_scalar("train/grad_norm", self.grad_norm.item(), st.step)
            self.writer.add_scalar("train/lr", sched.get_last_lr()[0], st.step)
            self.writer.add_scalar("train/minutes", st.elapsed / 60, st.step)
            if self.parts:  # the mean of each term since the last log, read from the device at once
                names = sorted(self.parts[-1])
                means = torch.stack([torch.stack([p[k].float() for p in self.parts if k in p]).mean()
                                     for k in names]).tolist()
                for name, value in zip(names, means):
                    self.writer.add_scalar(f"fewstep/{name}", value, st.step)
                self.parts.clear()
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{mean_loss:.4f}")
            else:
                log.info("step %d  loss %.4f  %.2f steps/s  %.1f min", st.step, mean_loss,
                         self.tc.log_every / max(1e-9, time.perf_counter() - self.t_log), st.elapsed / 60)
            self.t_log = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
