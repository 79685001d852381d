"""ONNX export (``inference/onnx.py``, ``audiodiff export MODEL OUT.onnx``): the graph, run by onnxruntime on the
CPU at other lengths and batch sizes than it was traced at, gives what the torch vocoder gives from the same noise;
the energy prior is in the graph, the envelope prior is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiodiff.audio.mel import MelConfig
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.errors import AudiodiffError
from audiodiff.inference.onnx import SamplingGraph, export_onnx, vocoder_noise
from audiodiff.vocoder import Vocoder

from conftest import rel_l2, tiny_net, tiny_vocoder
from test_cli import assert_one_line_error, invoke

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

HOP = 256


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def prior_vocoder(prior: str) -> Vocoder:
    model = ModelConfig(residual_layers=2, residual_channels=4, embed_dim=16)
    return Vocoder(tiny_net(), MelConfig(), model, DiffusionConfig(prior=prior), refine=0)


def run_both(voc, path, demo_mel, frames, batch, seed=3):
    """(onnxruntime's, torch's) waveforms ``[batch, frames * hop]`` of demo mel crops, from the vocoder's noise."""
    mel = np.stack([demo_mel[:, 10 * b: 10 * b + frames] for b in range(batch)])
    sess = session(path)
    draws = int(sess.get_modelmeta().custom_metadata_map["noise_draws"])
    noise = vocoder_noise(draws, seed, frames, HOP, batch).numpy()
    got = sess.run(None, {"mel": mel, "noise": noise})[0]
    return got, voc(mel, seed=seed, refine=False)


@pytest.mark.numerics
@pytest.mark.parametrize("prior", ["none", "energy"])
def test_onnxruntime_gives_the_torch_waveform_at_any_length_and_batch(tmp_path, demo_mel, prior):
    voc = tiny_vocoder(refine=0) if prior == "none" else prior_vocoder(prior)
    path = export_onnx(voc, tmp_path / "voc.onnx")  # traced on 8 frames, batch 1
    for frames, batch in ((20, 1), (37, 2)):
        got, want = run_both(voc, path, demo_mel, frames, batch)
        assert got.shape == want.shape == (batch, frames * HOP)
        # The same float32 arithmetic in another engine: measured 1.9e-8 relative (its own GEMM and tanh kernels);
        # a wrong step index, noise draw or scaling moves it by 1e-2 or more.
        assert rel_l2(got, want) < 1e-5
        assert np.abs(want).max() > 0.1  # not vacuous


def test_the_energy_prior_is_in_the_graph(tmp_path, demo_mel):
    shaped, plain = prior_vocoder("energy"), tiny_vocoder(refine=0)
    a, _ = run_both(shaped, export_onnx(shaped, tmp_path / "a.onnx"), demo_mel, 20, 1)
    b, _ = run_both(plain, export_onnx(plain, tmp_path / "b.onnx"), demo_mel, 20, 1)
    assert rel_l2(a, b) > 0.05


def test_noise_draws_follow_the_sampler():
    voc = tiny_vocoder()
    assert SamplingGraph(voc, steps=6, sampler="fast").draws == 6  # the start and 5 ancestral draws (none at 0)
    assert SamplingGraph(voc, steps=6, sampler="ddim").draws == 1  # deterministic: the start only


def test_the_envelope_prior_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(AudiodiffError, match="envelope prior.*export a model with prior none or energy"):
        export_onnx(prior_vocoder("envelope"), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_export_command_writes_an_onnx_graph_of_a_model_directory(capsys, tmp_path, tiny_model_dir):
    code, out, err = invoke(capsys, "export", tiny_model_dir, tmp_path / "v.onnx", "--steps", 4, "--sampler", "ddpm")
    assert code == 0 and "exported" in out, err
    meta = session(tmp_path / "v.onnx").get_modelmeta().custom_metadata_map
    assert (meta["sampler"], meta["steps"], meta["noise_draws"], meta["sample_rate"]) == ("ddpm", "4", "4", "22050")
    code, _, err = invoke(capsys, "export", tiny_model_dir, tmp_path / "w.onnx", "--fp16")
    assert_one_line_error(code, err, "--fp16")
    code, _, err = invoke(capsys, "export", tmp_path / "run", tmp_path / "out", "--steps", 4)
    assert_one_line_error(code, err, "apply to an ONNX export")
    assert torch.__version__  # torch stays importable after the export's warnings filter
