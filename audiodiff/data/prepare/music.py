"""Synthetic music training data: scores from the music21 corpus rendered through a General MIDI soundfont.

Real music recordings with a clear licence are scarce, so the music recipe trains on renders the project makes
itself: each piece (Bach chorales, Palestrina, Monteverdi, Trecento, Mozart and Haydn quartets, all bundled with
music21) is converted to MIDI, every part gets its own channel and a General MIDI program from one instrument
family, and the whole piece is rendered by ``midirenderer`` (a Rust SoundFont synthesizer with manylinux wheels
and no system libraries) through the TimGM6mb soundfont that ``pretty_midi`` ships. One family per piece means
the family name can lead the file name (``strings_bach-bwv66-6_3.flac``), so ``data.labels: prefix`` conditions on it.

``tinysoundfont`` would do the same, but it declares a hard dependency on ``pyaudio``, which has no Linux wheels;
``pip install 'audiodiff[music]'`` must work without a compiler and PortAudio headers.
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiodiff.errors import AudiodiffError

INSTALL_HINT = "pip install 'audiodiff[music]'"
# music21 corpus folders: chorales, Renaissance and Trecento polyphony, Classical string quartets
COLLECTIONS = ("bach", "palestrina", "monteverdi", "trecento", "mozart", "haydn")
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn")  # not .rntxt (analyses) or .abc (mostly melodies)
DEFAULT_SOUNDFONT = "TimGM6mb.sf2 (pretty_midi package)"
TIMGM_LICENCE = ("GPL-2.0, by Tim Brechbill; the small GM bank MuseScore and Debian (timgm6mb-soundfont) ship, "
                 "copied inside the MIT-licensed pretty_midi wheel")

# General MIDI programs (0-based) per family, for parts from the top voice down; the last repeats for extra parts.
PROGRAMS: dict[str, tuple[int, ...]] = {
    "piano": (0,),  # Acoustic Grand Piano
    "epiano": (4,),  # Electric Piano 1
    "organ": (19,),  # Church Organ
    "harpsichord": (6,),
    "strings": (40, 40, 41, 42, 43),  # violin, violin, viola, cello, contrabass
    "winds": (73, 68, 71, 70),  # flute, oboe, clarinet, bassoon
    "brass": (56, 56, 60, 57, 58),  # trumpet, trumpet, french horn, trombone, tuba
    "guitar": (24,),  # Acoustic Guitar (nylon)
}
DRUM_CHANNEL = 9  # GM percussion: never give a melodic part this channel


@dataclass(frozen=True)
class Clip:
    """One written clip, as a row of manifest.csv."""

    file: str
    family: str
    programs: str
    corpus_entry: str
    start_s: float
    seconds: float


def _require():
    """Import the optional dependencies, or say how to install them."""
    try:
        import midirenderer
        import mido
        import music21
    except ImportError as err:
        raise AudiodiffError(f"render-music needs {err.name or 'music21, mido and midirenderer'}: "
                             f"{INSTALL_HINT}") from None
    return music21, mido, midirenderer


def default_soundfont() -> Path:
    """The TimGM6mb General MIDI soundfont inside the ``pretty_midi`` package (5.7 MB)."""
    try:
        import pretty_midi
    except ImportError:
        raise AudiodiffError(f"render-music needs pretty_midi for its bundled soundfont: {INSTALL_HINT} "
                             f"(or pass --soundfont FILE.sf2)") from None
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise AudiodiffError(f"{path} is missing from the pretty_midi install; reinstall it with {INSTALL_HINT} "
                             f"or pass --soundfont FILE.sf2")
    return path


def corpus_entries(collections=COLLECTIONS) -> dict[str, list[Path]]:
    """Score files per corpus folder, sorted, so that a seed picks the same pieces everywhere."""
    music21, _, _ = _require()
    root = Path(music21.__file__).parent / "corpus"
    found = {}
    for name in collections:
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in SCORE_SUFFIXES)
        if not files:
            raise AudiodiffError(f"no scores under music21 corpus folder {name!r}; "
                                 f"choose from the folders in {root}")
        found[name] = files
    return found


def pick_pieces(entries: dict[str, list[Path]], rng: random.Random) -> list[Path]:
    """All entries in a seeded order that alternates between collections (Palestrina alone has 1300 files)."""
    shuffled = [rng.sample(files, len(files)) for files in entries.values()]
    order = []
    for i in range(max(len(f) for f in shuffled)):
        order += [files[i] for files in shuffled if i < len(files)]
    return order


def assign_programs(midi_bytes: bytes, programs: tuple[int, ...]) -> bytes:
    """Give every note-bearing track its own channel (music21 puts all parts on channel 0) and a GM program."""
    _, mido, _ = _require()
    mid = mido.MidiFile(file=io.BytesIO(midi_bytes))
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    part = 0
    for track in mid.tracks:
        if not any(msg.type == "note_on" for msg in track) or part >= len(channels):
            continue
        channel, program = channels[part], programs[min(part, len(programs) - 1)]
        kept = [msg for msg in track if msg.type != "program_change"]
        track[:] = [mido.Message("program_change", channel=channel, program=program, time=0)] + [
            msg.copy(channel=channel) if hasattr(msg, "channel") else msg for msg in kept]
        part += 1
    out = io.BytesIO()
    mid.save(file=out)
    return out.getvalue()


def render_midi(midi_bytes: bytes, soundfont: bytes, sample_rate: int) -> np.ndarray:
    """Render MIDI to mono float32 [T] at ``sample_rate`` (the synthesizer runs at its own rate, then soxr)."""
    import soundfile as sf
    import soxr  # the resampler audio/io.py uses through librosa; called directly to skip librosa's slow import

    _, _, midirenderer = _require()
    wav = midirenderer.render_wave_from(soundfont, midi_bytes)
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)  # [T, 2] -> [T]
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def cut_clips(audio: np.ndarray, length: int, silence_db: float = -40.0, target_db: float = -20.0,
              peak: float = 0.95) -> list[tuple[int, np.ndarray]]:
    """Non-overlapping clips of ``length`` samples as ``(k, clip)``, silent ones dropped, each levelled.

    A clip is silent when its RMS is ``silence_db`` below the piece's peak (rests, the release tail). Levelling
    brings every clip to ``target_db`` RMS, capped so no sample exceeds ``peak``: the synthesizer's organ is
    ~20 dB louder than its guitar, and a vocoder should see all families at a similar level.
    """
    top = float(np.abs(audio).max()) if audio.size else 0.0
    clips = []
    for k in range(len(audio) // length):
        clip = audio[k * length:(k + 1) * length]
        rms = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2)))
        if top == 0.0 or rms < top * 10 ** (silence_db / 20):
            continue
        gain = min(10 ** (target_db / 20) / rms, peak / float(np.abs(clip).max()))
        clips.append((k, (clip * gain).astype(np.float32)))
    return clips


def _slug(entry: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", entry).strip("-")


def render_corpus(out_dir: str | os.PathLike, n_pieces: int = 200, seconds: float = 4.0, sample_rate: int = 22050,
                  seed: int = 0, programs: dict[str, tuple[int, ...]] | None = None,
                  clips_per_piece: int = 30, collections=COLLECTIONS, soundfont: str | os.PathLike | None = None,
                  progress: bool = True) -> list[Clip]:
    """Render ``n_pieces`` corpus scores into FLAC clips ``FAMILY_PIECE_k.flac`` plus manifest.csv and README.md.

    Pieces, their order and each piece's instrument family are fixed by ``seed``; families rotate so that they
    are about equally frequent. ``clips_per_piece`` > 0 keeps the first that many non-silent clips of a piece
    (a Mozart movement gives 150 clips of 4 s, a chorale 5).
    Pieces that music21 cannot parse or that render to silence are skipped. Returns the clips written.
    """
    from tqdm.auto import tqdm

    from audiodiff.audio.io import save_audio

    music21, _, _ = _require()
    if n_pieces < 1 or seconds <= 0 or sample_rate < 1000:
        raise AudiodiffError(f"need pieces >= 1, seconds > 0 and rate >= 1000 Hz "
                             f"(got {n_pieces}, {seconds}, {sample_rate})")
    programs = dict(programs or PROGRAMS)
    bad = [f"{name}={p}" for name, ps in programs.items() for p in ps if not 0 <= p < 128] + \
          [name for name in programs if not re.fullmatch(r"[a-z0-9]+", name)]
    if bad or not programs or any(not ps for ps in programs.values()):
        raise AudiodiffError(f"programs: family names must be [a-z0-9]+ with GM programs 0-127; bad: {bad}")
    sf_path = Path(soundfont) if soundfont else default_soundfont()
    if not sf_path.is_file():
        raise AudiodiffError(f"soundfont {sf_path}: no such file; give a General MIDI .sf2")
    sf_bytes = sf_path.read_bytes()
    if sf_bytes[:4] != b"RIFF" or sf_bytes[8:12] != b"sfbk":
        raise AudiodiffError(f"soundfont {sf_path}: not a SoundFont 2 (.sf2) file; give a General MIDI .sf2")

    rng = random.Random(seed)
    corpus_root = Path(music21.__file__).parent / "corpus"
    pieces = pick_pieces(corpus_entries(collections), rng)
    families = rng.sample(sorted(programs), len(programs))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    length = int(round(seconds * sample_rate))
    written: list[Clip] = []
    done = 0
    bar = tqdm(total=n_pieces, desc="render-music", unit="piece", disable=not progress)
    for path in pieces:
        if done == n_pieces:
            break
        entry = path.relative_to(corpus_root).as_posix()
        try:
            score = music21.converter.parse(path)
            midi = music21.midi.translate.music21ObjectToMidiFile(score).writestr()
        except Exception as err:  # malformed corpus files exist; one bad score should not stop a long render
            bar.write(f"skipped {entry}: {type(err).__name__}: {str(err)[:80]}")
            continue
        family = families[done % len(families)]
        audio = render_midi(assign_programs(midi, programs[family]), sf_bytes, sample_rate)
        clips = cut_clips(audio, length)
        if clips_per_piece > 0:
            clips = clips[:clips_per_piece]
        if not clips:
            continue
        piece = _slug(path.relative_to(corpus_root).with_suffix("").as_posix())
        for k, clip in clips:
            name = f"{family}_{piece}_{k}.flac"
            save_audio(out_dir / name, clip, sample_rate)
            written.append(Clip(name, family, " ".join(map(str, programs[family])), entry,
                                round(k * seconds, 3), seconds))
        done += 1
        bar.update(1)
    bar.close()
    if done < n_pieces:
        raise AudiodiffError(f"only {done} of {n_pieces} pieces rendered: the corpus folders {list(collections)} "
                             f"have no more usable scores; ask for fewer pieces")
    _write_manifest(out_dir, written)
    _write_readme(out_dir, written, n_pieces=n_pieces, seconds=seconds, sample_rate=sample_rate, seed=seed,
                  soundfont=sf_path, programs=programs, music21_version=music21.__version__)
    return written


def _write_manifest(out_dir: Path, clips: list[Clip]) -> None:
    with open(out_dir / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "family", "programs", "corpus_entry", "start_s", "seconds"])
        for c in clips:
            writer.writerow([c.file, c.family, c.programs, c.corpus_entry, c.start_s, c.seconds])


def _write_readme(out_dir: Path, clips: list[Clip], *, n_pieces, seconds, sample_rate, seed, soundfont: Path,
                  programs, music21_version) -> None:
    bundled = soundfont.name == "TimGM6mb.sf2" and soundfont.parent.name == "pretty_midi"
    sf_line = f"{DEFAULT_SOUNDFONT}; licence {TIMGM_LICENCE}" if bundled else \
        f"{soundfont} (user-supplied; check its licence)"
    families = "\n".join(f"- `{name}`: GM programs {' '.join(map(str, ps))} (0-based, top part first)"
                         for name, ps in programs.items())
    entries = sorted({c.corpus_entry for c in clips})
    (out_dir / "README.md").write_text(
        f"# Rendered music ({len(clips)} clips from {n_pieces} pieces)\n\n"
        f"Made by `audiodiff data render-music` (seed {seed}): scores from the music21 {music21_version} corpus, "
        f"converted to MIDI, one instrument family per piece, rendered with midirenderer, mixed to mono, "
        f"resampled to {sample_rate} Hz, cut into {seconds} s clips (silent ones dropped), each levelled to "
        f"-20 dBFS RMS (peak <= 0.95), 16-bit FLAC.\n\n"
        f"File names are `FAMILY_PIECE_k.flac` (clip k starts at k x {seconds} s); `data.labels: prefix` "
        f"conditions on the family. `manifest.csv` lists every clip with its corpus entry.\n\n"
        f"- Soundfont: {sf_line}\n"
        f"- Corpus licence: see music21/corpus/license.txt (encodings licensed for use; some restrict "
        f"commercial use)\n\n## Families\n\n{families}\n\n## Corpus entries\n\n"
        + "".join(f"- {e}\n" for e in entries))
