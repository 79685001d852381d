"""bench/digits.py: the Frechet distance against closed forms, and a classifier that learns a toy task."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiodiff.audio.io import save_audio
from audiodiff.config import load_recipe
from audiodiff.errors import AudiodiffError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import digits as D  # noqa: E402
TONES = (300.0, 700.0, 1400.0, 2600.0)  # class k: a tone at TONES[k] Hz


def test_mel_matches_the_recipe():
    assert D.DIGITS_MEL == load_recipe(REPO / "recipes" / "digits.yaml").mel


def test_frechet_identical_sets_is_zero():
    x = np.random.default_rng(0).standard_normal((500, 16)) @ np.random.default_rng(1).standard_normal((16, 16))
    # float64: the smallest covariance eigenvalue (1.4e-3) is squared inside A S A, whose eigenvalues are off by
    # ~eps64 * 54^2 = 6e-13, and the square root makes that ~2e-10 each (measured total 2.8e-11); tr S is 217.
    assert D.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_closed_form_isotropic():
    # Exact sample moments: a set whose sample mean is mu and sample covariance is s^2 I.
    rng = np.random.default_rng(0)
    n, dim = 200, 8
    z = rng.standard_normal((n, dim))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance exactly I
    mu = np.arange(dim, dtype=float) / 4
    s1, s2 = 0.5, 2.0
    expected = np.sum(mu**2) + dim * (s1 - s2) ** 2
    # float64 eigensolvers on well-conditioned 6-8 dimensional covariances: ~1e-15 relative (measured <= 1.1e-15).
    assert D.frechet_distance(s1 * z, mu + s2 * z[::-1]) == pytest.approx(expected, rel=1e-9)


def test_frechet_closed_form_commuting_covariances_and_symmetry():
    # Diagonal covariances: Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) = sum (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(1)
    n, dim = 300, 6
    z = rng.standard_normal((n, dim))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    var_a, var_b = rng.uniform(0.1, 3, dim), rng.uniform(0.1, 3, dim)
    a, b = z * np.sqrt(var_a), 1.0 + z * np.sqrt(var_b)
    expected = dim * 1.0 + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert D.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)  # float64, as above
    # A general (non-commuting) pair: symmetric in its arguments.
    c = rng.standard_normal((400, dim)) @ rng.standard_normal((dim, dim))
    assert D.frechet_distance(a, c) == pytest.approx(D.frechet_distance(c, a), rel=1e-9)  # float64, as above


def test_frechet_sampled_gaussians_near_closed_form():
    rng = np.random.default_rng(2)
    dim, s1, s2 = 4, 1.0, 1.5
    a = s1 * rng.standard_normal((20000, dim))
    b = 0.5 + s2 * rng.standard_normal((20000, dim))
    # Sampling error: the n = 20000 estimate has a standard deviation of ~0.03 (the means' term 0.025, the
    # variances' 0.018); the seed fixes it (measured 0.0097).
    assert D.frechet_distance(a, b) == pytest.approx(dim * 0.25 + dim * (s1 - s2) ** 2, abs=0.05)


def test_frechet_rejects_bad_shapes():
    with pytest.raises(AudiodiffError, match="at least 2 rows"):
        D.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(AudiodiffError, match=r"\[N, D\]"):
        D.frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))


@pytest.mark.parametrize("name", ["george_0_1.wav", "x.wav", "seven.flac"])
def test_label_from_name_errors_are_one_line(name):
    with pytest.raises(AudiodiffError) as err:
        D.label_from_name(name)
    assert "\n" not in str(err.value) and name in str(err.value) and "DIGIT_SPEAKER_TAKE" in str(err.value)


def test_label_from_name_reads_the_prefix():
    assert D.label_from_name("/x/7_george_12.flac") == 7
    assert D.label_from_name("3_w2.5_0001.wav") == 3


def test_holdout_split_by_speaker_and_take():
    files = [f"{d}_{s}_{t}.wav" for d in range(2) for s in ("ann", "bob", "cy") for t in range(10)]
    train, held = D.holdout_split(files, by="speaker", every=3)
    assert {p.stem.split("_")[1] for p in held} == {"ann"} and len(train) + len(held) == len(files)
    train, held = D.holdout_split(files, by="take", every=5)
    assert {p.stem.split("_")[2] for p in held} == {"0", "5"}
    assert not {p.stem.split("_")[2] for p in train} & {"0", "5"}


def test_fit_clip_pads_and_crops_centred():
    assert torch.equal(D.fit_clip(torch.ones(4), 8), torch.tensor([0, 0, 1, 1, 1, 1, 0, 0.0]))
    assert torch.equal(D.fit_clip(torch.arange(10.0), 4), torch.tensor([3, 4, 5, 6.0]))
    assert torch.equal(D.fit_clip(torch.ones(2), 4, offset=0), torch.tensor([1, 1, 0, 0.0]))


@pytest.fixture(scope="module")
def toy_tones(tmp_path_factory):
    """Tones of random length (0.2-0.6 s), level and phase, named ``K_spk_take.wav``, class k at TONES[k]."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    sr = D.DIGITS_MEL.sample_rate
    files = []
    for k, f0 in enumerate(TONES):
        for spk in ("a", "b"):
            for take in range(10):
                n = int(sr * rng.uniform(0.2, 0.6))
                t = np.arange(n) / sr
                x = rng.uniform(0.1, 0.8) * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.28)) * np.hanning(n)
                x += 0.003 * rng.standard_normal(n)
                files.append(save_audio(root / f"{k}_{spk}_{take}.wav", x, sr))
    return files


