"""Training from pairs of (acoustic-model mel, audio): items carry the frames of the given mel that their audio spans,
a mel of the wrong length is one error line, mels in another convention are converted, the batch conditions the
model on the given mel while the auxiliary loss keeps the audio's, and a tiny fine-tune from pairs resumes bit for
bit. Also the fine-tuning recipe (kept equal to the bundled model) and the degradation tool of the bench."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from audiodiff.audio.convert import convert_mel
from audiodiff.audio.io import load_audio
from audiodiff.audio.mel import MelSpectrogram, decompress, mel_config
from audiodiff.config import load_recipe, pairs_mel, recipe_from_dict
from audiodiff.data import AudioCrops, find_audio_files
from audiodiff.data.degrade import degrade_mel, frame_variation
from audiodiff.data.manifest import read_manifest, scan, write_manifest
from audiodiff.data.pairs import fit, mel_paths
from audiodiff.errors import AudiodiffError

from conftest import REPO, SR
from test_training import TINY, run, states_equal

N = 8  # crop frames
HIFIGAN = mel_config("hifigan")


def _coded_mels(files, cfg=HIFIGAN, folder=None, transpose=False, extra=0) -> list[np.ndarray]:
    """Save beside each file (or in ``folder``) a mel whose value names its file, band and frame:
    ``f * 1000 + t + b / 100``, with ``extra`` frames more (or fewer) than the audio makes."""
    mels = []
    for f, path in enumerate(files):
        frames = cfg.num_frames(len(load_audio(path, SR)[0])) + extra
        mel = (f * 1000 + np.arange(frames)[None, :] + np.arange(cfg.n_mels)[:, None] / 100).astype(np.float32)
        target = Path(path).with_suffix(".npy") if folder is None else Path(folder) / (Path(path).stem + ".npy")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, mel.T if transpose else mel)
        mels.append(mel)
    return mels


def test_pair_items_are_crops_of_the_given_mel_aligned_with_the_audio(tone_dir):
    files = find_audio_files(tone_dir)
    mels = _coded_mels(files)
    audio = [load_audio(p, SR)[0] for p in files]
    plain = AudioCrops(files, HIFIGAN, N, seed=3)
    paired = AudioCrops(files, HIFIGAN, N, seed=3, mels=mel_paths(files))
    lazy = AudioCrops(files, HIFIGAN, N, seed=3, mels=mel_paths(files), preload=False)
    hop, seen = HIFIGAN.hop_length, set()
    for i in range(16):
        item = paired[i]
        f, k = int(item["mel"][0, 0]) // 1000, int(item["mel"][0, 0]) % 1000  # decoded from the mel's values
        assert torch.equal(item["mel"], torch.from_numpy(mels[f][:, k:k + N]))  # the hand-made crop
        assert np.array_equal(item["audio"].numpy(), audio[f][k * hop:(k + N) * hop])  # frame k ~ samples k hop ...
        for other in (plain[i], lazy[i]):  # the crops of audio-only training; read lazily, the same items
            assert torch.equal(other["audio"], item["audio"]) and torch.equal(other["segment"], item["segment"])
        assert torch.equal(lazy[i]["mel"], item["mel"])
        seen.add((f, k))
    assert len({f for f, _ in seen}) >= 2 and len(seen) >= 12


@pytest.mark.parametrize("extra", [-1, 2])
def test_a_mel_within_tolerance_is_cut_or_its_last_frame_repeated(tone_dir, tmp_path, extra):
    files = find_audio_files(tone_dir)
    mels = _coded_mels(files, folder=tmp_path / "mels", transpose=True, extra=extra)  # [frames, n_mels] on disk
    for preload in (True, False):
        ds = AudioCrops(files, HIFIGAN, N, seed=0, mels=mel_paths(files, tmp_path / "mels"), preload=preload)
        last = ds.frames[0] - N  # the last crop of file 0 reaches its last frame
        crop = ds.pairs.crop(0, last, N)
        assert np.array_equal(crop, fit(mels[0], ds.frames[0])[:, last:])
        if extra < 0:  # the missing last frame repeats the one before
            assert np.array_equal(crop[:, -1], crop[:, -2]) and np.array_equal(crop[:, -1], mels[0][:, -1])
        else:
            assert np.array_equal(crop, mels[0][:, last:last + N])


def test_a_mel_of_the_wrong_length_or_missing_is_one_error_line(tone_dir):
    files = find_audio_files(tone_dir)
    _coded_mels(files)
    wrong = files[1].with_suffix(".npy")
    np.save(wrong, np.zeros((80, 2 * 86), np.float32))  # as if made at hop 128: 172 frames for 86
    with pytest.raises(AudiodiffError) as err:
        AudioCrops(files, HIFIGAN, N, mels=mel_paths(files))
    msg = str(err.value)
    assert "\n" not in msg and str(wrong) in msg and "172 frames" in msg and "makes 86" in msg
    assert "hop or sample rate" in msg
    wrong.unlink()
    with pytest.raises(AudiodiffError, match=r"1 of 4 audio files have no mel file: .*tone1.wav \(expected .*"
                                             r"tone1.npy\)") as err:
        mel_paths(files)
    assert "\n" not in str(err.value)
    np.save(wrong, np.zeros((64, 86), np.float32))
    with pytest.raises(AudiodiffError, match=r"tone1.npy: mel of shape \(64, 86\); expected \[80, frames\]"):
        AudioCrops(files, HIFIGAN, N, mels=mel_paths(files))


def test_pairs_convert_a_mel_from_another_preset(tone_dir):
    files = find_audio_files(tone_dir)[:2]
    coqui = mel_config("coqui")
    own = [MelSpectrogram(HIFIGAN)(torch.from_numpy(load_audio(p, SR)[0])).numpy() for p in files]
    given = []
    for path in files:
        mel = MelSpectrogram(coqui)(torch.from_numpy(load_audio(path, SR)[0])).numpy()  # centred: 87 frames for 86
        np.save(path.with_suffix(".npy"), mel)
        given.append(mel)
    ds = AudioCrops(files, HIFIGAN, N, seed=0, mels=mel_paths(files), mel_source=coqui)
    for f in range(2):
        whole = fit(convert_mel(given[f], coqui, HIFIGAN), ds.frames[f])
        assert np.array_equal(ds.pairs.crop(f, 10, N), whole[:, 10:10 + N])  # the crop of the converted file
        # Converted, it describes the audio as the recipe's mel does, to the framing and band mapping's accuracy
        # (docs/interop.md: ~1-2 dB); unconverted, coqui's [-4, 4] values are nowhere near hifigan's log-mel.
        inner = slice(2, -2)
        converted = np.abs(whole[:, inner] - own[f][:, inner]).mean()
        unconverted = np.abs(fit(given[f], ds.frames[f])[:, inner] - own[f][:, inner]).mean()
        assert converted < 0.5 < 3 < unconverted


def test_the_batch_conditions_on_the_given_mel_and_the_mel_loss_keeps_the_audios(tone_dir):
    from audiodiff.audio.prior import MelPrior
    from audiodiff.factory import build_backbone, build_denoiser
    from audiodiff.training.targets import batch_inputs

    files = find_audio_files(tone_dir)
    for path in files:  # 20 dB quieter than the audio, which the energy prior's noise levels then follow
        mel = MelSpectrogram(HIFIGAN)(torch.from_numpy(load_audio(path, SR)[0])).numpy()
        np.save(path.with_suffix(".npy"), mel - np.log(10.0))
    recipe = recipe_from_dict({**TINY, "diffusion": {"prior": "energy"}})
    ds = AudioCrops(files, recipe.mel, N, mels=mel_paths(files))
    batch = default_collate([ds[i] for i in range(3)])
    mel_fn = MelSpectrogram(recipe.mel)
    denoiser = build_denoiser(build_backbone(recipe.model, recipe.mel), recipe.diffusion)
    x = batch_inputs(recipe, batch, mel_fn, denoiser, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(x.cond["mel"], batch["mel"])  # conditioning: the acoustic model's mel
    assert torch.equal(x.mel, mel_fn(batch["segment"], pad=False))  # the auxiliary loss's target: the audio's
    z = torch.randn(x.x0.shape, generator=torch.Generator().manual_seed(1))
    prior = MelPrior.from_config(recipe.diffusion, mel_fn)
    assert torch.equal(x.cond["prior"].apply(z), prior(batch["mel"]).apply(z))  # the prior follows the given mel
    assert not torch.equal(x.cond["prior"].apply(z), prior(x.mel).apply(z))


def _pair_recipe(data, pairs=True, **train):
    raw = {section: dict(values) for section, values in TINY.items()}
    raw["model"]["residual_channels"] = 8  # 4 channels can leave the skip path's ReLU dead, and the mel unread
    raw["data"].update(path=str(data), pairs=pairs, mel_path=str(data.parent / "mels") if pairs else None)
    raw["train"].update(mel_loss=1.0, **train)
    return recipe_from_dict(raw)


def test_a_tiny_fine_tune_from_pairs_resumes_bit_identically(tone_dir, tmp_path):
    cfg, fn = HIFIGAN, MelSpectrogram(HIFIGAN)
    for i, path in enumerate(find_audio_files(tone_dir)):  # what an acoustic model would give: degraded mels
        mel = fn(torch.from_numpy(load_audio(path, SR)[0])).numpy()
        (tone_dir.parent / "mels").mkdir(exist_ok=True)
        np.save(tone_dir.parent / "mels" / (path.stem + ".npy"), degrade_mel(mel, cfg, seed=i))
    full = load_checkpoint_of(run(_pair_recipe(tone_dir, max_steps=4), tmp_path / "full"))
    run(_pair_recipe(tone_dir, max_steps=2), tmp_path / "split")
    resumed = load_checkpoint_of(run(_pair_recipe(tone_dir, max_steps=4), tmp_path / "split", seed=5))
    assert resumed["step"] == 4 and states_equal(full["model"], resumed["model"])
    assert states_equal(full["ema"]["model"], resumed["ema"]["model"])
    audio_only = load_checkpoint_of(run(_pair_recipe(tone_dir, pairs=False, max_steps=4), tmp_path / "plain"))
    # Validation from pairs: the held-out file's crops with their mels, the sample vocoded from the given mel.
    valid = _pair_recipe(tone_dir, max_steps=2, valid_every=2)
    valid = recipe_from_dict({**valid.to_dict(), "data": {**valid.to_dict()["data"], "valid_files": 1}})
    assert run(valid, tmp_path / "valid").name == "ckpt-00000002.pt"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "valid" / "logs"), size_guidance={"audio": 0}).Reload()
    assert [e.step for e in events.Scalars("valid/loss")] == [2] and "valid/generated" in events.Tags()["audio"]
    # The output projection (zero at the start) learnt, and from the given mels: not what the audio's mels teach.
    assert full["model"]["output_proj.weight"].abs().sum() > 0
    assert not torch.equal(full["model"]["output_proj.weight"], audio_only["model"]["output_proj.weight"])


def load_checkpoint_of(path):
    from audiodiff.training.checkpoint import load_checkpoint

    return load_checkpoint(path)


def test_a_manifest_mel_column_round_trips_and_trains(tone_dir, tmp_path, capsys):
    from test_cli import invoke

    files = find_audio_files(tone_dir)
    _coded_mels(files, folder=tmp_path / "mels")
    code, out, err = invoke(capsys, "data", "manifest", tone_dir, "--mel-path", tmp_path / "mels", "--no-progress")
    assert code == 0, err
    text = (tone_dir / "manifest.tsv").read_text().splitlines()
    assert text[0].split("\t")[-1] == "mel" and text[1].split("\t")[-1].endswith("mels/tone0.npy")
    listed = read_manifest(tone_dir / "manifest.tsv")
    assert list(listed.mels) == [str(tmp_path / "mels" / (f.stem + ".npy")) for f in files]
    assert read_manifest(write_manifest(listed.select([2, 0]), tmp_path / "again.tsv")).mels.tolist() == \
        [listed.mels[2], listed.mels[0]]
    plain = scan(files)
    assert plain.mels is None and "mel" not in write_manifest(plain, tmp_path / "plain.tsv").read_text()
    raw = {section: dict(values) for section, values in TINY.items()}
    raw["data"].update(manifest=str(tone_dir / "manifest.tsv"), pairs=True, preload=False)
    assert run(recipe_from_dict(raw), tmp_path / "run").name == "ckpt-00000004.pt"


def test_pair_settings_are_checked_with_the_recipe():
    with pytest.raises(AudiodiffError, match="data.mel_path is set but data.pairs is false; set data.pairs: true"):
        recipe_from_dict({"data": {"mel_path": "mels"}})
    with pytest.raises(AudiodiffError, match="data.speed_perturb changes the audio"):
        recipe_from_dict({"data": {"pairs": True, "speed_perturb": 0.1}})
    with pytest.raises(AudiodiffError, match="data.mel_preset: 'cocqui' is not one of .*did you mean 'coqui'"):
        recipe_from_dict({"data": {"pairs": True, "mel_preset": "cocqui"}})
    # A Coqui model with mel_fmax 8000: the preset with a setting, as `audiodiff mel --set` takes it.
    recipe = recipe_from_dict({"data": {"pairs": True, "mel_preset": "coqui", "mel_set": ["fmax=8000"]}})
    assert pairs_mel(recipe.data) == mel_config("coqui", fmax=8000.0) != mel_config("coqui")
    assert pairs_mel(recipe_from_dict({"data": {"pairs": True}}).data) is None  # the recipe's own mel
    with pytest.raises(AudiodiffError, match=r"unknown recipe key data.mel_set.fmx; did you mean 'fmax'\?"):
        recipe_from_dict({"data": {"pairs": True, "mel_preset": "coqui", "mel_set": ["fmx=8000"]}})
    with pytest.raises(AudiodiffError, match="data.mel_set 'fmax': expected key=value"):
        recipe_from_dict({"data": {"pairs": True, "mel_preset": "coqui", "mel_set": ["fmax"]}})
    with pytest.raises(AudiodiffError, match="data.mel_set changes the settings of data.mel_preset, which is not set"):
        recipe_from_dict({"data": {"pairs": True, "mel_set": ["fmax=8000"]}})


def test_pairs_need_a_mel_conditioned_model(tone_dir, tmp_path):
    _coded_mels(find_audio_files(tone_dir))
    raw = {section: dict(values) for section, values in TINY.items()}
    raw["model"]["conditional"] = False
    raw["data"].update(path=str(tone_dir), pairs=True)
    with pytest.raises(AudiodiffError, match="data.pairs: true .* this diffwave model takes no mel"):
        run(recipe_from_dict(raw), tmp_path / "run")


def test_the_fine_tuning_recipe_is_the_bundled_models_and_ships_in_the_book():
    from audiodiff import artifacts, recipebook
    from audiodiff.vocoder import DEFAULT_MODEL

    path = recipebook.resolve("finetune-tts")
    assert path == REPO / "recipes" / "finetune-tts.yaml" and "finetune-tts" in recipebook.bundled()
    recipe = load_recipe(path)
    _, bundled = artifacts.read_recipe(DEFAULT_MODEL, weights=False)
    # train.init: pretrained loads the bundled weights only into these sections (training/loop.py)
    assert (recipe.mel, recipe.model, recipe.diffusion) == (bundled.mel, bundled.model, bundled.diffusion)
    assert recipe.train.init == "pretrained" and recipe.data.pairs
    assert recipe.train.lr < load_recipe(REPO / "recipes" / "speech.yaml").train.lr


def test_degradation_is_seeded_blurs_and_scales_as_asked(demo_mel, demo_files):
    mel = demo_mel
    a, b = degrade_mel(mel, HIFIGAN, seed=1), degrade_mel(mel, HIFIGAN, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, degrade_mel(mel, HIFIGAN, seed=2))
    assert a.shape == mel.shape and a.dtype == np.float32
    plain = dict(gain=1.0, offset=0.0, noise=0.0)
    narrow, wide = (degrade_mel(mel, HIFIGAN, time_sigma=s, freq_sigma=0, **plain) for s in (1.0, 2.0))
    # A blur over time: less change from frame to frame, the less the wider, each band's level kept.
    assert frame_variation(wide) < frame_variation(narrow) < 0.7 * frame_variation(mel)
    assert np.abs(narrow.mean(1) - mel.mean(1)).max() < 0.05
    across = degrade_mel(mel, HIFIGAN, time_sigma=0, freq_sigma=1.5, **plain)
    assert np.abs(np.diff(across, axis=0)).mean() < 0.7 * np.abs(np.diff(mel, axis=0)).mean()
    # No blur, no noise: the log of the linear mel scaled by gain and shifted by offset, floored as a mel is.
    scaled = degrade_mel(mel, HIFIGAN, time_sigma=0, freq_sigma=0, gain=0.9, offset=0.25, noise=0)
    log = np.log(decompress(torch.from_numpy(mel.astype(np.float64)), HIFIGAN).numpy())
    np.testing.assert_allclose(scaled, np.maximum(0.9 * log + 0.25, np.log(1e-5)), rtol=0, atol=1e-5)
    diffwave = mel_config("diffwave")  # the same arguments mean the same in another convention
    dw = MelSpectrogram(diffwave)(torch.from_numpy(load_audio(demo_files[0], SR)[0][:SR])).numpy()
    louder = degrade_mel(dw, diffwave, time_sigma=0, freq_sigma=0, gain=1.0, offset=np.log(10 ** 0.5), noise=0)
    inside = (dw > 0.05) & (dw < 0.85)  # away from the [0, 1] clip: +10 dB is +0.1 on that scale
    assert inside.mean() > 0.5
    np.testing.assert_allclose(louder[inside], dw[inside] + 0.1, rtol=0, atol=1e-5)


def test_the_bench_writes_degraded_mels_that_pairs_read_and_scores_a_model_on_them(tone_dir, tmp_path,
                                                                                    tiny_model_dir):
    import json
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    import degraded_mels as bench
    from audiodiff.vocoder import Vocoder

    bench.main(["write", "--data", str(tone_dir), "--out", str(tmp_path / "mels"), "--model", str(tiny_model_dir),
                "--seed", "3"])
    voc = Vocoder.from_pretrained(tiny_model_dir, device="cpu")
    files = find_audio_files(tone_dir)
    written = np.load(tmp_path / "mels" / "tone2.npy")
    expected = degrade_mel(voc.mel(load_audio(files[2], SR)[0]).numpy(), voc.mel_config,
                           seed=bench.file_seed(3, Path("tone2.wav")))
    assert np.array_equal(written, expected)
    assert json.loads((tmp_path / "mels" / "degradation.json").read_text())["time_sigma"] == 1.0
    assert AudioCrops(files, voc.mel_config, N, mels=mel_paths(files, tmp_path / "mels")).pairs is not None
    scores = {}
    for name, extra in (("degraded", ["--mels", str(tmp_path / "mels")]), ("clean", [])):
        out = tmp_path / f"{name}.json"
        bench.main(["score", "--data", str(tone_dir), "--model", str(tiny_model_dir), "--limit", "2", "--seconds",
                    "0.5", "--steps", "2", "--out", str(out), *extra])
        scores[name] = json.loads(out.read_text())
        assert [len(scores[name]["files"]), set(scores[name]["summary"])] == [2, set(bench.KEYS)]
    assert scores["degraded"]["files"][0]["log_mel_l1"] != scores["clean"]["files"][0]["log_mel_l1"]
