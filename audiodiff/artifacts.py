"""Exported model directories: ``config.json`` (format tag, mel/model/diffusion sections, extras) plus
``model.safetensors``. One reader and one writer for every inference object, so a model is always validated
the same way: JSON and safetensors only, config sections checked like recipes, no pickle ever loaded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from audiodiff import atomic
from audiodiff.config import Recipe, recipe_from_dict
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone

SECTIONS = ("mel", "model", "diffusion")
PAIRED_VOCODER = "vocoder"  # the subdirectory of an exported generator that holds its paired vocoder
ENTRIES = ("config.json", "model.safetensors", PAIRED_VOCODER)  # all a model directory holds: it may be replaced


def save(path: str | Path, net: torch.nn.Module, fmt: str, sections: dict, extra: dict | None = None,
         fp16: bool = False) -> Path:
    """Write ``net``'s weights and ``{"format": fmt, **sections (dataclasses), **extra}`` to the directory ``path``,
    atomically: an earlier model directory there is replaced whole, a folder holding anything else is refused."""
    from safetensors.torch import save

    path = Path(path)
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    cfg = {"format": fmt, **{k: dataclasses.asdict(v) for k, v in sections.items()}, **(extra or {})}
    with atomic.replacing_dir(path, "model directory", ENTRIES) as tmp:
        (tmp / "model.safetensors").write_bytes(save(state))
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def load(path: Path, fmt: str, noun: str, missing_hint: str = "pass") -> tuple[dict, Recipe, torch.nn.Module]:
    """``(config dict, recipe with the three sections, backbone with the weights loaded)``; ``noun`` names the
    kind of model in errors ("model", "mel generator")."""
    from safetensors.torch import load_file

    cfg_path, weights = path / "config.json", path / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise AudiodiffError(f"{path} is not an audiodiff {noun} (needs config.json and model.safetensors); "
                             f"{missing_hint} a directory made by `audiodiff export`")
    try:
        cfg = json.loads(cfg_path.read_text())
        if not isinstance(cfg, dict) or cfg.get("format") != fmt:
            found = cfg.get("format") if isinstance(cfg, dict) else None
            raise ValueError(f"format is {found!r}, not {fmt!r}")
        missing = [k for k in SECTIONS if not isinstance(cfg.get(k), dict)]
        if missing:
            raise ValueError(f"missing section(s) {missing}")
        recipe = recipe_from_dict({k: cfg[k] for k in SECTIONS})
    except (ValueError, KeyError, TypeError) as err:  # AudiodiffError is a ValueError: it names the key
        raise AudiodiffError(f"{cfg_path}: not a valid audiodiff {noun} config ({err})") from None
    net = build_backbone(recipe.model, recipe.mel)
    try:
        net.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    except Exception as err:
        raise AudiodiffError(f"{weights}: weights do not load into the model its config describes "
                             f"({str(err).splitlines()[0][:160]}); re-export the model") from None
    return cfg, recipe, net
