"""``SynthesisOptions``: one validated value per vocoder setting, which keys the fast path, and which
``save_pretrained`` keeps. The key tests are derived from the dataclass's fields, so a field added later is covered
(or, without an alternative value here, fails until one is given)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from audiodiff.audio import refine
from audiodiff.diffusion import SAMPLERS
from audiodiff.errors import AudiodiffError
from audiodiff.fastpath import Runtime
from audiodiff.inference.options import NAMES, PRECISIONS, REFINE_ITERATIONS, REFINE_MOMENTUM, SynthesisOptions
from audiodiff.vocoder import Vocoder

from conftest import REPO, tiny_vocoder

CHOICES = {"sampler": sorted(SAMPLERS), "precision": PRECISIONS}  # string fields: their valid values


def alternative(field: dataclasses.Field, value):
    """A valid value of ``field`` other than ``value``."""
    if field.name in CHOICES:
        return next(c for c in CHOICES[field.name] if c != value)
    if isinstance(value, bool):
        return not value
    if value is None:
        return 3
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2
    raise AssertionError(f"SynthesisOptions.{field.name}: give this test an alternative value for it")


BASE = SynthesisOptions(sampler="fast", steps=6, precision="bf16")
FIELDS = dataclasses.fields(SynthesisOptions)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_options_that_differ_in_any_field_give_different_keys(field):
    other = BASE.replace(**{field.name: alternative(field, getattr(BASE, field.name))})
    device = torch.device("cpu")
    assert other != BASE and Runtime.key(device, other) != Runtime.key(device, BASE)
    assert len({Runtime.key(device, other), Runtime.key(device, BASE)}) == 2  # hashable: usable as a dict key
    # Equal values, equal keys: a copy reuses what was built.
    assert Runtime.key(device, BASE.replace()) == Runtime.key(device, BASE)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_the_fast_path_is_rebuilt_when_any_option_changes(field):
    voc = tiny_vocoder(options=BASE)  # bf16: the CPU runs the fast path's copy of the weights
    first = voc.runtime.runner(voc.options)[0]
    assert voc.runtime.runner(voc.options)[0] is first  # kept while the options stay
    setattr(voc, field.name, alternative(field, getattr(voc.options, field.name)))
    assert voc.runtime.runner(voc.options)[0] is not first


def test_every_option_is_a_vocoder_setting_and_attribute():
    assert NAMES == tuple(f.name for f in FIELDS) and NAMES[:2] == ("sampler", "steps")
    voc = tiny_vocoder(max_batch=4)
    for name in NAMES:
        assert getattr(voc, name) == getattr(voc.options, name), name
    voc.refine = 3
    assert voc.options.refine == 3
    with pytest.raises(AudiodiffError, match="refine must be a whole number of iterations >= 0"):
        voc.refine = -1
    with pytest.raises(AudiodiffError, match="Vocoder: unknown option 'stepz'"):
        tiny_vocoder(stepz=3)


@pytest.mark.parametrize("bad,match", [
    ({"sampler": "euler"}, r"unknown sampler 'euler'; expected one of ddim, ddpm, dpmpp, fast, heun, pc"),
    ({"steps": 0}, r"steps must be a whole number >= 1, got 0"),
    ({"refine": True}, r"refine must be a whole number of iterations"),
    ({"refine_momentum": 1.0}, r"refine_momentum must lie in \[0, 1\)"),
    ({"precision": "fp16"}, r"precision must be one of \('auto', 'fp32', 'bf16'\), got 'fp16'"),
    ({"graphs": 1}, r"graphs must be True or False, got 1"),
    ({"chunk_frames": 16, "overlap_frames": 8}, r"need 0 <= 2 \* overlap_frames < chunk_frames"),
    ({"max_batch": 0}, r"max_batch must be a whole number >= 1, got 0"),
])
def test_bad_options_get_one_line_each(bad, match):
    with pytest.raises(AudiodiffError, match=match):
        BASE.replace(**bad)


def test_numpy_numbers_become_plain_ones():
    opts = BASE.replace(steps=np.int64(4), refine_momentum=np.float32(0.5))
    assert type(opts.steps) is int and type(opts.refine_momentum) is float
    json.dumps(dataclasses.asdict(opts))


def test_the_refinement_defaults_are_the_refinements_own():
    assert (REFINE_ITERATIONS, REFINE_MOMENTUM) == (refine.ITERATIONS, refine.MOMENTUM)


def test_save_pretrained_keeps_the_settings_it_was_built_with(tmp_path, demo_mel):
    voc = tiny_vocoder(sampler="ddim", steps=3, refine=2, refine_momentum=0.5)
    path = voc.save_pretrained(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    assert (cfg["diffusion"]["sampler"], cfg["diffusion"]["sample_steps"]) == ("ddim", 3)
    loaded = Vocoder.from_pretrained(path, device="cpu")
    assert (loaded.sampler, loaded.steps, loaded.refine, loaded.refine_momentum) == ("ddim", 3, 2, 0.5)
    mel = demo_mel[:, :12]
    np.testing.assert_array_equal(loaded(mel, seed=1), voc(mel, seed=1))
    assert not np.array_equal(loaded(mel, seed=1), tiny_vocoder()(mel, seed=1))  # the settings matter
    # The caller's settings come over the saved ones; the runtime ones are not saved.
    over = Vocoder.from_pretrained(path, device="cpu", steps=5, refine=0, max_batch=1)
    assert (over.sampler, over.steps, over.refine, over.refine_momentum, over.max_batch) == ("ddim", 5, 0, 0.5, 1)
    assert Vocoder.from_pretrained(path, device="cpu").max_batch == 2


def test_a_bad_saved_synthesis_section_is_refused(tmp_path):
    path = tiny_vocoder().save_pretrained(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "synthesis": {"refine": -2}}))
    with pytest.raises(AudiodiffError, match="refine must be a whole number"):
        Vocoder.from_pretrained(path, device="cpu")
    (path / "config.json").write_text(json.dumps({**cfg, "synthesis": {"precision": "bf16"}}))
    with pytest.raises(AudiodiffError, match="synthesis holds .*re-export"):
        Vocoder.from_pretrained(path, device="cpu")


def test_the_cli_takes_its_choices_from_the_library_without_importing_torch(tmp_path):
    code = ("import sys, audiodiff.cli; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"
    from click.testing import CliRunner

    from audiodiff.cli import cli

    result = CliRunner().invoke(cli, ["synth", "mel.npy", "out.wav", "--sampler", "euler"])
    assert result.exit_code == 2 and "'euler' is not one of 'ddim', 'ddpm', 'dpmpp', 'fast', 'heun', 'pc'" \
        in result.output
    help_text = CliRunner().invoke(cli, ["synth", "--help"]).output
    assert f"else {REFINE_ITERATIONS}]" in help_text and "[ddim|ddpm|dpmpp|fast|heun|pc]" in help_text
