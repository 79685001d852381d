"""Configuration: one frozen dataclass per component, and YAML recipes that load into them.

A recipe is a YAML mapping with the sections ``mel``, ``model``, ``diffusion``, ``data`` and ``train``.
Unknown keys and wrong types are errors that name the key (and the nearest valid one); ``--set a.b=value``
overrides apply on top. The resolved recipe (every field, defaults included) is what a run directory keeps.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audiodiff.audio.mel import MelConfig, mel_config
from audiodiff.errors import AudiodiffError


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "diffwave"
    residual_layers: int = 30
    residual_channels: int = 64
    dilation_cycle: int = 10
    embed_dim: int = 512
    conditional: bool = True  # False: unconditional waveform model (no mel)
    num_classes: int = 0  # > 0: class-conditional, with a null class for guidance
    # arch: unet2d (log-mel images, models/unet2d.py); the diffwave fields above except embed_dim do not apply
    channels: int = 64  # width of the first level
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)  # level widths as multiples of channels
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = ()  # levels with self-attention (the lowest resolution always has it)
    image_frames: int = 64  # frames per image tile; training crops must match (data.crop_frames)


@dataclass(frozen=True)
class DiffusionConfig:
    schedule: str = "linear"  # "linear" (DiffWave) or "cosine"
    steps: int = 50  # T
    beta_start: float = 1e-4
    beta_end: float = 0.05
    prediction: str = "eps"  # "eps" or "v"
    loss: str = "l1"  # "l1" (DiffWave) or "l2"
    sampler: str = "fast"  # default sampler at inference
    sample_steps: int = 6  # default number of sampling steps
    prior: str = "none"  # "energy": noise std follows the mel's frame energy (PriorGrad; audio/prior.py)
    prior_floor: float = 0.1  # the energy prior's smallest std (PriorGrad's 0.1)
    prior_level: float = 0.1  # frame RMS that gets the full std 1 (-20 dBFS: loud speech); quieter frames less


@dataclass(frozen=True)
class DataConfig:
    path: str | None = None  # folder (searched recursively) or a text file listing audio files
    valid_path: str | None = None  # default: <path>/valid when <path>/train exists, else held out from path
    valid_files: int = 8  # files held out for validation when no valid folder exists
    crop_frames: int = 62  # mel frames per training crop (62 x 256 = 15872 samples)
    num_workers: int = 2
    preload: bool = True  # decode all audio into memory once
    labels: str | None = None  # "prefix": class = file-name part before the first "_" (e.g. 7_george_3.wav -> 7)
    pad_short: bool = False  # pad files shorter than a crop with trailing silence instead of skipping them
    speed_perturb: float = 0.0  # > 0: resample each crop by a random factor in [1 - p, 1 + p] (new voices)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16  # global batch, split across processes
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    lr_decay: str = "none"  # "cosine": after warm-up, lr follows a half cosine to 0 at max_steps
    max_steps: int = 1_000_000
    max_minutes: float = 0.0  # > 0: stop (with a checkpoint) after this much wall-clock training time
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU), "bf16", "fp16", "fp32"
    seed: int = 0
    log_every: int = 50
    valid_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    max_bad_steps: int = 20  # consecutive non-finite losses before training stops
    compile: bool = False  # torch.compile the backbone for the training step (GPU only; ignored on the CPU)
    label_dropout: float = 0.1  # class-conditional models: share of labels replaced by the null class (CFG)
    init: str | None = None  # start from an exported model's weights (fine-tuning); "pretrained": the bundled one
    mel_loss: float = 0.0  # > 0: add this weight times the log-mel L1 of the denoised estimate (waveform models)


@dataclass(frozen=True)
class Recipe:
    mel: MelConfig = field(default_factory=MelConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        # Tuples as lists: YAML's safe dumper knows no tuples.
        return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
                for name, section in dataclasses.asdict(self).items()}


SECTIONS = {"mel": MelConfig, "model": ModelConfig, "diffusion": DiffusionConfig, "data": DataConfig,
            "train": TrainConfig}


# String keys with a fixed set of values that no other module checks before training starts.
CHOICES = {"train.precision": ("auto", "bf16", "fp16", "fp32"), "train.lr_decay": ("none", "cosine"),
           "diffusion.prior": ("none", "energy")}


def _nearest(key: str, valid, cutoff: float = 0.5, list_valid: bool = True) -> str:
    """"; did you mean X?" for the closest of ``valid``; otherwise the valid keys, or nothing."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=cutoff)
    if match:
        return f"; did you mean {match[0]!r}?"
    return f"; valid keys: {', '.join(sorted(valid))}" if list_valid else ""


