"""The training and validation crops of a run: which files (``data.path`` or ``data.manifest``), preloaded or read
lazily from disk (``data.preload``), and the step-indexed loader every process draws its slice of a batch from.

With ``data.preload: auto`` a corpus is preloaded when its audio as float32 at the training rate fits in
``PRELOAD_LIMIT`` bytes (per process; 2 GiB is 6.8 hours at 22.05 kHz), and read from disk otherwise. Lazy runs
list their files in ``RUN_DIR/manifest.tsv`` (``data/manifest.py``), so that a resume opens only the files that
changed since (rank 0 writes it, the other processes then read it). Every process builds the same data set, and
``StepBatchSampler`` gives each its own slice of every step's items, so the ranks see disjoint crops.

With ``data.pairs`` each file comes with an acoustic model's mel of it (``data/pairs.py``: beside it, under
``data.mel_path``, or in a manifest's ``mel`` column), for the training and the validation files alike.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from audiodiff import atomic
from audiodiff.config import Recipe, pairs_mel
from audiodiff.data import AudioCrops, StepBatchSampler, class_labels, split_files
from audiodiff.data.files import find_audio_files, hold_out
from audiodiff.data.manifest import Manifest, is_manifest, read_manifest, scan, write_manifest
from audiodiff.data.pairs import check_exist, mel_paths
from audiodiff.errors import AudiodiffError
from audiodiff.training import distributed

log = logging.getLogger("audiodiff")
DATA_ENV = "AUDIODIFF_DATA"
PRELOAD_LIMIT = 2 * 2**30  # bytes of float32 audio a process preloads under data.preload: auto
RUN_MANIFEST = "manifest.tsv"


def resolve_data(recipe: Recipe) -> str:
    """Where the training files come from: ``data.manifest``, else ``data.path`` or ``$AUDIODIFF_DATA``."""
    path = recipe.data.manifest or recipe.data.path or os.environ.get(DATA_ENV)
    if not path:
        raise AudiodiffError(f"no training data: pass --data DIR, set data.path (or data.manifest) in the recipe "
                             f"or ${DATA_ENV}")
    return path


def should_preload(setting, manifest: Manifest, rate: int) -> bool:
    """``data.preload`` resolved: ``auto`` preloads a corpus of up to ``PRELOAD_LIMIT`` bytes as float32."""
    if setting != "auto":
        return bool(setting)
    return int(manifest.samples_at(rate).sum()) * 4 <= PRELOAD_LIMIT


def _listing(recipe: Recipe, data_path: str):
    """``(train, valid)``: lists of paths, or for a manifest ``(Manifest, valid paths or Manifest)``."""
    d = recipe.data
    source = d.manifest or (data_path if is_manifest(data_path) else None)
    if source is None:
        return split_files(data_path, d.valid_path, d.valid_files)
    manifest = read_manifest(source)
    if d.valid_path is not None:
        return manifest, find_audio_files(d.valid_path)
    held = hold_out([manifest.path(i) for i in range(len(manifest))], d.valid_files)
    train = [i for i in range(len(manifest)) if i not in held]
    return manifest.select(train), manifest.select(sorted(held)) if held else []


def pair_mels(recipe: Recipe, files, data_path: str) -> list[str] | None:
    """The mel file of each of ``files`` (a list or a ``Manifest``) when training from pairs, else None."""
    d = recipe.data
    if not d.pairs or not len(files):
        return None
    if isinstance(files, Manifest) and files.mels is not None and d.mel_path is None:
        check_exist(_paths(files), list(files.mels))
        return [str(m) for m in files.mels]
    source = d.manifest or data_path
    roots = [Path(source).parent if Path(source).is_file() else source, d.valid_path]
    return mel_paths(_paths(files), d.mel_path, roots)


def source_mel(recipe: Recipe, report: bool = True):
    """The pairs' mel convention (``config.pairs_mel``; None: the recipe's mel), checked for the recipe's model;
    ``report``: log what its conversion approximates (the main process)."""
    d = recipe.data
    if not recipe.model.mel_conditioned:
        raise AudiodiffError(f"data.pairs: true gives a mel-conditioned model its conditioning, but this "
                             f"{recipe.model.arch} model takes no mel; set data.pairs: false, or train a vocoder")
    src = pairs_mel(d)
    if src is not None and report:
        from audiodiff.audio.convert import describe

        log.info("data: pairs: %s", describe(d.mel_preset, "the recipe's convention", src, recipe.mel))
    return src


def _paths(files) -> list[str]:
    return [files.path(i) for i in range(len(files))] if isinstance(files, Manifest) else [str(f) for f in files]


def _run_manifest(files, run_dir: Path, dist, progress: bool) -> Manifest:
    """The manifest of ``files``, reusing the rows of ``run_dir``'s cached one whose file has not changed. Rank 0
    scans and writes it; the other processes wait for it and read it, so a corpus's headers are read once."""
    cached = Path(run_dir) / RUN_MANIFEST
    if not dist.main:
        distributed.barrier(dist.world)
        if not cached.is_file():  # rank 0 found no usable file, and says so
            return scan([])
        listed = read_manifest(cached)
        index = {os.fsencode(Path(f).absolute()): i for i, f in enumerate(files)}
        listed.kept = np.array([index[p] for p in listed.paths], np.int64)
        return listed
    known = None
    if cached.is_file():
        try:
            known = read_manifest(cached)
        except AudiodiffError as err:
            log.warning("rebuilding %s: %s", cached, err)
    listed = scan(files, progress=progress, known=known)
    try:
        if len(listed):
            write_manifest(listed, cached)
        else:
            cached.unlink(missing_ok=True)
    finally:
        distributed.barrier(dist.world)  # with a manifest written, or none usable (the data set then says so)
    return listed


