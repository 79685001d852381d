"""The command line: help for every command, one-line ``error:`` messages with exit code 1 (tracebacks only with
``--debug``), and mel -> synth end to end with a tiny exported model."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiodiff.cli import cli, main

from conftest import REPO, SR, harmonic, write_wav


def invoke(capsys, *args) -> tuple[int, str, str]:
    """Run ``audiodiff ARGS`` in-process; returns ``(exit code, stdout, stderr)``."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out, err


def run_subprocess(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "audiodiff", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO, timeout=120)


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code == 1, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- help ---------------------------------------------------------------------------------------------------

def test_group_help_lists_every_command(capsys):
    code, out, _ = invoke(capsys, "--help")
    assert code == 0 and "Usage: audiodiff" in out and "Quick start" in out
    for name in cli.commands:
        assert name in out


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help(capsys, name):
    code, out, _ = invoke(capsys, name, "--help")
    assert code == 0 and f"Usage: audiodiff {name}" in out
    summary = (cli.commands[name].help or "").strip().splitlines()[0]
    assert len(summary) > 20 and summary.split(".")[0][:40] in " ".join(out.split())


def test_version(capsys):
    code, out, _ = invoke(capsys, "--version")
    assert code == 0 and "version" in out


# --- one-line errors ----------------------------------------------------------------------------------------

@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("mel,fragments", [
    (np.zeros((64, 20), np.float32), ["64 bands", "expects 80"]),
    (np.zeros((20, 80), np.float32), ["transposed", "mel.T"]),
    (np.zeros(80, np.float32), ["1 dimensions"]),
    (np.zeros((1, 1, 80, 20), np.float32), ["4 dimensions"]),
    (np.full((80, 20), np.nan, np.float32), ["NaN"]),
    (np.zeros((80, 20), np.int16), ["dtype int16", "float"]),
])
def test_synth_rejects_bad_mels_in_one_line(capsys, work, tiny_model_dir, mel, fragments):
    np.save(work / "m.npy", mel)
    code, _, err = invoke(capsys, "synth", work / "m.npy", work / "out.wav", "--model", tiny_model_dir)
    assert_one_line_error(code, err, *fragments)
    assert not (work / "out.wav").exists()


def test_synth_rejects_a_batch(capsys, work, tiny_model_dir):
    np.save(work / "m.npy", np.zeros((2, 80, 4), np.float32) - 5)
    code, _, err = invoke(capsys, "synth", work / "m.npy", work / "out.wav", "--model", tiny_model_dir)
    assert_one_line_error(code, err, "single mel")


def test_synth_missing_or_unreadable_mel_file(capsys, work, tiny_model_dir):
    code, _, err = invoke(capsys, "synth", work / "nope.npy", work / "out.wav", "--model", tiny_model_dir)
    assert_one_line_error(code, err, "nope.npy", "no such file")
    (work / "text.npy").write_text("not numpy")
    code, _, err = invoke(capsys, "synth", work / "text.npy", work / "out.wav", "--model", tiny_model_dir)
    assert_one_line_error(code, err, "text.npy", "is a text file, not a .npy mel")


def test_synth_with_a_directory_that_is_not_a_model(capsys, work):
    np.save(work / "m.npy", np.zeros((80, 4), np.float32) - 5)
    (work / "empty-model").mkdir()
    code, _, err = invoke(capsys, "synth", work / "m.npy", work / "out.wav", "--model", work / "empty-model")
    assert_one_line_error(code, err, "empty-model", "not an audiodiff model", "audiodiff export")


def test_output_equal_to_input_is_refused(capsys, work, tiny_model_dir):
    np.save(work / "m.npy", np.zeros((80, 4), np.float32) - 5)
    before = (work / "m.npy").read_bytes()
    code, _, err = invoke(capsys, "synth", work / "m.npy", work / "m.npy", "--model", tiny_model_dir)
    assert_one_line_error(code, err, "overwrite the input")
    audio = write_wav(work / "a.wav", harmonic(0.2))
    wav_before = audio.read_bytes()
    code, _, err = invoke(capsys, "mel", audio, audio)
    assert_one_line_error(code, err, "is the input file")
    assert (work / "m.npy").read_bytes() == before and audio.read_bytes() == wav_before


def test_mel_of_a_file_that_is_not_audio(capsys, work):
    (work / "notes.wav").write_text("definitely not audio\n" * 10)
    code, _, err = invoke(capsys, "mel", work / "notes.wav", work / "m.npy")
    assert_one_line_error(code, err, "notes.wav", "not a readable audio file")
    code, _, err = invoke(capsys, "mel", work / "missing.wav", work / "m.npy")
    assert_one_line_error(code, err, "missing.wav", "no such file")
    assert not (work / "m.npy").exists()


