"""The speech vocoder bundled with audiodiff: it loads with no argument, is small, documented, and vocodes a
real recording better than Griffin-Lim on the multi-resolution STFT distance."""

from __future__ import annotations

import json

import pytest
import torch

from audiodiff.audio.io import load_audio
from audiodiff.eval import metrics as M
from audiodiff.eval.copysynth import griffin_lim
from audiodiff.vocoder import DEFAULT_MODEL, Vocoder


@pytest.fixture(scope="module")
def bundled() -> Vocoder:
    return Vocoder.from_pretrained(device="cpu")


def test_bundled_model_is_small_fp16_and_has_a_card(bundled):
    weights = DEFAULT_MODEL / "model.safetensors"
    assert weights.stat().st_size < 12 * 2**20
    card = (DEFAULT_MODEL / "MODEL_CARD.md").read_text()
    for needed in ("speech-22k", "licen", "Griffin-Lim", "reference distance", "training"):
        assert needed in card, needed
    from safetensors import safe_open
    with safe_open(str(weights), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    cfg = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert cfg["mel"]["sample_rate"] == 22050 and cfg["mel"]["hop_length"] == 256 and cfg["mel"]["n_mels"] == 80
    assert (bundled.sample_rate, bundled.steps, bundled.sampler) == (22050, 6, "fast")


def test_bundled_model_beats_griffin_lim_on_real_speech(bundled, shared_data):
    clip = sorted((shared_data / "speech-22k" / "test").glob("*.flac"))[0]
    ref, sr = load_audio(clip, bundled.sample_rate)
    ref = ref[sr // 2: sr // 2 + sr]  # one second of speech
    mel = bundled.mel(ref)
    ours = bundled(mel.numpy(), seed=0)
    gl = griffin_lim(mel.numpy(), bundled.mel_config)
    ours_d, gl_d = M.mrstft_distance(ref, ours), M.mrstft_distance(ref, gl)
    assert ours_d < 0.9 * gl_d, (ours_d, gl_d)
    assert M.reference_distance(ref, ours) < 0.5 * M.reference_distance(ref, gl)
