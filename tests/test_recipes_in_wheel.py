"""The recipes ship inside the wheel (as the package data audiodiff/recipes, from the top-level recipes/ folder),
``audiodiff train NAME`` finds a bundled recipe by name, ``audiodiff recipes`` lists them; the wheel carries the
LICENSE and lists every package."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from audiodiff import recipebook
from audiodiff.errors import AudiodiffError

from conftest import REPO
from test_cli import invoke

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
find_packages = pytest.importorskip("setuptools", minversion="77").find_packages  # the dev extra installs it
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the source tree (no build files left in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for name in ("audiodiff", "recipes"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("audiodiff-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_carries_the_recipes_byte_for_byte(wheel):
    assert RECIPES, "no recipes/*.yaml in the source tree"
    shipped = {n.rsplit("/", 1)[1]: wheel.read(n) for n in wheel.namelist() if n.startswith("audiodiff/recipes/")}
    assert shipped == {p.name: p.read_bytes() for p in RECIPES}


def test_the_wheel_has_every_package_and_the_license(wheel):
    names = wheel.namelist()
    found = find_packages(str(REPO), include=["audiodiff*"])
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert set(found) | {"audiodiff.recipes"} == set(listed), "pyproject.toml's packages list is out of date"
    for package in found:
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta
    assert "Classifier: Topic :: Multimedia :: Sound/Audio :: Speech" in meta
    assert any(n.startswith("audiodiff/pretrained/speech-22k/") for n in names)


def test_bundled_recipes_resolve_by_name(tmp_path, monkeypatch):
    assert list(recipebook.bundled()) == [p.stem for p in RECIPES]
    assert recipebook.resolve("speech") == REPO / "recipes" / "speech.yaml"
    assert recipebook.resolve("speech.yaml") == REPO / "recipes" / "speech.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "speech").write_text("mel: {}\n")  # a file of that name in the working directory comes first
    assert recipebook.resolve("speech").resolve() == (tmp_path / "speech").resolve()
    with pytest.raises(AudiodiffError, match="not a bundled recipe .*speech.*`audiodiff recipes`"):
        recipebook.resolve("spech")
    with pytest.raises(AudiodiffError, match="no such file"):
        recipebook.resolve("elsewhere/speech.yaml")


def test_recipes_command_lists_each_with_its_description(capsys):
    code, out, _ = invoke(capsys, "recipes")
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert code == 0 and list(lines) == [p.stem for p in RECIPES]
    assert lines["speech"].startswith("DiffWave BASE vocoder for 22.05 kHz speech")
    assert all(d.strip() and not d.startswith("#") and len(d) < 120 for d in lines.values())
    code, out, _ = invoke(capsys, "recipes", "--paths")
    assert str(REPO / "recipes" / "speech.yaml") in out


def test_train_takes_a_bundled_name(capsys, tmp_path, monkeypatch):
    """``audiodiff train NAME`` loads the bundled recipe: a bad override of it fails with the recipe's key named,
    after the name resolved (before any training)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke(capsys, "train", "speech", "--set", "train.batch_sise=2")
    assert code == 1 and "train.batch_sise" in err and "not found" not in err
    code, _, err = invoke(capsys, "train", "no-such-recipe")
    assert code == 1 and "not a bundled recipe" in err
