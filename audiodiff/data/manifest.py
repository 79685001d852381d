"""Manifests: one row per audio file (path, length in samples, sample rate, optional speaker), read from headers
once so that a corpus larger than memory can be cropped lazily from disk (``dataset.AudioCrops(preload=False)``).

A manifest is a tab-separated text file with a header line::

    path	frames	sample_rate	speaker	size	mtime_ns
    LibriTTS/19/198/19_198_000000_000000.wav	178560	24000	19	357164	1699999999000000000

``path`` is relative to the manifest's folder (or absolute), ``frames`` the file's length in samples at its own
``sample_rate``; ``speaker`` may be empty. ``size`` and ``mtime_ns`` let a cached manifest be reused for the files
that have not changed since (``update_manifest``); a manifest written by other tools may leave them empty. A row may
repeat a path (a corpus weighted by repetition).

An optional seventh column ``mel`` names each file's acoustic-model mel (a ``.npy``, relative to the manifest's
folder or absolute) for training from pairs (``data.pairs``, ``pairs.py``); ``audiodiff data manifest --mels`` fills
it with the ``.npy`` beside each audio file, ``--mel-path DIR`` with those in ``DIR``.

Screening here reads headers only: a missing, empty, unreadable or truncated file is skipped with its reason. Silent
files and non-finite samples show only when decoded, which the preloaded data set does and the lazy one does not.
Paths are held as one bytes array, not a list of strings, so that forked loader workers do not copy them page by
page as they touch reference counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from audiodiff import atomic
from audiodiff.data.files import probe
from audiodiff.errors import AudiodiffError

COLUMNS = ("path", "frames", "sample_rate", "speaker", "size", "mtime_ns")
MEL_COLUMN = "mel"  # optional, after COLUMNS: the file's acoustic-model mel (training from pairs)
SPEAKER_RULES = ("prefix", "parent")  # file-name part before the first "_", or the name of the file's folder


@dataclass
class Manifest:
    """Rows of a manifest as arrays: ``paths`` (bytes, absolute), ``frames`` and ``rates`` (int64),
    ``speakers`` (str, "" when unknown); ``skipped`` lists ``(path, reason)`` of files left out while scanning;
    ``mels`` (str, absolute, "" for none) the ``mel`` column's paths, or None for a manifest without it."""

    paths: np.ndarray
    frames: np.ndarray
    rates: np.ndarray
    speakers: np.ndarray
    sizes: np.ndarray = None
    mtimes: np.ndarray = None
    skipped: list = field(default_factory=list)
    kept: np.ndarray = None  # [rows] index of each row in the file list scanned (``scan``)
    mels: np.ndarray = None

    def __post_init__(self):
        n = len(self.paths)
        self.sizes = np.full(n, -1, np.int64) if self.sizes is None else self.sizes
        self.mtimes = np.full(n, -1, np.int64) if self.mtimes is None else self.mtimes
        self.kept = np.arange(n) if self.kept is None else self.kept

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> str:
        return os.fsdecode(self.paths[i])

    @property
    def seconds(self) -> float:
        return float(np.sum(self.frames / self.rates))

    def samples_at(self, rate: int) -> np.ndarray:
        """Each file's length in samples once resampled to ``rate`` (what ``audio.io.load_audio`` returns)."""
        return -(-self.frames * rate // self.rates)

    def select(self, rows) -> "Manifest":
        rows = np.asarray(rows, dtype=np.int64)
        return Manifest(self.paths[rows], self.frames[rows], self.rates[rows], self.speakers[rows],
                        self.sizes[rows], self.mtimes[rows], list(self.skipped), self.kept[rows],
                        None if self.mels is None else self.mels[rows])


def speaker_of(path: Path, rule: str | None) -> str:
    if rule is None:
        return ""
    if rule == "prefix":
        return path.stem.split("_")[0]
    if rule == "parent":
        return path.parent.name
    raise AudiodiffError(f"speaker rule {rule!r} is not known; expected one of {', '.join(SPEAKER_RULES)}")


def _row(path: Path, speaker: str | None):
    """``(frames, rate, speaker, size, mtime_ns)`` of ``path``, or the reason it cannot be used."""
    reason = probe(path)
    if reason is not None:
        return reason
    info, st = sf.info(str(path)), path.stat()
    return int(info.frames), int(info.samplerate), speaker_of(path, speaker), st.st_size, st.st_mtime_ns


def scan(files, speaker: str | None = None, progress: bool = False, known: Manifest | None = None) -> Manifest:
    """The manifest of ``files`` from their headers; rows of ``known`` whose file has the same size and
    modification time are reused without opening the file."""
    reuse = {}
    if known is not None:
        reuse = {p: i for i, p in enumerate(known.paths) if known.sizes[i] >= 0}
    iterator = files
    if progress:
        from tqdm import tqdm
        iterator = tqdm(files, desc="reading audio headers", unit="file", leave=False)
    rows, skipped, kept = [], [], []
    for n, path in enumerate(iterator):
        path = Path(path).absolute()
        i = reuse.get(os.fsencode(path))
        if i is not None:
            try:
                st = path.stat()
            except OSError:
                st = None
            if st is not None and st.st_size == known.sizes[i] and st.st_mtime_ns == known.mtimes[i]:
                rows.append((path, int(known.frames[i]), int(known.rates[i]), str(known.speakers[i]),
                             st.st_size, st.st_mtime_ns))
                kept.append(n)
                continue
        row = _row(path, speaker)
        if isinstance(row, str):
            skipped.append((str(path), row))
        else:
            rows.append((path, *row))
            kept.append(n)
    manifest = _from_rows(rows, skipped)
    manifest.kept = np.array(kept, np.int64)
    return manifest


def _from_rows(rows, skipped) -> Manifest:
    if not rows:
        return Manifest(np.array([], dtype="S1"), *(np.zeros(0, np.int64) for _ in range(2)),
                        np.array([], dtype=str), skipped=skipped)
    paths, frames, rates, speakers, sizes, mtimes = zip(*rows)
    return Manifest(np.array([os.fsencode(p) for p in paths]), np.array(frames, np.int64),
                    np.array(rates, np.int64), np.array(speakers, dtype=str), np.array(sizes, np.int64),
                    np.array(mtimes, np.int64), skipped)


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> Path:
    """Write ``manifest`` to ``path`` (atomically), with paths relative to its folder where they lie under it."""
    path = Path(path).absolute()
    base = os.fsencode(path.parent) + b"/"
    lines = ["\t".join(COLUMNS + ((MEL_COLUMN,) if manifest.mels is not None else ()))]
    for i in range(len(manifest)):
        p = _relative(manifest.paths[i], base)
        lines.append(f"{p}\t{manifest.frames[i]}\t{manifest.rates[i]}\t{manifest.speakers[i]}\t"
                     f"{'' if manifest.sizes[i] < 0 else manifest.sizes[i]}\t"
                     f"{'' if manifest.mtimes[i] < 0 else manifest.mtimes[i]}"
                     + (f"\t{_relative(manifest.mels[i], base)}" if manifest.mels is not None else ""))
    return atomic.write_text(path, "\n".join(lines) + "\n", "manifest")


def _relative(path: str | bytes, base: bytes) -> str:
    """``path`` relative to the folder ``base`` (bytes, ending in "/") where it lies under it."""
    p = os.fsencode(path)
    p = os.fsdecode(p[len(base):] if p.startswith(base) else p)
    if "\t" in p or "\n" in p:
        raise AudiodiffError(f"{p}: a path with a tab or newline cannot go in a manifest; rename the file")
    return p


def is_manifest(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a manifest file (its first line is the manifest header)."""
    path = Path(path).expanduser()
    if not path.is_file() or path.suffix.lower() != ".tsv":
        return False
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\n").split("\t")[:3] == list(COLUMNS[:3])


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The rows of the manifest at ``path``; a malformed line is an error naming its line number."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise AudiodiffError(f"manifest {path} does not exist; write one with: audiodiff data manifest FOLDER")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if header[:3] != list(COLUMNS[:3]):
        raise AudiodiffError(f"{path} is not a manifest: its first line should be the tab-separated header "
                             f"{' '.join(COLUMNS)}; write one with: audiodiff data manifest FOLDER")
    base, rows, mels = path.parent, [], []
    mel_at = header.index(MEL_COLUMN) if MEL_COLUMN in header else None
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t") + [""] * len(COLUMNS)
        try:
            frames, rate = int(cells[1]), int(cells[2])
            size, mtime = int(cells[4] or -1), int(cells[5] or -1)
        except ValueError:
            raise AudiodiffError(f"{path}, line {n}: expected path, frames and sample_rate (integers) separated "
                                 f"by tabs, got {line[:120]!r}") from None
        if frames <= 0 or rate <= 0:
            raise AudiodiffError(f"{path}, line {n}: frames and sample_rate must be positive, got {frames} and "
                                 f"{rate}; rebuild it with: audiodiff data manifest")
        rows.append((base / cells[0], frames, rate, cells[3], size, mtime))
        if mel_at is not None:
            mels.append(str(base / cells[mel_at]) if cells[mel_at] else "")
    if not rows:
        raise AudiodiffError(f"manifest {path} lists no files; write one with: audiodiff data manifest FOLDER")
    manifest = _from_rows(rows, [])
    manifest.mels = np.array(mels, dtype=str) if mel_at is not None else None
    return manifest
