"""Atomic output: every file and model directory audiodiff writes appears whole or not at all.

A file is written to a temporary sibling (``.tmp-STEM-XXXXXXXX.SUFFIX``, in the same folder so that the rename never
crosses file systems), fsynced, then renamed over the target (POSIX ``rename`` is atomic); a model directory is built
in a temporary sibling directory and renamed into place. On failure the temporary is removed, an earlier file at the
target is untouched, and one ``AudiodiffError`` line names the path, the cause (``strerror``) and the fix.

Callers serialise into memory first (``torch.save``, libsndfile, ``np.save``, safetensors) and hand over bytes, so
that a full disk surfaces as the ``OSError`` of an ordinary write: torch's zip writer reports it as "unexpected pos"
and libsndfile as "System error", both without the errno. Temporary files are created with mode ``0o666`` and
directories ``0o777``, less the umask, like ``open(path, "w")`` and ``mkdir``, so the renamed result has the
permissions of any other file the user creates (``tempfile.mkstemp`` would make them 0600).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from audiodiff.errors import AudiodiffError

FIX = "free disk space or fix the folder's permissions"


def _temp_path(path: Path, tag: str = "tmp") -> Path:
    return path.with_name(f".{tag}-{path.stem}-{secrets.token_hex(4)}{path.suffix}")


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new file beside ``path`` and its open descriptor; mode 0o666 less the umask."""
    while True:
        tmp = _temp_path(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself survive a power cut; best effort (some file systems refuse to fsync a directory).
    with contextlib.suppress(OSError):
        _fsync(folder)


def _write_error(what: str, path: Path, err: OSError, existed: bool, then: str | None) -> AudiodiffError:
    kept = "the earlier one is unchanged" if existed else "nothing was written"
    return AudiodiffError(f"could not write {what} {path}: {err.strerror or err}; {FIX}, "
                          f"{then or f'then try again ({kept})'}")


@contextlib.contextmanager
def replacing(path: str | os.PathLike, what: str = "file", then: str | None = None) -> Iterator[Path]:
    """Yield a new empty temporary file beside ``path`` (missing parent folders are created) for a writer that needs
    a path; when the block ends, the file is fsynced and renamed over ``path``. An ``OSError`` (in the block or after
    it) becomes one ``AudiodiffError`` line, ``could not write WHAT PATH: CAUSE; free disk space ..., THEN``; any
    exception removes the temporary."""
    path = Path(path)
    existed, tmp = path.exists(), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
        os.close(fd)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise _write_error(what, path, err, existed, then) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_folder(path.parent)


def write_bytes(path: str | os.PathLike, data, what: str = "file", then: str | None = None) -> Path:
    """Write ``data`` (bytes or a buffer) to ``path`` atomically; errors as :func:`replacing`."""
    with replacing(path, what, then) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, what: str = "file", then: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; errors as :func:`replacing`."""
    return write_bytes(path, text.encode("utf-8"), what, then)


def _check_replaceable(path: Path, what: str, owned) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise AudiodiffError(f"cannot write {what} {path}: a file of that name exists; give a folder path")
    foreign = sorted(p.name for p in path.iterdir() if p.name not in owned)
    if foreign:
        raise AudiodiffError(f"cannot write {what} {path}: the folder exists and holds {foreign[0]!r}, which is not "
                             f"part of a {what}; give a new folder, or move its contents away")


@contextlib.contextmanager
def replacing_dir(path: str | os.PathLike, what: str = "model directory", owned=()) -> Iterator[Path]:
    """Yield a new empty temporary directory beside ``path``; when the block ends, its files are fsynced and it takes
    the place of ``path``. An existing ``path`` is replaced whole (nothing of the earlier one survives) but only if it
    holds nothing except ``owned`` names, the entries such a directory has; an empty folder is always replaceable.
    The earlier directory is moved aside, the new one renamed in, then the earlier one deleted: a process killed
    between the two renames leaves the earlier one as ``.old-NAME-*`` beside it. Errors as :func:`replacing`."""
    path = Path(path)
    _check_replaceable(path, what, owned)
    existed, tmp = path.exists(), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while tmp is None:
            candidate = _temp_path(path)
            with contextlib.suppress(FileExistsError):
                os.mkdir(candidate, 0o777)
                tmp = candidate
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                _fsync(Path(folder) / name)
            _fsync_folder(Path(folder))
        try:
            os.rename(tmp, path)  # replaces a missing path or an empty folder atomically
        except OSError:
            if not path.is_dir():
                raise
            old = _temp_path(path, "old")
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except OSError:
                os.rename(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        tmp = None
    except OSError as err:
        raise _write_error(what, path, err, existed, None) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    _fsync_folder(path.parent)


def check_writable(path: str | os.PathLike, what: str = "output", directory: bool = False, owned=()) -> Path:
    """Fail now, before minutes of work, if ``path`` could not be written at the end: create its missing parent
    folders (as the writers always have), then create and remove a temporary file in its folder, the step a write
    starts with (this also catches a read-only file system or an immutable folder, which ``os.access`` misses for
    root). ``directory``: ``path`` is a directory target, replaceable as :func:`replacing_dir` says with ``owned``."""
    path = Path(path)
    folder = path.parent
    if directory:
        _check_replaceable(path, what, owned)
    elif path.is_dir():
        raise AudiodiffError(f"cannot write {what} {path}: it is a folder; give a file path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise AudiodiffError(f"cannot write {what} {path}: {blocker} is a file, not a folder; "
                             f"choose another path") from None
    except OSError as err:
        raise AudiodiffError(f"cannot write {what} {path}: could not create the folder {folder} ({err.strerror}); "
                             f"choose another folder or fix its permissions") from None
    try:
        fd, tmp = _create_temp(path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise AudiodiffError(f"cannot write {what} {path}: the folder {folder} is not writable ({err.strerror}); "
                             f"choose another folder or make it writable") from None
    return path
