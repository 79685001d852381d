"""`audiodiff data render-music`: General MIDI renders of music21 corpus scores, through the CLI.

One Bach-chorale piece, two 2 s clips at 16 kHz (a rate the synthesizer does not run at, so resampling is
exercised): files named FAMILY_PIECE_k.flac, the rate asked for, levelled non-silent audio, the same samples
under the same seed, a manifest that names real corpus entries, and a one-line install hint when a
dependency is missing. Skipped when the `music` extra is not installed (it is part of `dev`).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("music21", reason="needs pip install 'audiodiff[music]'")
pytest.importorskip("midirenderer", reason="needs pip install 'audiodiff[music]'")
pytest.importorskip("pretty_midi", reason="needs pip install 'audiodiff[music]'")

from audiodiff.cli import main  # noqa: E402
from audiodiff.data.files import class_labels  # noqa: E402
from audiodiff.data.prepare import music  # noqa: E402

RATE = 16000
ARGS = ("--pieces", "1", "--clips", "2", "--seconds", "2", "--rate", str(RATE), "--no-progress")


def render(capsys, out_dir: Path, *extra: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "render-music", str(out_dir), *ARGS, *extra])
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("music")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "render-music", str(out_dir), *ARGS, "--seed", "3"])
    assert (exit_info.value.code or 0) == 0
    return out_dir


def test_clips_named_by_family_at_the_rate_asked(rendered):
    files = sorted(rendered.glob("*.flac"))
    assert len(files) == 2
    for f in files:
        assert re.fullmatch(r"[a-z0-9]+_bach-[A-Za-z0-9-]+_\d+\.flac", f.name), f.name
        assert f.name.split("_")[0] in music.PROGRAMS
        info = sf.info(str(f))
        assert info.samplerate == RATE and info.channels == 1 and info.frames == 2 * RATE
        audio, _ = sf.read(str(f), dtype="float32")
        rms = float(np.sqrt(np.mean(audio ** 2)))
        # Levelled to -20 dBFS RMS, peak <= 0.95; + 1e-3 for the file's 16-bit rounding (3e-5).
        assert 0.05 < rms < 0.2 and np.abs(audio).max() <= 0.951
    labels, classes = class_labels(files, "prefix", 1)  # one piece, one family: one class
    assert labels == [0, 0] and classes[0] in music.PROGRAMS


def test_manifest_and_readme_name_the_sources(rendered):
    rows = list(csv.DictReader(io.StringIO((rendered / "manifest.csv").read_text())))
    assert sorted(r["file"] for r in rows) == sorted(f.name for f in rendered.glob("*.flac"))
    import music21

    corpus = Path(music21.__file__).parent / "corpus"
    for r in rows:
        assert (corpus / r["corpus_entry"]).is_file()
        assert r["file"].startswith(r["family"] + "_") and float(r["seconds"]) == 2.0
        assert [int(p) for p in r["programs"].split()] == list(music.PROGRAMS[r["family"]])
    readme = (rendered / "README.md").read_text()
    assert "TimGM6mb" in readme and "GPL-2.0" in readme and rows[0]["corpus_entry"] in readme


def test_same_seed_same_samples_other_seed_other_piece(rendered, tmp_path, capsys):
    assert render(capsys, tmp_path / "again", "--seed", "3")[0] == 0
    for f in sorted(rendered.glob("*.flac")):
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes()
    assert render(capsys, tmp_path / "other", "--seed", "4")[0] == 0
    assert {f.name for f in (tmp_path / "other").glob("*.flac")} != {f.name for f in rendered.glob("*.flac")}


def test_every_part_gets_its_own_channel_and_the_family_programs():
    import mido
    from music21 import corpus, midi

    raw = midi.translate.music21ObjectToMidiFile(corpus.parse("bach/bwv66.6")).writestr()
    out = mido.MidiFile(file=io.BytesIO(music.assign_programs(raw, music.PROGRAMS["strings"])))
    parts = [t for t in out.tracks if any(m.type == "note_on" for m in t)]
    channels = [{m.channel for m in t if hasattr(m, "channel")} for t in parts]
    assert len(parts) == 4 and all(len(c) == 1 for c in channels)
    assert len(set.union(*channels)) == 4 and music.DRUM_CHANNEL not in set.union(*channels)
    programs = [[m.program for m in t if m.type == "program_change"] for t in parts]
    assert programs == [[40], [40], [41], [42]]  # violin, violin, viola, cello: top voice first


def test_missing_dependency_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "midirenderer", None)  # makes `import midirenderer` raise ImportError
    code, _, err = render(capsys, tmp_path / "none")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ")
    assert "midirenderer" in lines[0] and "pip install 'audiodiff[music]'" in lines[0]
    assert not (tmp_path / "none").exists()
