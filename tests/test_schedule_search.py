"""tune-schedule: the search never returns a worse schedule than it starts from, stores it in config.json, and
the vocoder then uses it for that step count."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff import artifacts
from audiodiff.audio.mel import MelConfig
from audiodiff.cli import main
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.diffusion import sigmas_for
from audiodiff.diffusion.plan import fast_betas
from audiodiff.eval import schedule_search as ss
from audiodiff.factory import build_backbone
from audiodiff.vocoder import Vocoder


@pytest.fixture()
def model_dir(tmp_path):
    torch.manual_seed(0)
    mel, model = MelConfig(), ModelConfig(residual_layers=2, residual_channels=4, dilation_cycle=2, embed_dim=16)
    net = build_backbone(model, mel)
    torch.nn.init.normal_(net.output_proj.weight, std=0.3)  # a zero-initialised net would ignore the schedule
    Vocoder(net, mel, model, DiffusionConfig()).save_pretrained(tmp_path / "model")
    t = np.arange(int(0.4 * 22050)) / 22050
    clip = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    (tmp_path / "valid").mkdir()
    sf.write(tmp_path / "valid" / "a.wav", clip.astype(np.float32), 22050)
    return tmp_path


def test_search_improves_or_keeps_and_is_stored(model_dir):
    voc = Vocoder.from_pretrained(model_dir / "model", device="cpu")
    clips = ss.load_clips(voc, model_dir / "valid", clips=1, seconds=0.3)
    betas, best, start = ss.search(voc, clips, steps=3, passes=1, log=lambda *_: None)
    assert len(betas) == 3 and best <= start
    assert all(b > a for a, b in zip(betas, betas[1:]))
    # The reported score is the schedule's score: the same call on the same vocoder, clips and seed, so bitwise.
    assert best == ss.score(voc, clips, betas)
    artifacts.store_tuned_schedule(model_dir / "model", 3, betas)
    stored = json.loads((model_dir / "model" / "config.json").read_text())["tuned_schedules"]["3"]
    assert stored == betas  # JSON writes a float's shortest repr, which reads back as the same float
    reloaded = Vocoder.from_pretrained(model_dir / "model", device="cpu")
    used = sigmas_for("fast", 3, reloaded.denoiser.schedule, tuned=reloaded.tuned_schedules)
    assert torch.equal(used, sigmas_for("fast", 3, reloaded.denoiser.schedule, betas=betas))  # the same betas


def test_cli_stores_schedule(model_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tune-schedule", str(model_dir / "model"), "--data", str(model_dir / "valid"), "--steps", "2",
              "--clips", "1", "--seconds", "0.3", "--passes", "1", "--device", "cpu"])
    assert exit_info.value.code == 0
    cfg = json.loads((model_dir / "model" / "config.json").read_text())
    assert len(cfg["tuned_schedules"]["2"]) == 2
    assert "stored 2-step schedule" in capsys.readouterr().out
    assert fast_betas(2, cfg["tuned_schedules"]) == cfg["tuned_schedules"]["2"]


def test_search_moves_towards_a_better_schedule(monkeypatch):
    # With a score that is a known function of the betas, the coordinate search must leave the default schedule
    # and strictly improve the score (a search that returned its start would fail here).
    target = [2e-4, 5e-3, 0.05, 0.3]
    monkeypatch.setattr(ss, "score", lambda voc, clips, betas, seed=0: float(
        sum(abs(np.log(b) - np.log(t)) for b, t in zip(betas, target))))
    start = fast_betas(4)
    betas, best, first = ss.search(None, [], steps=4, passes=3, log=lambda *_: None)
    assert first == ss.score(None, [], start)  # the same function of the same betas: the same float
    assert betas != start and best < first - 0.5
    assert best == ss.score(None, [], betas)
    assert all(b > a for a, b in zip(betas, betas[1:]))
