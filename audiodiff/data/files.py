"""Finding audio files, splitting train/validation, and screening out files that cannot be used."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import soundfile as sf

from audiodiff.audio.io import AUDIO_EXTENSIONS
from audiodiff.errors import AudiodiffError

# libsndfile reads a WAV whose data stops short of its header's length without complaint, and logs the mismatch.
TRUNCATED = re.compile(r"^data\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
PLACEHOLDER = 0x7F000000  # streaming writers declare lengths near 2^31 or 2^32 when they can't seek back: not cut


def find_audio_files(path: str | os.PathLike, hint: str = "pass --data DIR or set AUDIODIFF_DATA") -> list[Path]:
    """Audio files under a folder (recursively, sorted) or listed one per line in a text file; ``hint`` ends the
    error message and says where the path came from (the default: training's ``--data``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if not files:
            raise AudiodiffError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {path}; {hint}")
        return files
    if path.is_file() and path.suffix.lower() in (".txt", ".lst", ".list", ".csv"):
        lines = [ln.strip().split("|")[0].split(",")[0] for ln in path.read_text().splitlines()]
        files = [(path.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines if ln]
        if not files:
            raise AudiodiffError(f"file list {path} is empty; expected one audio path per line")
        return files
    raise AudiodiffError(f"data path {path} is neither a folder nor a file list (.txt); {hint}")


def split_files(path, valid_path=None, valid_files: int = 8) -> tuple[list[Path], list[Path]]:
    """``(train, valid)``: ``valid_path`` if given, ``path/train`` + ``path/valid`` if both exist, else a stable
    hash-based hold-out of ``valid_files`` files (the same files whatever the order on disk)."""
    path = Path(path).expanduser()
    if valid_path is not None:
        return find_audio_files(path), find_audio_files(valid_path)
    if (path / "train").is_dir() and (path / "valid").is_dir():
        return find_audio_files(path / "train"), find_audio_files(path / "valid")
    files = find_audio_files(path)
    held = hold_out(files, valid_files)
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def hold_out(files, valid_files: int) -> set[int]:
    """Indices of the ``valid_files`` files (of at least one more) held out for validation: the first by a hash of
    the file name, so the same whatever the order on disk."""
    if len(files) <= valid_files or valid_files <= 0:
        return set()
    ranked = sorted(range(len(files)), key=lambda i: hashlib.sha1(Path(files[i]).name.encode()).hexdigest())
    return set(ranked[:valid_files])


def probe(path: str | Path) -> str | None:
    """Why ``path`` can't be used (a short reason), or None if it looks like audio."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty file"
        info = sf.info(str(path))
    except FileNotFoundError:
        return "missing"
    except Exception as err:  # libsndfile raises several types for junk
        detail = getattr(err, "error_string", None) or str(err).splitlines()[0]  # without the repeated path
        return f"not readable audio ({detail[:80]})"
    if info.frames == 0:
        return "no samples"
    cut = TRUNCATED.search(info.extra_info or "")
    if cut and int(cut[2]) < int(cut[1]) < PLACEHOLDER:
        return f"truncated: the header declares {cut[1]} bytes of audio, the file holds {cut[2]}"
    return None


def class_labels(files, mode: str | None, num_classes: int) -> tuple[list[int] | None, list[str]]:
    """Integer labels for ``files`` and the sorted class names; ``mode`` "prefix" takes the file-name part
    before the first "_". ``num_classes`` must match the number of classes found."""
    if mode is None:
        if num_classes:
            raise AudiodiffError(f"model.num_classes is {num_classes} but data.labels is not set; "
                                 f"set data.labels: prefix (class = file-name part before the first '_')")
        return None, []
    if mode != "prefix":
        raise AudiodiffError(f"data.labels {mode!r} is not known; expected 'prefix' or null")
    names = [Path(f).stem.split("_")[0] for f in files]
    classes = sorted(set(names), key=lambda c: (len(c), c))
    if len(classes) != num_classes:
        raise AudiodiffError(f"found {len(classes)} classes ({', '.join(classes[:12])}) but model.num_classes is "
                             f"{num_classes}; set model.num_classes: {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    return [index[n] for n in names], classes
