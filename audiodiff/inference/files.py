"""Vocoding files: one ``.npy`` mel, or a folder (or ``.txt`` list) of them into one wav each, batched.

``load_mel`` reads one mel and names what it was given instead (an audio file, a zip, a text file). ``vocode_files``
vocodes many: it reads every mel's shape first, orders the mels by length so that mels of one length meet in one
batch (chunks of one length stack without padding, ``inference/chunks.py``), and vocodes ``batch`` mels per call.
Every file draws noise row 0 of the seed, so each wav is what ``audiodiff synth FILE.npy OUT.wav`` with the same
seed writes, up to the float rounding of another batch shape, whatever else the folder holds. The module imports no
torch at import time (the CLI imports it).
"""

from __future__ import annotations

from pathlib import Path

from audiodiff.errors import AudiodiffError

# The first bytes of files that people give synth instead of a .npy mel.
MAGIC = ((b"RIFF", "a WAV audio file"), (b"fLaC", "a FLAC audio file"), (b"OggS", "an Ogg audio file"),
         (b"ID3", "an MP3 audio file"), (b"\xff\xfb", "an MP3 audio file"), (b"\xff\xf3", "an MP3 audio file"),
         (b"FORM", "an AIFF audio file"))
BATCH = 16  # mels per vocoder call in vocode_files


def load_mel(path: Path, mmap: bool = False):
    """The array in the ``.npy`` file ``path``; an audio file, a zip, a text file or an unreadable file is refused
    with one line saying what to do. ``mmap``: map it instead of reading it (to learn its shape)."""
    import numpy as np

    if not path.is_file():
        raise AudiodiffError(f"{path}: no such file; give a .npy mel saved by `audiodiff mel` or np.save")
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise AudiodiffError(f"{path}: the file is empty (0 bytes); give a .npy mel saved by `audiodiff mel` or "
                             f"np.save")
    kind = next((name for magic, name in MAGIC if head.startswith(magic)), None)
    if kind is not None:
        raise AudiodiffError(f"{path} is {kind}, not a mel; make its mel with `audiodiff mel {path} MEL.npy` "
                             f"(or pass --model MODEL to use a model's mel settings), then synth MEL.npy")
    if head.startswith(b"PK\x03\x04"):
        raise AudiodiffError(f"{path} is a zip archive (np.savez?), not one .npy array; save the mel with np.save")
    if not head.startswith(b"\x93NUMPY") and _is_text(head):
        raise AudiodiffError(f"{path} is a text file, not a .npy mel; save mels with np.save (a text array loads "
                             f"with np.loadtxt)")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError) as err:
        raise AudiodiffError(f"{path}: not a numpy .npy array ({str(err)[:80]}); save mels with np.save") from None


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # possibly cut inside a character at byte 512: judge what came before
        text = head[:-4].decode("utf-8", errors="replace")
    return "\ufffd" not in text and all(c.isprintable() or c in "\t\r\n\f" for c in text)


def mel_files(source: Path) -> list[tuple[Path, Path]]:
    """``(mel file, wav name relative to the output folder)`` of a folder (every ``*.npy`` below it, the folder
    layout kept) or a ``.txt`` list (one path per line, relative to the list's folder; blank lines and ``#``
    comments skipped; each wav named after its mel), in sorted order."""
    if source.is_dir():
        files = sorted(source.rglob("*.npy"))
        if not files:
            raise AudiodiffError(f"{source}: no .npy mels in this folder (or below it); make them with "
                                 f"`audiodiff mel` or np.save")
        return [(f, f.relative_to(source).with_suffix(".wav")) for f in files]
    lines = [line.strip() for line in source.read_text().splitlines()]
    files = [Path(line) if Path(line).is_absolute() else source.parent / line
             for line in lines if line and not line.startswith("#")]
    if not files:
        raise AudiodiffError(f"{source}: the list names no mel files; give one .npy path per line")
    names = [Path(f.stem + ".wav") for f in files]
    seen: dict[Path, Path] = {}
    for f, name in zip(files, names):
        if name in seen:
            raise AudiodiffError(f"{source}: {seen[name]} and {f} would both be written as {name}; rename one, or "
                                 f"put the mels in a folder and pass the folder")
        seen[name] = f
    return list(zip(files, names))


def vocode_files(voc, source: Path, out_dir: Path, seed: int = 0, batch: int = BATCH,
                 progress: bool = True, convert=None) -> list[Path]:
    """Vocode every mel of ``source`` (a folder or a ``.txt`` list, ``mel_files``) with the ``Vocoder`` ``voc``
    into ``out_dir``, ``batch`` mels per call, with a progress bar; returns the written paths, in sorted order.
    A mel that is refused stops the run with its file named; the wavs written before it stay. ``convert``: applied
    to each loaded mel first (another convention's mel into the model's, ``audio/convert.py``)."""
    import numpy as np
    from tqdm import tqdm

    from audiodiff.audio.io import save_audio
    from audiodiff.errors import check_count

    check_count("batch", batch)
    jobs = mel_files(source)
    frames = []
    for path, _ in jobs:
        shape = load_mel(path, mmap=True).shape
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] != 1):
            raise AudiodiffError(f"{path}: mel has shape {tuple(shape)}; a folder holds one mel [n_mels, frames] "
                                 f"per file")
        frames.append(shape[-1])
    order = sorted(range(len(jobs)), key=lambda k: (frames[k], k))  # equal lengths side by side
    written: dict[int, Path] = {}
    with tqdm(total=len(jobs), unit="file", desc="synth", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(order), batch):
            ks = order[start:start + batch]
            mels = []
            for k in ks:
                try:
                    arr = np.asarray(load_mel(jobs[k][0]))
                    mels.append(voc.prepare(arr if convert is None else convert(arr))[0])
                except AudiodiffError as err:
                    raise AudiodiffError(f"{jobs[k][0]}: {err}") from None
            waves = voc.vocode_rows(mels, [0] * len(mels), seed)
            for k, wave in zip(ks, waves):
                (out_dir / jobs[k][1]).parent.mkdir(parents=True, exist_ok=True)
                written[k] = save_audio(out_dir / jobs[k][1], wave.cpu().numpy(), voc.sample_rate)
            bar.update(len(ks))
    return [written[k] for k in range(len(jobs))]
