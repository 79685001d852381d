"""Batch vocoding: a list of mels of different lengths in one call, a ``[1, n_mels, F]`` batch of one, chunks of
one length grouped into batches, and ``audiodiff synth`` over a folder or a list of ``.npy`` files, each wav what
the one-file command writes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.mel import MelConfig
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.errors import AudiodiffError
from audiodiff.inference import chunks
from audiodiff.vocoder import Vocoder

from conftest import rel_l2, tiny_net, tiny_vocoder
from test_cli import assert_one_line_error, invoke

HOP = 256


@pytest.fixture(scope="module")
def voc() -> Vocoder:
    return tiny_vocoder(chunk_frames=24, overlap_frames=4, max_batch=3)


def test_length_groups_stack_equal_chunks_and_keep_every_job_once():
    plans = [chunks.plan(f, 16, 4) for f in (10, 40, 16, 10, 33)]
    groups = chunks.length_groups(plans, 3)
    jobs = [job for g in groups for job in g]
    assert sorted(jobs) == sorted((b, i) for b, p in enumerate(plans) for i in range(len(p)))
    for g in groups:
        assert 1 <= len(g) <= 3 and len({plans[b][i][1] - plans[b][i][0] for b, i in g}) == 1
    # Rows of one length: the same groups as the batch planner's.
    same = [chunks.plan(40, 16, 4)] * 2
    assert chunks.length_groups(same, 3) == chunks.groups(2, len(same[0]), 3)


def test_a_list_of_mels_of_different_lengths_gives_a_list_of_waveforms(demo_mel):
    voc = tiny_vocoder()  # no chunking at these lengths: a mel of a length of its own runs alone
    a, b, c = demo_mel[:, :30], demo_mel[:, 40:95], demo_mel[:, 100:141]  # 30, 55 and 41 frames
    out = voc([a, b, c], seed=5)
    assert isinstance(out, list) and [w.shape for w in out] == [(30 * HOP,), (55 * HOP,), (41 * HOP,)]
    assert all(isinstance(w, np.ndarray) for w in out)
    # Item i draws noise row i, as row i of a batch does; a mel of a length of its own runs in the shapes of a
    # call with it alone, so it gives the same floats.
    assert np.array_equal(out[0], voc(a, seed=5))
    twice = voc([a, a], seed=5)
    assert not np.allclose(twice[0], twice[1])  # rows 0 and 1: other noise
    torch_out = voc([torch.from_numpy(a), torch.from_numpy(b)], seed=5)
    assert isinstance(torch_out[0], torch.Tensor) and np.array_equal(torch_out[1].numpy(), out[1])


@pytest.mark.numerics
def test_list_items_equal_the_rows_of_a_batch(voc, demo_mel):
    a, b = demo_mel[:, :50], demo_mel[:, 60:110]
    out = voc([a, b[:, :41], b], seed=2)
    batch = voc(np.stack([a, a, b]), seed=2)  # row 2 of it: b with noise row 2
    # The list runs b (row 2) in another batch shape than the stacked call: float32 rounding of the GEMMs, grown by
    # the refinement (test_vocoder.py measures 5e-6 to 7e-6); other noise or offsets give ~1.4.
    assert rel_l2(out[2], batch[2]) < 1e-4
    assert rel_l2(out[0], batch[0]) < 1e-4


def test_a_batch_of_one_is_a_batch(demo_mel):
    voc = tiny_vocoder()
    mel = demo_mel[:, :30]
    out = voc(mel[None], seed=1)
    assert out.shape == (1, 30 * HOP) and np.array_equal(out[0], voc(mel, seed=1))
    listed = voc([mel[None]], seed=1)  # [1, n_mels, F] items of a list are single mels too
    assert len(listed) == 1 and np.array_equal(listed[0], out[0])


def test_the_energy_prior_works_on_lists(demo_mel):
    diffusion = DiffusionConfig(prior="energy")
    voc = Vocoder(tiny_net(), MelConfig(), ModelConfig(residual_layers=2, residual_channels=4, embed_dim=16),
                  diffusion, refine=0)
    plain = tiny_vocoder(refine=0)
    a, b = demo_mel[:, :30], demo_mel[:, 30:70]
    out = voc([a, b], seed=0)
    assert np.array_equal(out[0], voc(a, seed=0))
    assert not np.allclose(out[0], plain(a, seed=0))  # the prior shapes the noise


@pytest.mark.parametrize("mels,match", [
    ([], "list of mels is empty"),
    ([np.zeros((2, 80, 10), np.float32) - 5], r"a list of mels holds \[n_mels, frames\]"),
    ([np.zeros((80, 10), np.float32) - 5, np.zeros((64, 10), np.float32)], "64 bands"),
])
def test_bad_lists_are_refused(voc, mels, match):
    with pytest.raises(AudiodiffError, match=match):
        voc(mels, seed=0)


# --- the command line ---------------------------------------------------------------------------------------

@pytest.fixture
def mel_folder(tmp_path, demo_mel):
    folder = tmp_path / "mels"
    (folder / "sub").mkdir(parents=True)
    np.save(folder / "a.npy", demo_mel[:, :20])
    np.save(folder / "b.npy", demo_mel[:, 30:50])  # a and b: one length, one batch
    np.save(folder / "sub" / "c.npy", demo_mel[None, :, 60:93])  # [1, n_mels, F]
    return folder


@pytest.mark.numerics
def test_synth_of_a_folder_writes_what_synth_of_each_file_writes(capsys, tmp_path, tiny_model_dir, mel_folder):
    code, out, err = invoke(capsys, "synth", mel_folder, tmp_path / "wavs", "--model", tiny_model_dir,
                            "--batch", 2, "--seed", 7, "--no-progress")
    assert code == 0 and "wrote 3 wav files" in out, err
    for rel, frames in (("a", 20), ("b", 20), ("sub/c", 33)):
        code, _, err = invoke(capsys, "synth", mel_folder / f"{rel}.npy", tmp_path / "one.wav",
                              "--model", tiny_model_dir, "--seed", 7)
        assert code == 0, err
        many, rate = sf.read(str(tmp_path / "wavs" / f"{rel}.wav"))
        one, _ = sf.read(str(tmp_path / "one.wav"))
        assert rate == 22050 and many.shape == one.shape == (frames * HOP,)
        # a and b ran as one batch of two: float32 rounding (~1e-5 relative) may move a 16-bit sample by one step.
        assert np.abs(many - one).max() <= 1 / 32768 + 1e-9 and np.abs(one).max() > 0


def test_synth_of_a_list_names_wavs_after_their_mels(capsys, tmp_path, tiny_model_dir, mel_folder):
    listing = tmp_path / "list.txt"
    listing.write_text("# mels\nmels/a.npy\n\n" + str(mel_folder / "sub" / "c.npy") + "\n")
    code, out, err = invoke(capsys, "synth", listing, tmp_path / "out", "--model", tiny_model_dir, "--no-progress")
    assert code == 0 and "wrote 2 wav files" in out, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "c.wav"]
    listing.write_text("mels/a.npy\nmels/sub/../a.npy\n")
    code, _, err = invoke(capsys, "synth", listing, tmp_path / "out2", "--model", tiny_model_dir)
    assert_one_line_error(code, err, "both be written as a.wav")


def test_synth_of_a_folder_refuses_a_wav_output_and_names_a_bad_file(capsys, tmp_path, tiny_model_dir, mel_folder):
    code, _, err = invoke(capsys, "synth", mel_folder, tmp_path / "x.wav", "--model", tiny_model_dir)
    assert_one_line_error(code, err, "give a folder")
    np.save(mel_folder / "z.npy", np.zeros((64, 10), np.float32))
    code, _, err = invoke(capsys, "synth", mel_folder, tmp_path / "w", "--model", tiny_model_dir, "--no-progress")
    assert_one_line_error(code, err, "z.npy", "64 bands")
    (tmp_path / "empty").mkdir()
    code, _, err = invoke(capsys, "synth", tmp_path / "empty", tmp_path / "w2", "--model", tiny_model_dir)
    assert_one_line_error(code, err, "no .npy mels")
