"""``Vocoder``: save/load round trips, chunked synthesis that agrees with whole synthesis, input validation with
one specific message per mistake, and numpy/torch/batched in and out. (Memory on a 10-minute mel:
tests/test_inference_input.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiodiff.audio.mel import MelConfig
from audiodiff.config import DiffusionConfig, ModelConfig
from audiodiff.errors import AudiodiffError
from audiodiff.fastpath import SamplingGraphs
from audiodiff.inference import chunks as chunking
from audiodiff.vocoder import Vocoder, check_mel

from conftest import rel_l2, tiny_vocoder

HOP = 256


@pytest.fixture(scope="module")
def voc() -> Vocoder:
    return tiny_vocoder()


@pytest.fixture(scope="module")
def mel(demo_mel) -> np.ndarray:
    return demo_mel[:, :40]  # [80, 40]


# --- persistence --------------------------------------------------------------------------------------------

def test_save_and_load_give_identical_outputs(voc, mel, tmp_path):
    path = voc.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["format"] == "audiodiff-vocoder" and cfg["model"]["residual_layers"] == 2
    loaded = Vocoder.from_pretrained(path, device="cpu")
    assert loaded.mel_config == voc.mel_config and loaded.model_config == voc.model_config
    assert loaded.diffusion_config == voc.diffusion_config
    for key, value in voc.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key
    a, b = voc(mel, seed=5), loaded(mel, seed=5)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() > 0.01  # the tiny model is random, not silent, so equality means something


def test_same_seed_same_output_other_seed_other_output(voc, mel):
    np.testing.assert_array_equal(voc(mel, seed=1), voc(mel, seed=1))
    assert not np.allclose(voc(mel, seed=1), voc(mel, seed=2))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    np.testing.assert_array_equal(voc(mel, generator=g1), voc(mel, generator=g2))


def test_fp16_export_loads_as_rounded_weights(voc, mel, tmp_path):
    path = voc.save_pretrained(tmp_path / "half", fp16=True)
    full = voc.save_pretrained(tmp_path / "full")
    assert (path / "model.safetensors").stat().st_size < 0.7 * (full / "model.safetensors").stat().st_size
    loaded = Vocoder.from_pretrained(path, device="cpu")
    for key, value in voc.net.state_dict().items():
        got = loaded.net.state_dict()[key]
        assert got.dtype == torch.float32 and torch.equal(got, value.half().float()), key
    a, b = voc(mel, seed=0), loaded(mel, seed=0)
    # fp16 weights: each moves by at most 2^-11 relative (4.9e-4); the output by 3.6e-5 (relative L2; the
    # refinement pulls both towards the same mel). 5e-3 is 10x the weights' rounding; a bad cast or layout is O(1).
    assert np.isfinite(b).all() and rel_l2(b, a) < 5e-3


def test_from_pretrained_errors_name_the_problem(voc, tmp_path):
    with pytest.raises(AudiodiffError, match="not an audiodiff model.*audiodiff export"):
        Vocoder.from_pretrained(tmp_path / "empty-dir")
    path = voc.save_pretrained(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "format": "something-else"}))
    with pytest.raises(AudiodiffError, match="not a valid audiodiff model config"):
        Vocoder.from_pretrained(path)
    cfg["model"]["residual_layers"] = 3  # weights hold 2 layers
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AudiodiffError, match="weights do not load.*re-export"):
        Vocoder.from_pretrained(path)


# --- chunked synthesis --------------------------------------------------------------------------------------

@pytest.mark.numerics
def test_chunked_synthesis_agrees_with_whole_synthesis(demo_mel):
    mel = torch.from_numpy(demo_mel[:, :150])
    frames = mel.shape[-1]
    # Raw output: the refinement runs on the joined signal after the chunks, and its momentum amplifies float32
    # rounding tens of times (test_refine.py checks its own blocks against the whole signal).
    whole = tiny_vocoder(chunk_frames=1024, overlap_frames=8, refine=0)
    chunked = tiny_vocoder(chunk_frames=40, overlap_frames=8, refine=0)
    chunks = chunking.plan(frames, chunked.chunk_frames, chunked.overlap_frames)
    assert len(chunks) == 5 and chunks[0][0] == 0 and chunks[-1][1] == frames
    a, b = whole(mel, seed=3), chunked(mel, seed=3)
    assert a.shape == b.shape == (frames * HOP,)
    diff = (a - b).abs().reshape(frames, HOP).amax(dim=1)  # worst difference per frame
    # The tiny model's output at a sample depends on its mel frame and the neighbouring ones (the upsampler's
    # kernels span about one frame each side) and a few samples of x; so a chunk's own edges differ from whole
    # synthesis within about one frame, where the linear cross-fade weights them down. The last chunk ends at F, as
    # whole synthesis does, so the final frames agree like interior ones.
    near = np.zeros(frames, dtype=bool)
    for a_, e_ in chunks:
        if a_ > 0:
            near[a_ - 1: a_ + 2] = True
        if e_ < frames:
            near[e_ - 2: e_ + 1] = True
    assert near.sum() < 30
    # Away from edges only float32 rounding differs: GEMMs over 40 or 150 frames reassociate sums of K = 3C + n_mels
    # = 92 terms (~sqrt(K) eps = 1e-6 relative per network call, 6 calls) on |x| <= 1; measured 2.4e-7 with 1 and
    # 2 threads. At chunk edges the model's context is cut: measured up to 1.5e-4; a misplaced chunk is O(1).
    assert diff[~near].max() < 1e-5
    assert diff[near].max() < 5e-3
    assert a.abs().max() > 0.1  # not vacuous


@pytest.mark.numerics
def test_chunked_synthesis_of_a_batch_matches_each_row(voc, demo_mel):
    mel = torch.from_numpy(demo_mel[:, :60])
    batch = torch.stack([mel, mel - 1.0])
    chunked = tiny_vocoder(chunk_frames=24, overlap_frames=4, max_batch=3)
    out = chunked(batch, seed=4)
    assert out.shape == (2, 60 * HOP)
    # Row b of a batch uses noise row b: row 0 of the batch equals the unbatched call with the same seed, up to
    # float32 rounding, as the BLAS picks kernels by batch shape. Raw rows agree to ~1e-8 (relative L2); the 32
    # refinement iterations with momentum 0.9 amplify that (the gains target / mel of quiet bands carry their
    # rounding) to 5e-6 to 7e-6 (1, 2 and 4 threads, other MKL and ATen code paths). 1e-4 is 14x that or more; wrong
    # noise rows or offsets give ~1.4.
    assert rel_l2(out[0], chunked(mel, seed=4)) < 1e-4
    assert not torch.allclose(out[0], out[1])


# --- input validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,match", [
    (np.zeros((64, 40), np.float32), r"mel has 64 bands; this model expects 80"),
    (np.zeros((40, 80), np.float32), r"mel looks transposed.*pass mel\.T"),
    (np.zeros(80, np.float32), r"mel has 1 dimensions.*expected \[80, frames\]"),
    (np.zeros((1, 1, 80, 40), np.float32), r"mel has 4 dimensions.*\[batch, 80, frames\]"),
    (np.full((80, 40), np.nan, np.float32), r"NaN or infinite"),
    (np.full((80, 40), np.inf, np.float32), r"NaN or infinite"),
    (np.zeros((80, 40), np.int64), r"dtype int64; expected float.*astype\(np\.float32\)"),
    (torch.zeros((80, 40), dtype=torch.int32), r"dtype torch\.int32; expected float.*\.float\(\)"),
    (np.zeros((80, 0), np.float32), r"mel has 0 frames"),
    ([[0.0] * 40] * 80, r"numpy array or torch tensor, got list"),
])
def test_bad_mels_get_specific_messages(voc, bad, match):
    with pytest.raises(AudiodiffError, match=match) as err:
        voc(bad)
    assert "\n" not in str(err.value)


def test_transposed_batch_gets_a_fix_that_works(voc):
    with pytest.raises(AudiodiffError, match="transposed") as err:
        voc(np.zeros((2, 40, 80), np.float32))
    assert "mel.T" not in str(err.value) and "[batch, 80, frames]" in str(err.value)


def test_check_mel_accepts_float_kinds():
    for mel in (np.zeros((80, 3), np.float64), np.zeros((80, 3), np.float16), torch.zeros(80, 3, dtype=torch.bfloat16)):
        out, batched = check_mel(mel, 80)
        assert out.dtype == torch.float32 and out.shape == (1, 80, 3) and not batched
    assert check_mel(torch.zeros(2, 80, 3), 80)[1] is True


# --- types and shapes in and out ----------------------------------------------------------------------------

def test_numpy_in_numpy_out_torch_in_torch_out(voc, mel):
    out = voc(mel, seed=0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (40 * HOP,)
    t = voc(torch.from_numpy(mel), seed=0)
    assert isinstance(t, torch.Tensor) and t.shape == (40 * HOP,)
    np.testing.assert_array_equal(out, t.numpy())
    assert np.abs(out).max() <= 1.0


@pytest.mark.numerics
def test_batched_mel_gives_batched_waveforms(voc, mel):
    batch = np.stack([mel, mel[::-1].copy(), mel * 0.5])
    out = voc(batch, seed=0)
    assert isinstance(out, np.ndarray) and out.shape == (3, 40 * HOP)
    # Same noise, same mel: equal up to float32 rounding of the other batch shape, grown by the refinement as in
    # test_chunked_synthesis_of_a_batch_matches_each_row: measured 5.3e-6 to 7e-6 (8e-7 without momentum; 5e-9 raw).
    assert rel_l2(out[0], voc(mel, seed=0)) < 1e-4
    assert not np.allclose(out[0], out[1])


def test_mel_of_audio_uses_the_models_front_end(voc, demo_files):
    from audiodiff.audio.io import load_audio

    audio, _ = load_audio(demo_files[0], voc.sample_rate)
    m = voc.mel(audio[:22050])
    assert m.shape == (80, 22050 // HOP)
    assert (voc.sample_rate, voc.hop_length, voc.n_mels) == (22050, 256, 80)


def test_constructor_rejects_bad_settings():
    with pytest.raises(AudiodiffError, match="overlap"):
        tiny_vocoder(chunk_frames=16, overlap_frames=8)
    with pytest.raises(AudiodiffError, match="unknown sampler 'nope'"):
        tiny_vocoder(sampler="nope")
    with pytest.raises(AudiodiffError, match="precision"):
        tiny_vocoder(precision="fp8")
    with pytest.raises(AudiodiffError, match=r"refine_momentum must lie in \[0, 1\)"):
        tiny_vocoder(refine_momentum=1.0)


def test_refinement_runs_with_the_vocoders_iterations_and_momentum(mel):
    from audiodiff.audio.refine import refine

    raw = tiny_vocoder(refine=0)(mel, seed=0)
    target = torch.from_numpy(mel)[None]
    for momentum in (0.0, 0.9):
        voc = tiny_vocoder(refine=5, refine_momentum=momentum)
        expected = refine(torch.from_numpy(raw)[None], target, voc._mel_fn, 5, momentum=momentum).clamp(-1, 1)[0]
        # The same float32 operations on the same input (the raw output): bitwise equal.
        np.testing.assert_array_equal(voc(mel, seed=0), expected.numpy())
    assert tiny_vocoder().refine_momentum == 0.9  # the default


def test_a_replayed_refinement_follows_changed_settings(mel, monkeypatch):
    # On a GPU each kind of call is replayed from a CUDA graph found by its key, with the settings of the call that
    # captured it baked in. A stand-in that replays by key alone (on the CPU) shows that a changed momentum or
    # iteration count gets its own graph instead of the old one.
    voc = tiny_vocoder(refine=5)
    captured = {}

    def replay(key, fn, *inputs):
        key = key + tuple(tuple(t.shape) for t in inputs)
        if key not in captured:
            captured[key] = fn(*inputs)
        return captured[key].clone()

    monkeypatch.setattr(voc.runtime, "runner", lambda options: (voc.denoiser, replay))
    first = voc(mel, seed=0)
    for refine, momentum in ((5, 0.0), (3, 0.0)):
        voc.refine, voc.refine_momentum = refine, momentum
        out = voc(mel, seed=0)
        expected = tiny_vocoder(refine=refine, refine_momentum=momentum)(mel, seed=0)
        np.testing.assert_array_equal(out, expected)  # same weights, noise and operations: bitwise equal
        assert not np.allclose(out, first)


def _random_vocoder(**kwargs):
    voc = tiny_vocoder(layers=6, channels=16, **kwargs)
    torch.manual_seed(1)
    with torch.no_grad():  # tiny_net's output layers start at zero; give the network a non-trivial output
        for p in (voc.net.output_proj.weight, voc.net.skip_proj.weight):
            p.normal_(std=0.3)
    return voc


@pytest.mark.numerics
def test_bf16_fast_path_matches_the_fp32_path_to_bf16_tolerance():
    # The fast path (a bf16 copy of the weights; CUDA graphs on a GPU) against the fp32 eager reference, same noise,
    # raw output: the refinement after sampling runs in fp32 on both paths but can amplify their difference (4x for
    # this input; ~2x on real speech, docs/performance.md). bf16 keeps 8 significant bits: a rounding moves a value by
    # at most 2^-8 = 0.4% (~0.15% rms); through 6 layers and 6 sampling steps the relative L2 error stays near that
    # (measured 0.18%): 1% is 5x, while a wrong weight copy or a skipped layer is O(1).
    ref = _random_vocoder(precision="fp32", refine=0)
    fast = _random_vocoder(precision="bf16", refine=0)
    mel = torch.randn(80, 24, generator=torch.Generator().manual_seed(0)) - 4
    a, b = ref(mel, seed=3), fast(mel, seed=3)
    rel = rel_l2(b, a)
    assert a.abs().mean() > 1e-3 and 0 < rel < 0.01, rel
    assert fast.net.layers[0].dilated_conv.weight.dtype == torch.float32  # the model itself stays fp32
    assert torch.equal(fast(mel, seed=3), b)  # and the fast path is deterministic


def test_auto_precision_is_fp32_on_the_cpu():
    voc = _random_vocoder()
    runner, graphs = voc.runtime.runner(voc.options)
    # fp32: the network's own weights (the CPU's time-tiled layers read them, inference/cpu_layers.py), no bf16 copy
    assert voc.precision == "auto" and runner.net.net is voc.net and graphs is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_sampling_graphs_replay_and_fall_back_per_kind_when_a_capture_fails(caplog):
    graphs = SamplingGraphs()
    x = torch.arange(4.0, device="cuda")
    y = x + 1
    assert torch.equal(graphs(("double",), lambda a: a * 2, x), x * 2)  # captured; the warm-up's answer
    assert torch.equal(graphs(("double",), lambda a: a * 2, y), y * 2)  # replayed on a new input

    def syncing(a):  # .item() waits for the host, which a capture forbids
        return a * float(a.sum().item())

    with caplog.at_level("WARNING"):
        assert torch.equal(graphs(("sync",), syncing, x), x * 6)  # the failed capture still answers
        assert torch.equal(graphs(("sync",), syncing, y), y * 10)  # and runs uncaptured from then on
    assert graphs.uncaptured == {"sync"}
    torch.randn(3, device="cuda")  # the failed capture did not leave the random generator unusable
    assert sum("capture" in r.getMessage() for r in caplog.records) == 1
    assert torch.equal(graphs(("double",), lambda a: a * 2, x), x * 2)  # the other kind still replays


def test_raw_output_refined_afterwards_is_the_plain_call(mel):
    # `audiodiff eval` scores the raw output and the refined one from one sampling pass: refining the raw output
    # must give exactly what a plain call gives (the same float32 operations on the same values).
    voc = tiny_vocoder(refine=4)
    raw = voc(mel, seed=3, refine=False)
    np.testing.assert_array_equal(voc.refine_waveform(raw, mel), voc(mel, seed=3))
    assert not np.array_equal(raw, voc(mel, seed=3))  # the refinement does change the output
    batch = np.stack([mel, mel[:, ::-1].copy()])
    np.testing.assert_array_equal(voc.refine_waveform(voc(batch, seed=3, refine=False), batch), voc(batch, seed=3))
    np.testing.assert_array_equal(tiny_vocoder(refine=0).refine_waveform(raw, mel), raw)  # nothing to do
    with pytest.raises(AudiodiffError, match="refine must be True or False in a call"):
        voc(mel, refine=8)
