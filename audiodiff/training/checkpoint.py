"""Resumable training checkpoints: written atomically (``atomic.py``: temporary file, fsync, rename), the last k
kept, loaded with ``torch.load(weights_only=True)`` so a checkpoint can never run code.

A process killed mid-write leaves only a ``.tmp-*`` file, which is never loaded and is removed by the next save.
Faults tested: docs/reliability.md.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import torch

from audiodiff import atomic
from audiodiff.errors import AudiodiffError

log = logging.getLogger("audiodiff")
PATTERN = re.compile(r"^ckpt-(\d{8})\.pt$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch's weights_only message carries terminal bold
UNSAFE = re.compile(r"WeightsUnpickler error: (.*?)(?:\. |$)", re.MULTILINE)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints in ``run_dir`` sorted by step, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.match(p.name))


def save_checkpoint(state: dict, run_dir: Path, step: int, keep: int = 3) -> Path:
    """Write ``state`` for ``step`` atomically; remove all but the newest ``keep``. Raises ``AudiodiffError``
    (leaving earlier checkpoints untouched) if the write fails."""
    path = checkpoint_path(run_dir, step)
    buf = io.BytesIO()  # in memory first: torch's zip writer hides a full disk's ENOSPC ("unexpected pos")
    torch.save(state, buf)
    atomic.write_bytes(path, buf.getbuffer(), "checkpoint", "then resume (earlier checkpoints are intact)")
    for stale in path.parent.glob(".tmp-*.pt"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        text = ANSI.sub("", str(err))
        unsafe = UNSAFE.search(text)
        detail = f"it holds pickled code or objects, never loaded: {unsafe[1][:120]}" if unsafe \
            else (text.splitlines() or [type(err).__name__])[0][:120]
        raise AudiodiffError(
            f"{path} is not a loadable audiodiff checkpoint ({detail}); "
            f"only checkpoints written by audiodiff train are accepted"
        ) from None


def load_latest(run_dir: Path, map_location="cpu") -> tuple[dict, Path] | tuple[None, None]:
    """The newest checkpoint that loads (an unreadable newer one is reported and skipped); ``(None, None)`` when
    there is none. Raises ``AudiodiffError`` when checkpoints exist but none loads, rather than start over."""
    paths = list_checkpoints(run_dir)
    first_error = None
    for path in reversed(paths):
        try:
            return load_checkpoint(path, map_location), path
        except AudiodiffError as err:
            log.warning("skipping %s", err)
            first_error = first_error or err
    if paths:
        raise AudiodiffError(f"none of the {len(paths)} checkpoint(s) in {paths[0].parent} loads (newest: "
                             f"{first_error}); put back a good checkpoint, or move these away to start over")
    return None, None