def _check_type(where: str, value, hint):
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) \
        else (hint,)
    for opt in options:
        if typing.get_origin(opt) is tuple and isinstance(value, (list, tuple)):
            item = typing.get_args(opt)[0]
            return tuple(_check_type(f"{where}[{i}]", v, item) for i, v in enumerate(value))
        if opt is type(None) and value is None:
            return value
        if opt is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if opt is float and isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if opt is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if opt in (str, bool) and isinstance(value, opt):
            return value
    names = " or ".join("null" if o is type(None) else "a list of " + typing.get_args(o)[0].__name__ + "s"
                        if typing.get_origin(o) is tuple else o.__name__ for o in options)
    raise AudiodiffError(f"recipe key {where}: expected {names}, got {value!r}")


def _build(cls, section: str, values: dict):
    if not isinstance(values, dict):
        raise AudiodiffError(f"recipe section {section!r} must be a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if cls is MelConfig:
        names = names | {"preset"}
    for key in values:
        if key not in names:
            raise AudiodiffError(f"unknown recipe key {section}.{key}{_nearest(key, names)}")
    checked = {k: _check_type(f"{section}.{k}", v, hints[k]) for k, v in values.items() if k != "preset"}
    for key, value in checked.items():
        choices = CHOICES.get(f"{section}.{key}")
        if choices and value not in choices:
            raise AudiodiffError(f"recipe key {section}.{key}: {value!r} is not one of {', '.join(choices)}"
                                 f"{_nearest(str(value), choices, cutoff=0.6, list_valid=False)}")
    if cls is MelConfig:
        return mel_config(values.get("preset", "hifigan"), **checked)
    return cls(**checked)


def recipe_from_dict(raw: dict | None) -> Recipe:
    """Validate a recipe mapping and build the frozen ``Recipe``."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise AudiodiffError("a recipe must be a YAML mapping with sections mel, model, diffusion, data, train")
    for key in raw:
        if key not in SECTIONS:
            raise AudiodiffError(f"unknown recipe section {key!r}{_nearest(key, SECTIONS)}")
    recipe = Recipe(**{name: _build(cls, name, raw.get(name, {}) or {}) for name, cls in SECTIONS.items()})
    if recipe.diffusion.prior != "none" and not (recipe.model.arch == "diffwave" and recipe.model.conditional):
        raise AudiodiffError(f"diffusion.prior {recipe.diffusion.prior!r} shapes noise by the conditioning mel: it "
                             f"needs a mel-conditioned diffwave model; set diffusion.prior: none")
    if not 0 < recipe.diffusion.prior_floor <= 1 or recipe.diffusion.prior_level <= 0:
        raise AudiodiffError(f"diffusion.prior_floor must lie in (0, 1] and prior_level be > 0, got "
                             f"{recipe.diffusion.prior_floor} and {recipe.diffusion.prior_level}")
    return recipe


def apply_overrides(raw: dict, overrides) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a raw recipe mapping."""
    if not isinstance(raw or {}, dict):
        raise AudiodiffError("a recipe must be a YAML mapping with sections mel, model, diffusion, data, train")
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (raw or {}).items()}
    for item in overrides or ():
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise AudiodiffError(f"--set {item!r}: expected section.key=value, e.g. train.batch_size=8")
        dotted, value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        if section not in SECTIONS:
            raise AudiodiffError(f"--set {item!r}: unknown section {section!r}{_nearest(section, SECTIONS)}")
        if not isinstance(raw.get(section, {}) or {}, dict):
            raise AudiodiffError(f"recipe section {section!r} must be a mapping of keys to values")
        raw[section] = dict(raw.get(section) or {})
        try:
            raw[section][key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise AudiodiffError(f"--set {item!r}: the value is not plain YAML ({str(err).splitlines()[0]}); "
                                 f"give a number, string, true/false or null") from None
    return raw


def load_recipe(path: str | Path, overrides=()) -> Recipe:
    """Read a YAML recipe (safely), apply ``--set`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise AudiodiffError(f"recipe {path} not found; give a YAML file such as recipes/speech.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise AudiodiffError(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    return recipe_from_dict(apply_overrides(raw, overrides))


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
