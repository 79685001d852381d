"""Manifests: written from headers (lengths, rates, speakers, reasons for unusable files), read back with paths
relative to the manifest, reused for unchanged files, refused with the line at fault; `audiodiff data manifest`;
training from a manifest, held-out validation rows included."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from audiodiff.cli import main
from audiodiff.config import recipe_from_dict
from audiodiff.data import manifest as mf
from audiodiff.data import read_manifest, scan, write_manifest
from audiodiff.errors import AudiodiffError
from audiodiff.training import train

from conftest import SR, harmonic, write_wav


def _files(folder):
    a = write_wav(folder / "spk1" / "alice_1.wav", harmonic(0.5, 110.0))
    b = write_wav(folder / "spk2" / "bob_1.flac", harmonic(0.25, 220.0, sr=16000), sr=16000)
    junk = folder / "junk.wav"
    junk.write_text("not audio\n" * 40)
    return a, b, junk


def test_scan_writes_lengths_rates_speakers_and_reads_back_relative_paths(tmp_path):
    a, b, junk = _files(tmp_path / "corpus")
    listed = scan([a, b, junk], speaker="parent")
    assert [listed.path(i) for i in range(len(listed))] == [str(a), str(b)]
    assert listed.frames.tolist() == [SR // 2, 4000] and listed.rates.tolist() == [SR, 16000]
    assert listed.speakers.tolist() == ["spk1", "spk2"] and listed.kept.tolist() == [0, 1]
    assert listed.skipped[0][0] == str(junk) and "not readable audio" in listed.skipped[0][1]
    assert listed.seconds == pytest.approx(0.75)
    path = write_manifest(listed, tmp_path / "corpus" / "manifest.tsv")
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(mf.COLUMNS)
    assert lines[1].startswith("spk1/alice_1.wav\t11025\t22050\tspk1\t")  # relative to the manifest's folder
    back = read_manifest(path)
    assert [back.path(i) for i in range(len(back))] == [str(a), str(b)]
    for name in ("frames", "rates", "speakers", "sizes", "mtimes"):
        np.testing.assert_array_equal(getattr(back, name), getattr(listed, name))
    assert scan([a], speaker="prefix").speakers.tolist() == ["alice"]


def test_unchanged_files_are_not_reopened_and_changed_ones_are(tmp_path, monkeypatch):
    a, b, _ = _files(tmp_path)
    known = read_manifest(write_manifest(scan([a, b]), tmp_path / "m.tsv"))
    opened = []
    real = mf._row
    monkeypatch.setattr(mf, "_row", lambda path, speaker: opened.append(path.name) or real(path, speaker))
    assert scan([a, b], known=known).frames.tolist() == [SR // 2, 4000] and opened == []
    write_wav(a, harmonic(0.75, 110.0))  # rewritten: another size
    again = scan([a, b], known=known)
    assert opened == ["alice_1.wav"] and again.frames.tolist() == [round(0.75 * SR), 4000]


@pytest.mark.parametrize("text, match", [
    ("path\tlength\n", "is not a manifest: its first line"),
    ("path\tframes\tsample_rate\na.wav\tten\t22050\n", "line 2: expected path, frames and sample_rate"),
    ("path\tframes\tsample_rate\na.wav\t0\t22050\n", "line 2: frames and sample_rate must be positive"),
    ("path\tframes\tsample_rate\n", "lists no files"),
])
def test_malformed_manifests_are_refused_naming_the_line(tmp_path, text, match):
    path = tmp_path / "m.tsv"
    path.write_text(text)
    with pytest.raises(AudiodiffError, match=match):
        read_manifest(path)


def test_cli_writes_a_manifest_of_a_folder(tmp_path, capsys):
    a, b, junk = _files(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["data", "manifest", str(tmp_path), "--speaker", "prefix", "--no-progress"])
    out, err = capsys.readouterr()
    assert done.value.code in (0, None), err
    assert f"skipped {junk}" in err and "2 files" in out
    back = read_manifest(tmp_path / "manifest.tsv")
    assert sorted(back.speakers.tolist()) == ["alice", "bob"]


def test_training_reads_its_files_from_a_manifest(tmp_path, caplog):
    files = [write_wav(tmp_path / "audio" / f"t{i}.wav", harmonic(0.4, 110.0 * (i + 1), seed=i)) for i in range(5)]
    manifest = write_manifest(scan(files), tmp_path / "lists" / "train.tsv")
    raw = {"model": {"residual_layers": 2, "residual_channels": 4, "embed_dim": 16},
           "data": {"manifest": str(manifest), "crop_frames": 8, "num_workers": 0, "valid_files": 1,
                    "preload": False},
           "train": {"batch_size": 2, "max_steps": 2, "valid_every": 2, "log_every": 1}}
    caplog.set_level("INFO", logger="audiodiff")
    last = train(recipe_from_dict(raw), tmp_path / "run", device="cpu", progress=False)  # no data.path
    assert last.name == "ckpt-00000002.pt"
    assert "training on 4 files" in caplog.text and "validating on 1" in caplog.text  # one row held out
    assert "read from disk" in caplog.text
    assert not (tmp_path / "run" / "manifest.tsv").exists()  # the given manifest is read, not copied
