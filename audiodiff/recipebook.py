"""The recipes that ship with audiodiff: ``audiodiff train speech`` finds ``speech.yaml`` by name, ``audiodiff
recipes`` lists them.

The YAML files live in the top-level ``recipes/`` folder of the source tree; the wheel carries the same files as the
package data ``audiodiff/recipes/`` (pyproject.toml maps that package to the folder). So an installed audiodiff reads
them next to its modules, and a source checkout (an editable install, ``PYTHONPATH``) reads the folder itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from audiodiff.errors import AudiodiffError

_HERE = Path(__file__).resolve().parent


def recipes_dir() -> Path:
    """The folder of the bundled recipes: the installed package data, else the source tree's ``recipes/``."""
    for folder in (_HERE / "recipes", _HERE.parent / "recipes"):
        if folder.is_dir() and any(folder.glob("*.yaml")):
            return folder
    raise AudiodiffError("the bundled recipes are missing from this install (no audiodiff/recipes/*.yaml); "
                         "reinstall audiodiff, or give the path of a recipe file")


def bundled() -> dict[str, Path]:
    """``{name: path}`` of every bundled recipe, by file stem, in name order."""
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml"))}


def describe(path: Path) -> str:
    """A recipe's one-line description: the start of its opening comment, up to the first sentence or aside."""
    lines = []
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    return re.split(r"\. |: | \(", text, maxsplit=1)[0].strip() or "(no description)"


def resolve(recipe: str | Path) -> Path:
    """``recipe`` if it is a file, else the bundled recipe of that name (``speech`` or ``speech.yaml``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    if path.parent == Path(".") and (path.suffix in ("", ".yaml")):
        found = bundled().get(path.stem)
        if found is not None:
            return found
    names = ", ".join(bundled())
    raise AudiodiffError(f"recipe {recipe} not found: no such file, and not a bundled recipe ({names}); give a "
                         f"YAML file or one of those names (`audiodiff recipes` lists them)")
