"""Exported model directories: ``config.json`` (format tag, mel/model/diffusion sections, extras) plus
``model.safetensors``. The one module that opens a model directory's files, so a model is always validated the
same way: JSON and safetensors only, config sections checked like recipes, no pickle ever loaded, every write
atomic. A name of the form ``org/name`` that is no local path is a Hugging Face Hub model: :func:`resolve` turns it
into its snapshot in huggingface_hub's cache (``hub.py``), so every reader below accepts it. Inference objects
(``Vocoder``, ``MelGenerator``) and tools (schedule search, ``audiodiff mel --model``,
the digit classifier of bench/) read and write through these functions, never the files themselves."""

from __future__ import annotations

import dataclasses
import json
from importlib import import_module
from pathlib import Path
from typing import Sequence

import torch

from audiodiff import atomic, hub
from audiodiff.config import Recipe, recipe_from_dict
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone

CONFIG, WEIGHTS = "config.json", "model.safetensors"
SECTIONS = ("mel", "model", "diffusion")
PAIRED_VOCODER = "vocoder"  # the subdirectory of an exported generator that holds its paired vocoder
ENTRIES = (CONFIG, WEIGHTS, PAIRED_VOCODER)  # all a model directory holds: it may be replaced
# The inference class of each format (imported on use: vocoder.py and melgen.py import this module).
FORMATS = {"audiodiff-vocoder": ("audiodiff.vocoder", "Vocoder"),
           "audiodiff-melgen": ("audiodiff.melgen", "MelGenerator")}
EXPORT_FIX = "pass a directory made by `audiodiff export`"


# --- any directory of config.json + model.safetensors -------------------------------------------------------------
def write(path: str | Path, state: dict[str, torch.Tensor], cfg: dict, what: str = "model directory") -> Path:
    """Write the tensors ``state`` and the JSON ``cfg`` to the directory ``path``, atomically: an earlier model
    directory there is replaced whole, a folder holding anything else is refused."""
    from safetensors.torch import save

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic.replacing_dir(path, what, ENTRIES) as tmp:
        (tmp / WEIGHTS).write_bytes(save(state))
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def resolve(path: str | Path, revision: str | None = None) -> Path:
    """The model directory on this machine that ``path`` names: the path itself, or, for a Hub repository id
    (``org/name``) that is no local path, its snapshot at ``revision`` in huggingface_hub's cache."""
    local = Path(path)
    if local.exists() or not hub.is_repo_id(str(path)):
        if revision is not None:
            raise AudiodiffError(f"revision={revision!r} picks a version of a Hub model, but {path} is a local path; "
                                 f"drop revision, or give the Hub id org/name")
        return local
    return hub.download(str(path), revision)


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a model directory's config (a quick test; the readers validate)."""
    return (Path(path) / CONFIG).is_file()


def read_config(path: str | Path, fmt: str | Sequence[str] | None = None, noun: str = "model",
                fix: str = EXPORT_FIX, weights: bool = True) -> dict:
    """The parsed ``config.json`` of the directory ``path``, without loading the weights. ``fmt``: the format tag
    (or tags) it must have; None: any. ``weights``: the directory must also hold ``model.safetensors``. ``noun``
    and ``fix`` word the error when the files are missing ("... is not an audiodiff NOUN (...); FIX")."""
    path = resolve(path)
    cfg_path = path / CONFIG
    if not cfg_path.is_file() or (weights and not (path / WEIGHTS).is_file()):
        needs = f"{CONFIG} and {WEIGHTS}" if weights else CONFIG
        raise AudiodiffError(f"{path} is not an audiodiff {noun} (needs {needs}); {fix}")
    try:
        cfg = json.loads(cfg_path.read_text())
        found = cfg.get("format") if isinstance(cfg, dict) else None
        allowed = (fmt,) if isinstance(fmt, str) else tuple(fmt or ())
        if allowed and found not in allowed:
            raise ValueError(f"format is {found!r}, not {' or '.join(map(repr, allowed))}")
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
    except (ValueError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AudiodiffError(f"{cfg_path}: not a valid audiodiff {noun} config ({err})") from None
    return cfg


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path/model.safetensors`` (safetensors, never pickle), as stored."""
    weights = Path(path) / WEIGHTS
    try:
        return _tensors(weights)
    except Exception as err:
        raise AudiodiffError(f"{weights}: not readable safetensors weights ({str(err).splitlines()[0][:160]}); "
                             f"re-export the model") from None


def _tensors(weights: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(weights))


# --- audiodiff models (format, mel/model/diffusion sections) ----------------------------------------------------
def read_recipe(path: str | Path, fmt: str | Sequence[str] | None = None, noun: str = "model",
                fix: str = EXPORT_FIX, weights: bool = True) -> tuple[dict, Recipe]:
    """``(config dict, recipe with the mel/model/diffusion sections)`` of an exported model, without its weights;
    ``fmt`` as :func:`read_config`, None: any audiodiff model format. Sections are checked like a recipe's."""
    cfg = read_config(path, tuple(FORMATS) if fmt is None else fmt, noun, fix, weights)
    try:
        missing = [k for k in SECTIONS if not isinstance(cfg.get(k), dict)]
        if missing:
            raise ValueError(f"missing section(s) {missing}")
        recipe = recipe_from_dict({k: cfg[k] for k in SECTIONS})
    except (ValueError, KeyError, TypeError) as err:  # AudiodiffError is a ValueError: it names the key
        raise AudiodiffError(f"{Path(path) / CONFIG}: not a valid audiodiff {noun} config ({err})") from None
    return cfg, recipe


def save(path: str | Path, net: torch.nn.Module, fmt: str, sections: dict, extra: dict | None = None,
         fp16: bool = False) -> Path:
    """Write ``net``'s weights and ``{"format": fmt, **sections (dataclasses), **extra}`` to the directory ``path``,
    atomically: an earlier model directory there is replaced whole, a folder holding anything else is refused."""
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to("cpu", dtype) for k, v in net.state_dict().items()}
    cfg = {"format": fmt, **{k: dataclasses.asdict(v) for k, v in sections.items()}, **(extra or {})}
    return write(path, state, cfg)


def load(path: Path, fmt: str, noun: str, missing_hint: str = "pass",
         revision: str | None = None) -> tuple[dict, Recipe, torch.nn.Module]:
    """``(config dict, recipe with the three sections, backbone with the weights loaded)``; ``noun`` names the
    kind of model in errors ("model", "mel generator"); ``path`` may be a Hub id (:func:`resolve`, at
    ``revision``)."""
    path = resolve(path, revision)
    cfg, recipe = read_recipe(path, fmt, noun, f"{missing_hint} a directory made by `audiodiff export`")
    net = build_backbone(recipe.model, recipe.mel)
    try:
        net.load_state_dict({k: v.float() for k, v in _tensors(path / WEIGHTS).items()})
    except Exception as err:
        raise AudiodiffError(f"{path / WEIGHTS}: weights do not load into the model its config describes "
                             f"({str(err).splitlines()[0][:160]}); re-export the model") from None
    return cfg, recipe, net


def load_model(path: str | Path, device=None, **kwargs):
    """The inference object of any exported model, picked by its format tag: a ``Vocoder`` or a ``MelGenerator``
    (``kwargs`` go to its ``from_pretrained``)."""
    fmt = read_config(path, tuple(FORMATS))["format"]
    module, name = FORMATS[fmt]
    return getattr(import_module(module), name).from_pretrained(path, device=device, **kwargs)


def check_updatable(path: str | Path) -> None:
    """Fail now, before minutes of work, if the config of the model directory ``path`` could not be rewritten."""
    atomic.check_writable(Path(path) / CONFIG, "model config")


def store_tuned_schedule(path: str | Path, steps: int, betas) -> None:
    """Record ``betas`` as the tuned schedule for ``steps`` steps in the exported vocoder at ``path`` (its config
    rewritten atomically; the weights and every other entry are kept)."""
    cfg = read_config(path, "audiodiff-vocoder")
    cfg.setdefault("tuned_schedules", {})[str(steps)] = [float(b) for b in betas]
    atomic.write_text(Path(path) / CONFIG, json.dumps(cfg, indent=2) + "\n", "model config")