@pytest.fixture(scope="module")
def toy_model(toy_tones):
    train, held = D.holdout_split(toy_tones, by="take", every=5)
    model = D.train_classifier(train, epochs=12, seed=0, batch_size=16, num_classes=4, channels=(8, 16, 16, 32),
                               embed_dim=32)
    return model, held


def test_classifier_learns_toy_tones(toy_model):
    model, held = toy_model
    labels = [D.label_from_name(f) for f in held]
    assert len(set(labels)) == len(TONES)
    assert D.accuracy(model, D.load_clips(held), labels) > 0.9


def test_embed_and_logit_shapes(toy_model):
    model, held = toy_model
    mels = model.mels(torch.stack([D.fit_clip(torch.as_tensor(c), model.clip_samples)
                                   for c in D.load_clips(held[:3])]))
    assert mels.shape == (3, 64, 125)
    assert model.embed(mels).shape == (3, 32) and model(mels).shape == (3, 4)
    assert D.embed_clips(model, mels).shape == (3, 32)
    assert np.array_equal(D.classify(model, mels), D.classify(model, D.load_clips(held[:3])))


def test_training_is_deterministic_under_a_seed(toy_tones):
    train = toy_tones[::4]
    one = D.train_classifier(train, epochs=1, seed=3, num_classes=4, channels=(4, 8), embed_dim=8)
    two = D.train_classifier(train, epochs=1, seed=3, num_classes=4, channels=(4, 8), embed_dim=8)
    for (name, p), q in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.equal(p, q), name


def test_save_load_round_trip_exact_logits(toy_model, tmp_path):
    model, held = toy_model
    mels = model.mels(torch.stack([D.fit_clip(torch.as_tensor(c), model.clip_samples)
                                   for c in D.load_clips(held)]))
    path = model.save_pretrained(tmp_path / "clf")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = D.DigitClassifier.from_pretrained(path)
    with torch.no_grad():
        assert torch.equal(model.eval()(mels), loaded(mels))


def test_a_classifier_saved_before_the_format_tag_loads(toy_model, tmp_path):
    model, held = toy_model
    path = model.save_pretrained(tmp_path / "clf")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg == {"format": D.FORMAT, **model.config}
    cfg.pop("format")
    (path / "config.json").write_text(json.dumps(cfg))  # what save_pretrained wrote until the tag was added
    mels = D._batch(model, D.load_clips(held[:3]))
    with torch.no_grad():
        assert torch.equal(model.eval()(mels), D.DigitClassifier.from_pretrained(path)(mels))
    (path / "config.json").write_text(json.dumps({**cfg, "format": "audiodiff-vocoder"}))
    with pytest.raises(AudiodiffError, match="is not a digit classifier .*'audiodiff-vocoder'"):
        D.DigitClassifier.from_pretrained(path)


def test_from_pretrained_missing_dir_says_what_to_do(tmp_path):
    with pytest.raises(AudiodiffError, match="bench/digits_classifier.py"):
        D.DigitClassifier.from_pretrained(tmp_path)
