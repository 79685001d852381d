"""The lazy data set (crops read from disk): the same items as the preloaded one, bit for bit, for files at the
training rate (wav, stereo flac, ogg, short padded files, speed perturbation, labels); crops of files at other rates
within the resampler's rounding of the whole-file resampling; the same batches from loader workers as without;
memory that does not hold the audio; header-only screening; and data.preload: auto."""

from __future__ import annotations

import logging
import pickle

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.mel import mel_config
from audiodiff.data import AudioCrops, Manifest, scan
from audiodiff.errors import AudiodiffError
from audiodiff.training.data import PRELOAD_LIMIT, make_loader, report_rates, should_preload
from audiodiff.training.distributed import Dist

from conftest import SR, harmonic, rel_l2, write_wav

N = 8  # crop frames: 2048 samples, so that crops often reach a file's reflect-padded edges


def _corpus(folder):
    """Files at the training rate in three formats, stereo, and two shorter than a crop."""
    files = [write_wav(folder / "a.wav", harmonic(0.3, 110.0, seed=1)),
             write_wav(folder / "b.wav", harmonic(0.13, 220.0, seed=2)),  # 2866 samples: crops touch both edges
             write_wav(folder / "short.wav", harmonic(0.05, 330.0, seed=3))]  # shorter than a crop
    stereo = np.stack([harmonic(0.4, 150.0, seed=4), 0.3 * harmonic(0.4, 450.0, seed=5)], axis=1)
    files.append(folder / "stereo.flac")
    sf.write(str(files[-1]), stereo, SR, subtype="PCM_24")
    files.append(folder / "c.ogg")
    sf.write(str(files[-1]), harmonic(0.5, 260.0, seed=6), SR, format="OGG", subtype="VORBIS")
    return files


def _assert_same_items(a: AudioCrops, b: AudioCrops, count: int = 200) -> None:
    for i in range(count):
        x, y = a[i], b[i]
        for key in ("audio", "segment", "label"):
            assert torch.equal(x[key], y[key]), f"item {i}: {key} differs"


@pytest.mark.parametrize("options", [{}, {"pad_short": True}, {"speed_perturb": 0.2}])
def test_lazy_items_equal_preloaded_items(tmp_path, options):
    files = _corpus(tmp_path)
    cfg = mel_config("hifigan")
    labels = [0, 1, 2, 3, 4]
    preloaded = AudioCrops(files, cfg, N, seed=5, labels=labels, **options)
    lazy = AudioCrops(files, cfg, N, seed=5, labels=labels, preload=False, **options)
    assert lazy.audio is None and lazy.files == preloaded.files
    np.testing.assert_array_equal(lazy.weights, preloaded.weights)
    _assert_same_items(preloaded, lazy)
    picked = {int(lazy[i]["label"]) for i in range(200)}
    assert picked == ({0, 1, 2, 3, 4} if options.get("pad_short") else {0, 1, 3, 4})  # every file, right label


def test_files_at_other_rates_are_resampled_per_crop_on_the_whole_file_grid(tmp_path):
    cfg = mel_config("hifigan")
    files = []
    for i, rate in enumerate((16000, 24000, 44100)):
        x = librosa.resample(harmonic(0.4, 180.0 + 60 * i, seed=i).astype(np.float64), orig_sr=SR, target_sr=rate)
        files.append(tmp_path / f"r{rate}.wav")
        sf.write(str(files[-1]), x, rate, subtype="FLOAT")
    preloaded = AudioCrops(files, cfg, N, seed=2)  # resampled whole (audio.io.load_audio)
    lazy = AudioCrops(files, cfg, N, seed=2, preload=False)
    np.testing.assert_array_equal(lazy.lengths, preloaded.lengths)  # the same lengths, so the same crop positions
    errors = [rel_l2(lazy[i]["segment"], preloaded[i]["segment"]) for i in range(120)]
    # soxr on a stretch starting on a sample both grids share equals soxr on the whole file up to its rounding and
    # the filter's tail at file edges (measured at most 1.1e-4); half a sample off would be ~0.2, a sample 0.3.
    assert max(errors) < 2e-3, max(errors)
    shifted = preloaded[0]["segment"].numpy()
    assert rel_l2(shifted[1:], shifted[:-1]) > 100 * max(errors)  # the bound tells a sample's shift apart


