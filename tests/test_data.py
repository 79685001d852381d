"""Data: crops whose mel equals the matching frames of the whole-file mel, deterministic items, per-rank batch
slices, screening of unusable files, train/valid splits and file lists."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.io import load_audio
from audiodiff.audio.mel import MelSpectrogram, mel_config
from audiodiff.data import AudioCrops, StepBatchSampler, find_audio_files, split_files
from audiodiff.errors import AudiodiffError

from conftest import SR, assert_log_mel_close, harmonic, write_wav

N = 8  # crop frames


def _locate(crop: np.ndarray, files: list[np.ndarray], hop: int) -> tuple[int, int]:
    """``(file, frame)`` such that the crop starts at sample ``frame * hop`` of that file (only whole-frame
    offsets are searched; the part of a crop past the file's end, i.e. in the padding, is not compared)."""
    hits = []
    for f, x in enumerate(files):
        for k in range(len(x) // hop + 1):
            inside = min(len(crop), len(x) - k * hop)
            if inside >= hop and np.array_equal(x[k * hop: k * hop + inside], crop[:inside]):
                hits.append((f, k))
    assert len(hits) == 1, f"crop found at {hits}: expected exactly one whole-frame position"
    return hits[0]


@pytest.mark.numerics
@pytest.mark.parametrize("preset", ["hifigan", "diffwave"])
def test_crop_mel_equals_whole_file_mel_frames(demo_files, preset):
    cfg = mel_config(preset)
    files = demo_files[:3]
    ds = AudioCrops(files, cfg, N, seed=7)
    mel_fn = MelSpectrogram(cfg)
    audio = [load_audio(p, SR)[0] for p in files]
    whole = [mel_fn(torch.from_numpy(x)) for x in audio]  # [80, frames] each
    seen = set()
    for index in range(12):
        item = ds[index]
        assert item["audio"].shape == (N * cfg.hop_length,)
        assert item["segment"].shape == (cfg.segment_length(N),)
        f, k = _locate(item["audio"].numpy(), audio, cfg.hop_length)
        assert 0 <= k <= whole[f].shape[-1] - N
        crop_mel = mel_fn(item["segment"], pad=False)
        assert crop_mel.shape == (80, N)
        # The same frames through STFTs and GEMMs of 8 or all frames: float32 rounding (measured at most 9.5e-7, where
        # the old atol was 1e-5, which a quiet band of a noisier BLAS would exceed); one frame off is O(1).
        assert_log_mel_close(crop_mel, whole[f][:, k:k + N], cfg.log)
        seen.add((f, k))
    assert len({f for f, _ in seen}) >= 2 and len(seen) >= 10  # crops come from several files and offsets


def test_items_are_a_pure_function_of_seed_and_index(demo_files):
    cfg = mel_config("hifigan")
    a = AudioCrops(demo_files[:3], cfg, N, seed=3, labels=[0, 1, 2])
    b = AudioCrops(demo_files[:3], cfg, N, seed=3, labels=[0, 1, 2])
    c = AudioCrops(demo_files[:3], cfg, N, seed=4, labels=[0, 1, 2])
    for index in (0, 1, 17, 10**9):
        x, y = a[index], b[index]
        assert all(torch.equal(x[key], y[key]) for key in ("audio", "segment", "label"))
        assert all(torch.equal(x[key], a[index][key]) for key in ("audio", "segment", "label"))
    assert not all(torch.equal(a[i]["audio"], c[i]["audio"]) for i in range(4))
    assert {int(a[i]["label"]) for i in range(30)} <= {0, 1, 2}
    assert int(AudioCrops(demo_files[:1], cfg, N)[0]["label"]) == -1  # no labels: the null class


def test_speed_perturbation_moves_pitch_within_its_range_and_keeps_alignment(tmp_path):
    cfg = mel_config("hifigan")
    path = write_wav(tmp_path / "tone.wav", np.sin(2 * np.pi * 500.0 * np.arange(SR * 2) / SR).astype(np.float32) * 0.5)
    ds = AudioCrops([str(path)], cfg, N, seed=1, speed_perturb=0.2)  # str paths work too
    plain = AudioCrops([path], cfg, N, seed=1)
    left = cfg.pad[0]
    peaks = []
    for index in range(16):
        item = ds[index]
        segment = item["segment"].numpy()
        assert segment.shape == (cfg.segment_length(N),) and item["audio"].shape == (N * cfg.hop_length,)
        np.testing.assert_array_equal(item["audio"].numpy(), segment[left: left + N * cfg.hop_length])
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
        peaks.append(np.argmax(spectrum) * SR / len(segment))
        assert all(torch.equal(item[k], ds[index][k]) for k in ("audio", "segment"))  # still deterministic
    peaks = np.array(peaks)
    bin_hz = SR / cfg.segment_length(N)
    assert peaks.min() >= 500 * 0.8 - bin_hz and peaks.max() <= 500 * 1.2 + bin_hz  # the factor's range
    assert peaks.max() - peaks.min() > 80  # and the factors differ between crops
    assert abs(np.abs(ds[0]["audio"].numpy()).max() - 0.5) < 0.02  # resampled without edge transients or loss
    assert not torch.equal(ds[0]["audio"], plain[0]["audio"])
    with pytest.raises(AudiodiffError, match="speed_perturb"):
        AudioCrops([path], cfg, N, speed_perturb=0.7)


def test_file_choice_is_weighted_by_usable_length(tmp_path):
    write_wav(tmp_path / "short.wav", harmonic(0.2))  # 17 frames -> 10 start positions with N = 8
    write_wav(tmp_path / "long.wav", harmonic(0.8, seed=1))  # 68 frames -> 61 start positions
    ds = AudioCrops(sorted(tmp_path.glob("*.wav")), mel_config("hifigan"), N, seed=0)
    np.testing.assert_allclose(ds.weights, np.array([61, 10]) / 71)  # sorted: long.wav, short.wav; float64 ratios
    # Draws follow the weights: the long file is chosen with probability 61/71 = 0.86.
    audio = [load_audio(tmp_path / name)[0] for name in ("long.wav", "short.wav")]
    picks = [_locate(ds[i]["audio"].numpy(), audio, 256)[0] for i in range(300)]
    assert 0.78 < picks.count(0) / 300 < 0.94


def test_step_batch_sampler_slices_the_global_batch_by_rank():
    batch, steps = 6, 4
    whole = list(StepBatchSampler(batch, steps=steps))
    assert whole == [list(range(s * batch, (s + 1) * batch)) for s in range(steps)]
    for world in (2, 3):
        parts = [list(StepBatchSampler(batch, rank=r, world=world, steps=steps)) for r in range(world)]
        for s in range(steps):
            assert [i for r in range(world) for i in parts[r][s]] == whole[s]  # disjoint, ordered, complete
            assert all(len(parts[r][s]) == batch // world for r in range(world))
    # Resuming at step 2 gives exactly the batches an uninterrupted run would see from step 2 on.
    assert list(StepBatchSampler(batch, start_step=2, steps=2)) == whole[2:]
    assert list(StepBatchSampler(batch, start_step=2, rank=1, world=2, steps=1)) == [[15, 16, 17]]
    assert len(StepBatchSampler(batch, steps=5)) == 5
    with pytest.raises(AudiodiffError, match="divisible"):
        StepBatchSampler(5, world=2)


def test_unusable_files_are_skipped_with_reasons_and_counted(tmp_path):
    good = write_wav(tmp_path / "good.wav", harmonic(0.5))
    short = write_wav(tmp_path / "short.wav", harmonic(0.05))
    silent = write_wav(tmp_path / "silent.wav", np.zeros(SR // 2, dtype=np.float32))
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.full(SR // 2, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio at all\n" * 50)
    no_samples = tmp_path / "zero.wav"
    sf.write(str(no_samples), np.zeros(0, dtype=np.float32), SR)
    missing = tmp_path / "missing.wav"
    files = [good, short, silent, nan, empty, junk, no_samples, missing]
    ds = AudioCrops(files, mel_config("hifigan"), N)
    assert ds.files == [str(good)] and len(ds.audio) == 1
    reasons = dict(ds.skipped)
    assert len(ds.skipped) == len(files) - 1
    assert "shorter than a crop" in reasons[str(short)]
    assert reasons[str(silent)] == "silent"
    assert "non-finite" in reasons[str(nan)]
    assert reasons[str(empty)] == "empty file"
    assert "not readable audio" in reasons[str(junk)]
    assert reasons[str(no_samples)] == "no samples"
    assert reasons[str(missing)] == "missing"


def test_no_usable_file_is_an_error_naming_the_first_problem(tmp_path):
    short = write_wav(tmp_path / "short.wav", harmonic(0.05))
    with pytest.raises(AudiodiffError, match=r"none of the 1 audio files is usable.*short\.wav.*shorter"):
        AudioCrops([short], mel_config("hifigan"), N)


def _touch_audio(folder, names):
    for name in names:
        write_wav(folder / name, harmonic(0.05))


def test_split_uses_train_and_valid_subfolders(tmp_path):
    _touch_audio(tmp_path / "train", ["a.wav", "b.flac"])
    _touch_audio(tmp_path / "valid", ["c.wav"])
    _touch_audio(tmp_path / "test", ["d.wav"])  # never used for training
    train, valid = split_files(tmp_path, valid_files=1)
    assert [p.name for p in train] == ["a.wav", "b.flac"] and [p.name for p in valid] == ["c.wav"]


def test_split_holds_out_a_stable_hash_selection(tmp_path):
    names = [f"clip{i:02d}.wav" for i in range(12)]
    _touch_audio(tmp_path / "one", names)
    _touch_audio(tmp_path / "two" / "nested", list(reversed(names)))
    train1, valid1 = split_files(tmp_path / "one", valid_files=3)
    train2, valid2 = split_files(tmp_path / "two", valid_files=3)
    assert len(valid1) == 3 and len(train1) == 9
    assert set(train1).isdisjoint(valid1) and set(train1) | set(valid1) == set(find_audio_files(tmp_path / "one"))
    assert [p.name for p in valid1] == [p.name for p in valid2]  # chosen by name, not by position on disk
    assert split_files(tmp_path / "one", valid_files=3) == (train1, valid1)
    assert split_files(tmp_path / "one", valid_files=0) == (find_audio_files(tmp_path / "one"), [])
    assert split_files(tmp_path / "one", valid_files=12)[1] == []  # too few files to hold any out
    train, valid = split_files(tmp_path / "one", valid_path=tmp_path / "two")
    assert len(train) == 12 and len(valid) == 12


def test_file_list_input(tmp_path):
    _touch_audio(tmp_path / "wavs", ["a.wav", "b.wav"])
    absolute = write_wav(tmp_path / "elsewhere" / "c.wav", harmonic(0.05))
    listing = tmp_path / "files.txt"
    listing.write_text(f"wavs/a.wav\n\nwavs/b.wav|some transcript|more\n{absolute}\n")
    files = find_audio_files(listing)
    assert files == [tmp_path / "wavs" / "a.wav", tmp_path / "wavs" / "b.wav", absolute]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(AudiodiffError, match="empty"):
        find_audio_files(tmp_path / "empty.txt")


def test_find_audio_files_errors(tmp_path):
    (tmp_path / "notes.md").write_text("no audio here")
    with pytest.raises(AudiodiffError, match="no audio files"):
        find_audio_files(tmp_path)
    with pytest.raises(AudiodiffError, match="neither a folder nor a file list"):
        find_audio_files(tmp_path / "nowhere")
