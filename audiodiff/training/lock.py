"""One trainer per run directory: ``RUN/.lock`` carries an operating-system lock for as long as a ``train`` process
works in ``RUN``, and names that process (pid, start time, command) for any other that tries.

The lock is a POSIX record lock (``fcntl.lockf``). The kernel drops it when its process ends, however it ends
(SIGKILL included), so it is never stale; the file itself stays behind, empty. Unlike ``flock``, a record lock belongs
to the process and is not shared with forked children, so data-loader workers orphaned by a killed trainer cannot
hold it after the trainer is gone. Under DDP only rank 0 takes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from audiodiff.errors import AudiodiffError

log = logging.getLogger("audiodiff")
NAME = ".lock"


def _command() -> str:
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    prog = "audiodiff" if prog in ("__main__.py", "audiodiff") else prog
    text = " ".join([prog, *map(shlex.quote, sys.argv[1:])])
    return text if len(text) <= 400 else text[:397] + "..."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(fd: int) -> str:
    """The lock holder as it describes itself. It writes that right after locking (over what a killed holder may
    have left), so wait a moment for a description of a live process."""
    for _ in range(20):
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            here = info["host"] == socket.gethostname()
            if not here or _alive(int(info["pid"])):
                where = "" if here else f" on {info['host']}"
                return f"pid {info['pid']}{where}, started {info['started']}: {info['command']}"
        except (ValueError, KeyError, TypeError, OSError):
            pass
        time.sleep(0.05)
    return "pid unknown"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` while the block runs (``run_dir`` is created); raise ``AudiodiffError`` naming the
    other process when one holds it already."""
    path = Path(run_dir) / NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise AudiodiffError(f"cannot use {run_dir} as a run directory: could not open {path} ({err.strerror}); "
                             f"pass another --run-dir or fix the folder's permissions") from None
    locked = False
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise AudiodiffError(f"{run_dir} is in use by another audiodiff train ({_holder(fd)}); wait for it "
                                     f"to finish or pass another --run-dir") from None
            log.warning("could not lock %s (%s); make sure no other audiodiff train uses %s",  # no locks here
                        path, err.strerror, run_dir)
        locked = True
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:  # the description is a courtesy to the next process: a full disk must not stop the run here
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        except OSError as err:
            log.warning("could not describe this run in %s (%s); another trainer will see 'pid unknown'", path,
                        err.strerror)
        yield path
    finally:
        if locked:  # still held: the description goes before the lock does
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock
