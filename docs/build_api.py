"""Build the API reference: HTML from the docstrings of every public module of ``audiodiff/``, with pdoc.

    python docs/build_api.py [OUT_DIR]        # default build/api (git-ignored); `make docs` runs this

Every ``.py`` file under ``audiodiff/`` whose name does not start with ``_`` is a public module and gets a page
(packages' ``__all__`` would otherwise hide the submodules they do not re-export). Exits with status 1, printing
them, if pdoc warns: a module that fails to import, a package it cannot walk. tests/test_docs.py runs ``build``.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "audiodiff"
DEFAULT_OUT = ROOT / "build" / "api"


def public_modules(package: Path = PACKAGE) -> list[str]:
    """Dotted names of the package and of every module and subpackage in it that is not private (``_name``)."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        names.append(".".join(parts))
    return names


def build(out_dir: Path, names: list[str] | None = None) -> list[str]:
    """Write the HTML reference of ``names`` (default: ``public_modules()``) into ``out_dir``; return the problems,
    empty when the build is clean: modules that fail to import, and pdoc's warnings."""
    import pdoc.doc
    import pdoc.render

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    out_dir = Path(out_dir)
    pdoc_dir = Path(pdoc.__file__).resolve().parent
    pdoc.render.configure(docformat="markdown", show_source=True, search=True,
                          footer_text="audiodiff API reference")
    problems, modules = [], {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # One page per module we name: pdoc.pdoc() would walk packages through their __all__ and skip submodules.
        for name in public_modules() if names is None else names:
            try:
                # Imported here, not first by pdoc, which imports with sys.stdout, sys.stderr and subprocess.Popen
                # patched; a module that kept a reference to them would keep the patched ones (tests run in-process).
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - any import failure is a build problem to report
                problems.append(f"cannot import {name}: {type(exc).__name__}: {exc}")
                continue
            modules[name] = pdoc.doc.Module.from_name(name)
        for name, module in modules.items():
            page = out_dir / f"{name.replace('.', '/')}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(pdoc.render.html_module(module, modules), encoding="utf-8")
        (out_dir / "index.html").write_text(pdoc.render.html_index(modules), encoding="utf-8")
        (out_dir / "search.js").write_text(pdoc.render.search_index(modules), encoding="utf-8")
    # Warnings that importing torch, librosa & co. raises are theirs; pdoc's own (a name or annotation it cannot
    # resolve, a module it cannot load) are the build's.
    problems += [str(w.message) for w in caught if Path(w.filename).resolve().is_relative_to(pdoc_dir)]
    return problems


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]) if argv else DEFAULT_OUT
    problems = build(out_dir)
    for problem in problems:
        print(f"pdoc: {problem}", file=sys.stderr)
    print(f"API reference: {out_dir / 'index.html'}" + (f" ({len(problems)} warnings)" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
