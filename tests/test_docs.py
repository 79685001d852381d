"""The API reference (docs/build_api.py, `make docs`) builds from the docstrings: every public module gets a page,
and the build reports no module that fails to import. Needs pdoc (the dev extra)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
build_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_api)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    return out, build_api.build(out)


def test_every_public_module_is_found():
    names = build_api.public_modules()
    expected = {"audiodiff", "audiodiff.vocoder", "audiodiff.melgen", "audiodiff.audio.mel",
                "audiodiff.diffusion.samplers", "audiodiff.training.loop", "audiodiff.eval.copysynth"}
    assert expected <= set(names)
    assert not any(part.startswith("_") for name in names for part in name.split("."))  # no __main__, no _private
    files = [p for p in (ROOT / "audiodiff").rglob("*.py") if p.name == "__init__.py" or not p.name.startswith("_")]
    assert len(names) == len(files) > 40  # one name per public file (a package is its __init__.py)


def test_build_renders_every_public_module_without_problems(built):
    out, problems = built
    assert problems == []
    for name in build_api.public_modules():
        page = out / f"{name.replace('.', '/')}.html"
        assert page.is_file(), f"no page for {name}"
        assert name in page.read_text(encoding="utf-8")
    assert (out / "index.html").is_file() and (out / "search.js").is_file()
    vocoder = (out / "audiodiff" / "vocoder.html").read_text(encoding="utf-8")
    assert "from_pretrained" in vocoder and "save_pretrained" in vocoder  # the docstrings, not an empty shell


def test_a_module_that_fails_to_import_is_reported(tmp_path, monkeypatch):
    pkg = tmp_path / "brokenpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A package."""\n')
    (pkg / "bad.py").write_text('"""Imports a name that does not exist."""\nfrom brokenpkg import missing\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = build_api.build(tmp_path / "out", ["brokenpkg", "brokenpkg.bad"])
    for name in ("brokenpkg.bad", "brokenpkg"):
        sys.modules.pop(name, None)
    assert problems and all("brokenpkg.bad" in problem for problem in problems)
    assert any("ImportError" in problem and "missing" in problem for problem in problems)
    assert (tmp_path / "out" / "brokenpkg.html").is_file()
