"""The lean install: `audiodiff --help` imports no torch; vocoding needs neither TensorBoard nor matplotlib (the
``train`` and ``plots`` extras), and what does need them says which extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from types import SimpleNamespace

import numpy as np
import pytest

from audiodiff.errors import AudiodiffError

from conftest import REPO

# Stands in for an install without the extras: importing a blocked package raises ImportError, as when it is absent.
BLOCK = ("import sys\nfor name in ('tensorboard', 'matplotlib', 'torch.utils.tensorboard'):\n"
         "    sys.modules[name] = None\n")


def run_python(code: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_help_imports_no_torch():
    code = ("import sys\nfrom audiodiff.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib', 'tensorboard'))\n"
            "print('IMPORTED', heavy)\n")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "Commands:" in done.stdout and "synth" in done.stdout  # the help itself was printed
    assert "IMPORTED []" in done.stdout, done.stdout.splitlines()[-1]


def test_the_base_install_leaves_training_and_plotting_packages_to_extras():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    assert "tensorboard" not in base and "matplotlib" not in base
    assert any(d.startswith("tensorboard") for d in extras["train"])
    assert any(d.startswith("matplotlib") for d in extras["train"]) and extras["plots"]
    assert {"audiodiff[train]", "audiodiff[plots]"} <= set(extras["dev"])  # what `make test` installs


def test_synth_runs_without_tensorboard_and_matplotlib(tmp_path, tiny_model_dir, demo_mel):
    np.save(tmp_path / "m.npy", demo_mel[:, :20])
    code = BLOCK + "from audiodiff.cli import main\nmain(sys.argv[1:])\n"
    done = run_python(code, "synth", tmp_path / "m.npy", tmp_path / "out.wav", "--model", tiny_model_dir,
                      "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.wav").stat().st_size > 20 * 256 * 2


def test_what_needs_an_extra_names_it(monkeypatch, tmp_path):
    from audiodiff.audio.plot import mel_png
    from audiodiff.training.loop import Logger

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(AudiodiffError, match=r"pip install 'audiodiff\[plots\]'"):
        mel_png(np.zeros((4, 4), np.float32), "x")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(AudiodiffError, match=r"pip install 'audiodiff\[train\]'"):
        Logger(tmp_path, SimpleNamespace(train=None), SimpleNamespace(main=True), progress=False, step=0)