def build_data(recipe: Recipe, data_path: str, run_dir: Path, dist, progress: bool):
    """``(training crops, validation crops or None)``, with the class list written to ``run_dir/classes.txt``."""
    d, seed, rate = recipe.data, recipe.train.seed, recipe.mel.sample_rate
    train_files, valid_files = _listing(recipe, data_path)
    mel_source = source_mel(recipe, dist.main) if d.pairs else None
    train_mels, valid_mels = pair_mels(recipe, train_files, data_path), pair_mels(recipe, valid_files, data_path)
    train_paths = _paths(train_files)
    labels, classes = class_labels(train_paths + _paths(valid_files), d.labels, recipe.model.num_classes)
    train_labels = labels[: len(train_paths)] if labels else None
    valid_labels = labels[len(train_paths):] if labels else None
    if classes and dist.main:
        atomic.write_text(run_dir / "classes.txt", "\n".join(classes) + "\n", "class list")
    preload = d.preload
    if d.preload is not True:
        if not isinstance(train_files, Manifest):
            train_files = _run_manifest(train_files, run_dir, dist, progress)
            train_labels = [train_labels[i] for i in train_files.kept] if train_labels else None
            train_mels = [train_mels[i] for i in train_files.kept] if train_mels else None
        preload = should_preload(d.preload, train_files, rate)
        if dist.main:
            log.info("data: %.1f h in %d files, %s (data.preload %s)", train_files.seconds / 3600,
                     len(train_files), "preloaded" if preload else "read from disk as crops are drawn",
                     d.preload)
    dataset = AudioCrops(train_files, recipe.mel, d.crop_frames, seed=seed, labels=train_labels,
                         progress=progress and dist.main, pad_short=d.pad_short, speed_perturb=d.speed_perturb,
                         preload=preload, report=dist.main, mels=train_mels, mel_source=mel_source)
    if dist.main:
        report_rates(dataset, recipe.mel)
    valid_set = AudioCrops(valid_files, recipe.mel, d.crop_frames, seed=seed + 1, labels=valid_labels,
                           pad_short=d.pad_short, report=dist.main, mels=valid_mels,
                           mel_source=mel_source) if len(valid_files) else None
    return dataset, valid_set


def report_rates(dataset: AudioCrops, mel) -> None:
    """Say how many files are below the training rate, and whether the mel can show the band they lack."""
    low = dataset.rates < mel.sample_rate
    if not low.any():
        return
    lowest = int(dataset.rates[low].min())
    hours = float(dataset.lengths[low].sum() / mel.sample_rate / 3600)
    fmax = mel.fmax if mel.fmax is not None else mel.sample_rate / 2
    what = f"{low.sum()} of {dataset.num_files} files ({hours:.1f} h) are below {mel.sample_rate} Hz (the lowest " \
           f"{lowest} Hz) and hold nothing above {lowest / 2000:g} kHz"
    if fmax > lowest / 2:
        log.info("data: %s; the mel (to %g kHz) shows it, so the model learns that band from the mel", what,
                 fmax / 1000)
    else:
        log.info("data: %s; the mel stops at %g kHz, so it cannot show which clips lack that band, and they "
                 "teach some silence there; measured harmless to full-band voices (docs/data.md, mixed sample "
                 "rates)", what, fmax / 1000)


def ignore_stop_signals(_worker_id: int) -> None:
    # Ctrl-C and a scheduler's SIGTERM reach the whole process group. The main process stops the loader itself
    # after saving; a data worker killed first would turn that clean stop into a "worker killed" crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset, batch_size: int, start: int, dist, workers: int, steps=None) -> DataLoader:
    """Batches of steps ``start, start + 1, ...``, this process's slice of each (``StepBatchSampler``)."""
    sampler = StepBatchSampler(batch_size, start, dist.rank, dist.world, steps)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=dist.device.type == "cuda",
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      worker_init_fn=ignore_stop_signals if workers > 0 else None)