def test_loader_workers_give_the_batches_of_the_main_process(tmp_path):
    ds = AudioCrops(_corpus(tmp_path), mel_config("hifigan"), N, seed=1, preload=False, speed_perturb=0.1)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(ds, 4, start=3, dist=Dist(), workers=workers, steps=5)
        batches[workers] = [b["segment"] for b in loader]
    assert len(batches[0]) == 5
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))  # crops keyed on the item, not the worker
    resumed = [b["segment"] for b in make_loader(ds, 4, start=5, dist=Dist(), workers=0, steps=3)]
    assert all(torch.equal(a, b) for a, b in zip(resumed, batches[0][2:]))  # a resume at step 5 sees the same


def test_lazy_data_set_holds_no_audio_and_grows_with_files_not_hours(tmp_path):
    files = _corpus(tmp_path)[:2]
    cfg = mel_config("hifigan")
    once = scan(files)
    many = once.select(np.tile(np.arange(len(once)), 5000))  # the same files listed 5000 times
    small, big = (AudioCrops(m, cfg, N, preload=False) for m in (once, many))
    assert big.seconds == pytest.approx(5000 * small.seconds)
    grown = len(pickle.dumps(big)) - len(pickle.dumps(small))  # what each loader worker receives
    assert grown < 400 * (len(many) - len(once)), grown  # bytes a row: path, lengths, label; no samples
    audio_bytes = 4 * big.lengths.sum()
    assert grown < audio_bytes / 20


def test_lazy_screening_reads_headers_and_names_each_reason(tmp_path):
    good = write_wav(tmp_path / "good.wav", harmonic(0.5))
    short = write_wav(tmp_path / "short.wav", harmonic(0.05))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio at all\n" * 50)
    ds = AudioCrops([good, short, empty, junk, tmp_path / "missing.wav"], mel_config("hifigan"), N, preload=False)
    assert ds.files == [str(good)]
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in ds.skipped}
    assert reasons["empty.wav"] == "empty file" and reasons["missing.wav"] == "missing"
    assert "not readable audio" in reasons["junk.wav"] and "shorter than a crop" in reasons["short.wav"]


def test_preload_auto_preloads_small_corpora_only():
    def corpus(hours: float) -> Manifest:
        n = int(hours * 3600 / 10)
        return Manifest(np.array([b"x.wav"] * n), np.full(n, 10 * SR), np.full(n, SR), np.array([""] * n))

    small, large = corpus(1.0), corpus(50.0)
    assert should_preload("auto", small, SR) and not should_preload("auto", large, SR)
    assert 4 * large.samples_at(SR).sum() > PRELOAD_LIMIT  # 50 h is 15.9 GB of float32
    assert should_preload(True, large, SR) and not should_preload(False, small, SR)


@pytest.mark.parametrize("preload", [True, False])
def test_files_below_the_training_rate_are_reported_with_what_the_mel_shows(tmp_path, caplog, preload):
    write_wav(tmp_path / "full.wav", harmonic(0.5))
    write_wav(tmp_path / "narrow.wav", harmonic(0.5, sr=16000), sr=16000)
    files = sorted(tmp_path.glob("*.wav"))
    caplog.set_level(logging.INFO, logger="audiodiff")
    for preset, level, says in (("hifigan", logging.INFO, "the mel stops at 8 kHz, so it cannot show"),
                                ("diffwave", logging.INFO, "the mel (to 11.025 kHz) shows it")):
        caplog.clear()
        ds = AudioCrops(files, mel_config(preset), N, preload=preload)
        assert ds.rates.tolist() == [SR, 16000]
        report_rates(ds, mel_config(preset))
        (record,) = caplog.records
        assert record.levelno == level and says in record.getMessage()
        assert "1 of 2 files (0.0 h) are below 22050 Hz (the lowest 16000 Hz) and hold nothing above 8 kHz" \
            in record.getMessage()
    caplog.clear()
    report_rates(AudioCrops(files[:1], mel_config("hifigan"), N, preload=preload), mel_config("hifigan"))
    assert not caplog.records  # one rate: nothing to say


def test_a_file_gone_or_cut_after_listing_is_an_error_naming_it(tmp_path):
    files = [write_wav(tmp_path / f"t{i}.wav", harmonic(0.3, 110.0 * (i + 1), seed=i)) for i in range(2)]
    ds = AudioCrops(files, mel_config("hifigan"), N, preload=False)
    write_wav(files[0], harmonic(0.1, 110.0))  # cut to a third after the headers were read
    files[1].unlink()
    errors = set()
    for i in range(40):
        with pytest.raises(AudiodiffError) as err:
            ds[i]
        errors.add(str(err.value).split(":")[0])
        assert "resume" in str(err.value)
    assert errors == {str(files[0]), str(files[1])}