def test_train_with_an_unknown_recipe_key(capsys, work, tone_dir):
    (work / "r.yaml").write_text("train:\n  batchsize: 2\n")
    code, _, err = invoke(capsys, "train", work / "r.yaml", "--data", tone_dir)
    assert_one_line_error(code, err, "train.batchsize", "'batch_size'")
    (work / "ok.yaml").write_text("train:\n  batch_size: 2\n")
    code, _, err = invoke(capsys, "train", work / "ok.yaml", "--data", tone_dir, "--set", "model.layers=2")
    assert_one_line_error(code, err, "model.layers")
    assert not (work / "runs").exists()  # nothing started


def test_export_without_a_run(capsys, work):
    code, _, err = invoke(capsys, "export", work / "no-run", work / "out")
    assert_one_line_error(code, err, "no checkpoint")


def test_errors_from_a_real_process_are_one_line_and_debug_shows_the_traceback(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((20, 80), np.float32))
    (tmp_path / "empty-model").mkdir()
    args = ("synth", tmp_path / "m.npy", tmp_path / "out.wav", "--model", tmp_path / "empty-model")
    plain = run_subprocess(*args)
    lines = plain.stderr.strip().splitlines()
    assert plain.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), plain.stderr
    debug = run_subprocess("--debug", *args)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and "AudiodiffError" in debug.stderr


# --- end to end ---------------------------------------------------------------------------------------------

def test_mel_then_synth_end_to_end(capsys, work, tiny_model_dir, demo_files):
    clip = write_wav(work / "clip.wav", sf.read(str(demo_files[0]), dtype="float32")[0][: SR // 2])
    code, out, err = invoke(capsys, "mel", clip, work / "m.npy")
    assert code == 0 and "wrote" in out and err == ""
    mel = np.load(work / "m.npy")
    frames = (SR // 2) // 256
    assert mel.shape == (80, frames) and mel.dtype == np.float32
    code, out, err = invoke(capsys, "synth", work / "m.npy", work / "out.wav", "--model", tiny_model_dir,
                            "--seed", 3, "--device", "cpu")
    assert code == 0 and "wrote" in out and err == ""
    audio, rate = sf.read(str(work / "out.wav"))
    info = sf.info(str(work / "out.wav"))
    assert rate == SR and info.subtype == "PCM_16" and audio.shape == (frames * 256,)
    assert np.abs(audio).max() > 0
    # The same seed gives the same file.
    invoke(capsys, "synth", work / "m.npy", work / "again.wav", "--model", tiny_model_dir, "--seed", 3)
    assert (work / "again.wav").read_bytes() == (work / "out.wav").read_bytes()
    # The refinement's momentum reaches the vocoder, and a momentum of 1 is refused by the option parser.
    invoke(capsys, "synth", work / "m.npy", work / "plain.wav", "--model", tiny_model_dir, "--seed", 3,
           "--refine-momentum", 0)
    assert (work / "plain.wav").read_bytes() != (work / "out.wav").read_bytes()
    code, _, err = invoke(capsys, "synth", work / "m.npy", work / "x.wav", "--model", tiny_model_dir,
                          "--refine-momentum", 1)
    assert code == 2 and "--refine-momentum" in err and not (work / "x.wav").exists()
    # --model takes the mel settings from the model's config.json.
    code, _, _ = invoke(capsys, "mel", clip, work / "m2.npy", "--model", tiny_model_dir)
    assert code == 0 and np.array_equal(np.load(work / "m2.npy"), mel)
    code, _, _ = invoke(capsys, "mel", clip, work / "dw.npy", "--preset", "diffwave")
    dw = np.load(work / "dw.npy")
    assert code == 0 and dw.shape == (80, frames + 1) and 0 <= dw.min() and dw.max() <= 1


def test_mel_with_an_unknown_preset(capsys, work):
    clip = write_wav(work / "clip.wav", harmonic(0.2))
    code, _, err = invoke(capsys, "mel", clip, work / "m.npy", "--preset", "tacotron")
    assert_one_line_error(code, err, "unknown mel preset 'tacotron'", "hifigan")


def test_synth_refuses_a_non_audio_output_path(tmp_path, capsys):
    import numpy as np

    from audiodiff.cli import main

    np.save(tmp_path / "m.npy", np.zeros((80, 4), dtype=np.float32))
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(tmp_path / "m.npy"), str(tmp_path / "other.npy")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == f"error: output {tmp_path / 'other.npy'}: synth writes audio; give a path ending in .wav or .flac\n"
    assert not (tmp_path / "other.npy").exists()
