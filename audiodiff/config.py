"""Configuration: one frozen dataclass per component, and YAML recipes that load into them.

A recipe is a YAML mapping with the sections ``mel``, ``model``, ``diffusion``, ``data`` and ``train``, and
``fewstep`` for few-step fine-tuning (off by default).
Unknown keys and wrong types are errors that name the key (and the nearest valid one); ``--set a.b=value``
overrides apply on top. The resolved recipe (every field, defaults included) is what a run directory keeps.

The model section is tagged by ``model.arch``: a ``DiffWaveConfig`` (``diffwave``) or a ``UNet2DConfig``
(``unet2d``), each with its own keys; a key of the other kind is an error that names it. Files written while the
section held both kinds' keys still load (``_model_values``). A U-Net's tile width ``model.image_frames`` is the
crop width: a recipe gives ``data.crop_frames`` and the model section follows it.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar

import yaml

from audiodiff.audio.mel import PRESETS, MelConfig, mel_config
from audiodiff.audio.prior import PRIORS
from audiodiff.diffusion.denoiser import LOSSES, PREDICTIONS
from audiodiff.diffusion.samplers import SAMPLERS
from audiodiff.diffusion.schedules import SCHEDULES
from audiodiff.errors import AudiodiffError
from audiodiff.ranges import OneOf, Range

# Valid values are declared on the fields (audiodiff/ranges.py); relations between fields are the RULES functions.
PROBABILITY = Range(0, 1, hi_open=True)
BETA = Range(0, 1, lo_open=True, hi_open=True)
ARCHS = ("diffwave", "unet2d")  # the model kinds (MODEL_CONFIGS; families.py builds and trains them)
MAX_PARAMETERS = 1_000_000_000  # training holds ~20 bytes a parameter (weights, gradients, AdamW moments, EMA)


def _levels_rule(m: "UNet2DConfig") -> str | None:
    if not m.channel_mults:
        return "recipe key model.channel_mults: [] is empty; expected one width multiple per level, e.g. [1, 2, 2, 4]"
    bad = [lv for lv in m.attention_levels if lv >= len(m.channel_mults)]
    if bad:
        return (f"recipe key model.attention_levels: {list(m.attention_levels)} names level {bad[0]}, but "
                f"model.channel_mults {list(m.channel_mults)} has levels 0..{len(m.channel_mults) - 1}; expected "
                f"levels in that range")
    return None


class ModelConfig:
    """The model section: a ``DiffWaveConfig`` or a ``UNet2DConfig``, picked by its tag ``arch`` (``MODEL_CONFIGS``).
    Both derive from this class, so it names either in annotations; ``ModelConfig(arch="unet2d", channels=8)``
    builds the one its ``arch`` names (default diffwave), as recipes do, and a key of the other kind is an error."""

    arch: Annotated[str, OneOf(*ARCHS)] = "diffwave"

    def __new__(cls, *args, **kwargs):
        if cls is not ModelConfig:
            return super().__new__(cls)
        arch = kwargs.get("arch", "diffwave")
        if arch not in MODEL_CONFIGS:
            raise AudiodiffError(f"unknown model.arch {arch!r}; expected one of {', '.join(MODEL_CONFIGS)}")
        return MODEL_CONFIGS[arch](*args, **kwargs)  # Python then runs its (idempotent, frozen) __init__ once more

    def _check_arch(self, arch: str) -> None:
        if self.arch != arch:
            raise AudiodiffError(f"{type(self).__name__} has model.arch {arch!r}, got {self.arch!r}; use "
                                 f"ModelConfig(arch={self.arch!r}, ...)")


@dataclass(frozen=True)
class DiffWaveConfig(ModelConfig):
    """``arch: diffwave``: a DiffWave on waveforms (``models/diffwave.py``), mel-conditioned (a vocoder),
    unconditional or class-conditional."""

    arch: Annotated[str, OneOf("diffwave")] = "diffwave"
    residual_layers: Annotated[int, Range(1)] = 30
    residual_channels: Annotated[int, Range(1)] = 64
    dilation_cycle: Annotated[int, Range(1, 16)] = 10  # dilations 1, 2, ..., 2 ** (cycle - 1), repeated
    embed_dim: Annotated[int, Range(1)] = 512
    conditional: bool = True  # False: unconditional waveform model (no mel)
    num_classes: Annotated[int, Range(0)] = 0  # > 0: class-conditional, with a null class for guidance
    # The network reads the mel as (mel + mel_shift) * mel_scale: the speech recipe maps the hifigan log-mel's
    # speech range, about [-9.2, 2.3], to [0, 1], as the reference DiffWave's own mel is.
    mel_shift: float = 0.0
    mel_scale: Annotated[float, Range(0, lo_open=True)] = 1.0
    init: Annotated[str, OneOf("torch", "kaiming")] = "torch"  # kaiming: He-normal convolutions, as the reference
    SIZE_KEYS: ClassVar = ("residual_layers", "residual_channels", "embed_dim")  # named when a model is too big

    def __post_init__(self):
        self._check_arch("diffwave")

    @property
    def mel_conditioned(self) -> bool:
        return self.conditional

    def size(self, n_mels: int = 80) -> int:
        """Parameters of the built backbone (exact but for the mel upsampler's few dozen)."""
        E, C, n = self.embed_dim, self.residual_channels, n_mels if self.conditional else 0
        total = _embedding_parameters(E, self.num_classes)
        layer = 8 * C * C + 4 * C + E * C + C + (2 * C * n + 2 * C) * (n > 0)  # dilated, out, step and mel projections
        return total + self.residual_layers * layer + 2 * C + C * C + C + C + 1  # input, skip and output projections


@dataclass(frozen=True)
class UNet2DConfig(ModelConfig):
    """``arch: unet2d``: a 2-D U-Net on log-mel images (``models/unet2d.py``), unconditional or class-conditional."""

    arch: Annotated[str, OneOf("unet2d")] = "unet2d"
    channels: Annotated[int, Range(1)] = 64  # width of the first level
    channel_mults: Annotated[tuple[int, ...], Range(1)] = (1, 2, 2, 4)  # level widths as multiples of channels
    blocks_per_level: Annotated[int, Range(1)] = 2
    # levels with self-attention (the lowest resolution always has it)
    attention_levels: Annotated[tuple[int, ...], Range(0)] = ()
    embed_dim: Annotated[int, Range(1)] = 512
    num_classes: Annotated[int, Range(0)] = 0  # > 0: class-conditional, with a null class for guidance
    # frames per image tile; a recipe without it takes data.crop_frames (the crops are the tiles); an exported
    # generator, which has no data section, keeps it here
    image_frames: Annotated[int, Range(1)] = 64
    RULES: ClassVar = (_levels_rule,)
    SIZE_KEYS: ClassVar = ("channels", "channel_mults", "blocks_per_level", "embed_dim")

    def __post_init__(self):
        self._check_arch("unet2d")

    @property
    def mel_conditioned(self) -> bool:
        return False

    def size(self, n_mels: int = 80) -> int:
        """Parameters of the built backbone (exact)."""
        E = self.embed_dim

        def res(cin: int, cout: int) -> int:  # 3x3 convs, step projection, 1x1 skip, GroupNorms
            return 9 * cin * cout + 9 * cout * cout + E * cout + 3 * cout + (cin * cout + cout) * (cin != cout) \
                + 2 * cin + 2 * cout

        def attn(c: int) -> int:
            return 4 * c * c + 6 * c

        B, widths, cin = self.blocks_per_level, [self.channels * m for m in self.channel_mults], self.channels
        total = _embedding_parameters(E, self.num_classes) + 10 * cin  # embeddings, input convolution
        for i, w in enumerate(widths):
            total += res(cin, w) + (B - 1) * res(w, w) + B * attn(w) * (i in self.attention_levels)
            total += (9 * w * w + w) * (i < len(widths) - 1)  # downsampling
            cin = w
        total += 2 * res(cin, cin) + attn(cin)  # middle
        for i in reversed(range(len(widths))):
            w = widths[i]
            total += res(cin + w, w) + (B - 1) * res(w, w) + B * attn(w) * (i in self.attention_levels)
            total += (9 * w * w + w) * (i > 0)  # upsampling
            cin = w
        return total + 2 * cin + 9 * cin + 1  # output norm and convolution


def _embedding_parameters(E: int, num_classes: int) -> int:  # step embedding MLP, class table (+ null class)
    return 128 * E + E * E + 2 * E + (num_classes + 1) * E * (num_classes > 0)


MODEL_CONFIGS = {"diffwave": DiffWaveConfig, "unet2d": UNet2DConfig}  # arch -> its model section
# Keys of every kind's section. Files written before the model section was split by arch (config.yaml, checkpoints,
# exported config.json) hold all of them; _model_values drops the other kind's when all are there.
OWN_KEYS = {arch: {f.name for f in dataclasses.fields(c)} - {"arch", "embed_dim", "num_classes"}
            for arch, c in MODEL_CONFIGS.items()}
# What those files hold of each kind: its keys at the split, fixed, so that keys added since need no listing.
SPLIT_KEYS = {"diffwave": {"residual_layers", "residual_channels", "dilation_cycle", "conditional"},
              "unet2d": {"channels", "channel_mults", "blocks_per_level", "attention_levels", "image_frames"}}


def _beta_rule(d: "DiffusionConfig") -> str | None:
    if d.beta_start >= d.beta_end:
        return (f"recipe key diffusion.beta_start: {d.beta_start:g} is not below diffusion.beta_end {d.beta_end:g}; "
                f"expected beta_start < beta_end (DiffWave: 1e-4 and 0.05)")
    return None


@dataclass(frozen=True)
class DiffusionConfig:
    schedule: Annotated[str, OneOf(*SCHEDULES)] = "linear"  # "linear" (DiffWave) or "cosine"
    steps: Annotated[int, Range(1, 10_000)] = 50  # T
    beta_start: Annotated[float, BETA] = 1e-4
    beta_end: Annotated[float, BETA] = 0.05
    prediction: Annotated[str, OneOf(*PREDICTIONS)] = "eps"  # "eps" or "v"
    loss: Annotated[str, OneOf(*LOSSES)] = "l1"  # "l1" (DiffWave) or "l2"
    sampler: Annotated[str, OneOf(*sorted(SAMPLERS))] = "fast"  # default sampler at inference
    sample_steps: Annotated[int, Range(1, 10_000)] = 6  # default number of sampling steps
    # "energy": noise std follows the mel's frame energy (PriorGrad); "envelope": the noise's spectrum follows the
    # mel's spectral envelope at that level (SpecGrad); audio/prior.py
    prior: Annotated[str, OneOf(*PRIORS)] = "none"
    prior_floor: Annotated[float, Range(0, 1, lo_open=True)] = 0.1  # the smallest std (envelope: per bin; PriorGrad's)
    # frame RMS that gets the full std 1 (-20 dBFS: loud speech); quieter frames proportionally less
    prior_level: Annotated[float, Range(0, lo_open=True)] = 0.1
    RULES: ClassVar = (_beta_rule,)


def mel_values(preset: str, settings, label: str = "--set") -> dict:
    """A mel section's mapping: ``preset`` with ``key=value`` settings (YAML values, ``mel.`` prefix optional), as
    ``audiodiff mel --set`` and ``data.mel_set`` give them; ``label`` names where they came from in errors."""
    values = {"preset": preset}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("mel.")
        if not sep or not key:
            raise AudiodiffError(f"{label} {item!r}: expected key=value, e.g. {label} fmax=8000")
        try:
            values[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise AudiodiffError(f"{label} {item!r}: the value is not plain YAML; give a number, string, "
                                 f"true/false, null or a [list]") from None
    return values


def pairs_mel(d: "DataConfig") -> MelConfig | None:
    """The convention of the pairs' mels: ``data.mel_preset`` with the ``data.mel_set`` settings, validated as a
    recipe's mel section is (None: the recipe's own mel)."""
    if d.mel_preset is None:
        return None
    return _build(MelConfig, "data.mel_set", mel_values(d.mel_preset, d.mel_set, "data.mel_set"))


def _pairs_rule(d: "DataConfig") -> str | None:
    if d.mel_set and d.mel_preset is None:
        return ("recipe key data.mel_set changes the settings of data.mel_preset, which is not set; name the pairs' "
                "preset with data.mel_preset (e.g. coqui), or remove data.mel_set")
    pairs_mel(d)  # a bad setting is an error that names its key
    if not d.pairs:
        key = "mel_path" if d.mel_path is not None else "mel_preset" if d.mel_preset is not None else None
        return (f"recipe key data.{key} is set but data.pairs is false; set data.pairs: true to train from "
                f"(acoustic-model mel, audio) pairs, or remove data.{key}") if key else None
    if d.speed_perturb or d.pad_short:
        key = "speed_perturb" if d.speed_perturb else "pad_short"
        return (f"recipe key data.{key} changes the audio, which the acoustic model's mels (data.pairs) then no longer "
                f"describe; set data.speed_perturb: 0 and data.pad_short: false with data.pairs: true")
    return None


@dataclass(frozen=True)
class DataConfig:
    path: str | None = None  # folder (searched recursively) or a text file listing audio files
    valid_path: str | None = None  # default: <path>/valid when <path>/train exists, else held out from path
    valid_files: Annotated[int, Range(0)] = 8  # files held out for validation when no valid folder exists
    crop_frames: Annotated[int, Range(1)] = 62  # mel frames per training crop (62 x 256 = 15872 samples)
    # a manifest (.tsv, written by `audiodiff data manifest`) listing the training files with their lengths; when
    # set, data.path is not listed (the files need not lie under it)
    manifest: str | None = None
    num_workers: Annotated[int, Range(0)] = 2
    # true: decode all audio into memory once; false: read each crop from disk (memory bounded whatever the corpus
    # size); auto: preload corpora of up to 2 GiB of float32 a process (training/data.py, PRELOAD_LIMIT)
    preload: Annotated[bool | str, OneOf("auto", True, False)] = "auto"
    # "prefix": class = file-name part before the first "_" (e.g. 7_george_3.wav -> 7)
    labels: Annotated[str | None, OneOf("prefix", None)] = None
    pad_short: bool = False  # pad files shorter than a crop with trailing silence instead of skipping them
    # > 0: resample each crop by a random factor in [1 - p, 1 + p] (new voices)
    speed_perturb: Annotated[float, Range(0, 0.5, hi_open=True)] = 0.0
    # true: train from pairs, each audio file with the mel an acoustic model made of it (data/pairs.py): NAME.npy
    # beside NAME.wav, or under data.mel_path (the audio's folder layout mirrored), or a manifest's mel column
    pairs: bool = False
    mel_path: str | None = None
    mel_preset: Annotated[str | None, OneOf(*PRESETS, None)] = None  # the pairs' mel convention (null: the recipe's)
    mel_set: tuple[str, ...] = ()  # key=value settings of data.mel_preset, e.g. [fmax=8000] (as audiodiff mel --set)
    RULES: ClassVar = (_pairs_rule,)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: Annotated[int, Range(1)] = 16  # global batch, split across processes
    lr: Annotated[float, Range(0)] = 2e-4
    weight_decay: Annotated[float, Range(0)] = 0.0
    warmup_steps: Annotated[int, Range(0)] = 200
    # "cosine": after warm-up, lr follows a half cosine to 0 at max_steps
    lr_decay: Annotated[str, OneOf("none", "cosine")] = "none"
    max_steps: Annotated[int, Range(1)] = 1_000_000
    # > 0: stop (with a checkpoint) after this much wall-clock training time
    max_minutes: Annotated[float, Range(0)] = 0.0
    grad_clip: Annotated[float, Range(0, lo_open=True)] = 1.0
    ema_decay: Annotated[float, PROBABILITY] = 0.999
    # "auto" (bf16 on GPU, fp32 on CPU), "bf16", "fp16", "fp32"
    precision: Annotated[str, OneOf("auto", "bf16", "fp16", "fp32")] = "auto"
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    log_every: Annotated[int, Range(1)] = 50
    valid_every: Annotated[int, Range(1)] = 1000
    checkpoint_every: Annotated[int, Range(1)] = 1000
    keep_checkpoints: Annotated[int, Range(0, note="0 keeps every checkpoint")] = 3
    max_bad_steps: Annotated[int, Range(1)] = 20  # consecutive non-finite losses before training stops
    compile: bool = False  # torch.compile the backbone for the training step (GPU only; ignored on the CPU)
    # class-conditional models: share of labels replaced by the null class (CFG)
    label_dropout: Annotated[float, PROBABILITY] = 0.1
    init: str | None = None  # start from an exported model's weights (fine-tuning); "pretrained": the bundled one
    # > 0: add this weight times the log-mel L1 of the denoised estimate (waveform models; training/targets.py)
    mel_loss: Annotated[float, Range(0)] = 0.0
    # the mel loss's weight at noise level sigma is 1 / (1 + (sigma / mel_loss_sigma)^2): 1.0 weights by the signal's
    # share of x_t; smaller values keep it to the low-noise steps, where the estimate can match the mel
    mel_loss_sigma: Annotated[float, Range(0, lo_open=True)] = 1.0
    # > 0: add this weight times the multi-resolution STFT loss of the denoised estimate (Parallel WaveGAN's),
    # weighted by noise level as the mel loss is (train.mel_loss_sigma)
    stft_loss: Annotated[float, Range(0)] = 0.0


def _fewstep_values_rule(f: "FewStepConfig") -> str | None:
    if f.steps and f.betas and len(f.betas) != f.steps:  # steps 0 ignores the other keys
        return (f"recipe key fewstep.betas: {list(f.betas)} has {len(f.betas)} entries for fewstep.steps {f.steps}; "
                f"expected one beta per step, or [] for the fast sampler's own {f.steps}-step schedule")
    if len(f.disc_betas) != 2:
        return f"recipe key fewstep.disc_betas: {list(f.disc_betas)}; expected Adam's two betas, e.g. [0.8, 0.99]"
    return None


@dataclass(frozen=True)
class FewStepConfig:
    """Few-step fine-tuning (``training/fewstep.py``, docs/fewstep.md): the vocoder's sampler unrolled at ``steps``
    steps is trained as a generator with the mel, feature-matching and adversarial losses of HiFi-GAN against
    multi-period and multi-resolution discriminators (``models/discriminators.py``). ``steps: 0`` (the default)
    is plain diffusion training and ignores the other keys."""

    steps: Annotated[int, Range(0, 16, note="0: plain diffusion training")] = 0
    # the short variance schedule of the unrolled fast sampler (DiffWave Alg. 3), one beta per step; []: the fast
    # sampler's own schedule for fewstep.steps (diffusion/plan.py fast_betas). The export records it.
    betas: Annotated[tuple[float, ...], BETA] = ()
    mel_weight: Annotated[float, Range(0)] = 45.0  # lambda_mel (HiFi-GAN eq. 6)
    stft_weight: Annotated[float, Range(0)] = 0.0  # weight of the multi-resolution STFT loss (Parallel WaveGAN's)
    fm_weight: Annotated[float, Range(0)] = 2.0  # lambda_fm (HiFi-GAN)
    adv_weight: Annotated[float, Range(0)] = 1.0  # the LSGAN generator loss's weight
    # steps of spectral losses only before the discriminators train and the adversarial terms start
    adversarial_after: Annotated[int, Range(0)] = 0
    disc_lr: Annotated[float, Range(0, lo_open=True)] = 2e-4  # AdamW learning rate of the discriminators (HiFi-GAN)
    disc_betas: Annotated[tuple[float, ...], Range(0, 1, hi_open=True)] = (0.8, 0.99)  # HiFi-GAN's AdamW betas
    periods: Annotated[tuple[int, ...], Range(1)] = (2, 3, 5, 7, 11)  # the multi-period discriminator's
    # share of HiFi-GAN's discriminator widths (32..1024 channels; the resolution discriminators' 32)
    disc_width: Annotated[float, Range(0, 1, lo_open=True)] = 1.0
    RULES: ClassVar = (_fewstep_values_rule,)

    def schedules(self) -> dict:
        """``{"N": betas}`` of the unrolled schedule (``{}`` when off): what an exported model records as its tuned
        fast schedule, so that its default sampling is the one it was fine-tuned at."""
        if not self.steps:
            return {}
        from audiodiff.diffusion.plan import fast_betas

        return {str(self.steps): [float(b) for b in (self.betas or fast_betas(self.steps))]}


def model_parameters(model: ModelConfig, n_mels: int = 80) -> int:
    """How many parameters ``factory.build_backbone`` gives ``model``, computed without building it (exact but for
    the mel upsampler's few dozen), so that absurd sizes are refused before any memory is allocated."""
    return model.size(n_mels)


def _prior_rule(r: "Recipe") -> str | None:
    if r.diffusion.prior != "none" and not r.model.mel_conditioned:
        return (f"recipe key diffusion.prior: {r.diffusion.prior!r} shapes the noise by the conditioning mel, which "
                f"this model has not; expected a mel-conditioned diffwave, or diffusion.prior: none")
    return None


def _size_rule(r: "Recipe") -> str | None:
    m, n = r.model, model_parameters(r.model, r.mel.n_mels)
    if n <= MAX_PARAMETERS:
        return None
    shape = ", ".join(f"model.{k} {list(v) if isinstance(v, tuple) else v}" for k in m.SIZE_KEYS
                      for v in [getattr(m, k)])
    return (f"recipe keys {shape} make a {m.arch} of about {n:.3g} parameters ({20 * n / 1e9:,.0f} GB to train); "
            f"expected at most {MAX_PARAMETERS:.0e}; make the model smaller")


def _fewstep_rule(r: "Recipe") -> str | None:
    f, d = r.fewstep, r.diffusion
    if not f.steps:
        return None
    if not (r.model.arch == "diffwave" and r.model.mel_conditioned):
        return ("recipe key fewstep.steps: few-step fine-tuning trains a vocoder; expected a mel-conditioned "
                "diffwave, or fewstep.steps: 0")
    if d.sampler != "fast" or d.sample_steps != f.steps:
        return (f"recipe keys diffusion.sampler {d.sampler} and diffusion.sample_steps {d.sample_steps}: the model is "
                f"fine-tuned at the fast sampler's {f.steps} steps (fewstep.steps), which its export samples with by "
                f"default; set diffusion.sampler: fast and diffusion.sample_steps: {f.steps}")
    if r.train.precision == "fp16":
        return ("recipe key train.precision: fp16 is not supported by few-step fine-tuning (two networks, no "
                "GradScaler); use bf16, auto or fp32")
    return None


@dataclass(frozen=True)
class Recipe:
    mel: MelConfig = field(default_factory=MelConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fewstep: FewStepConfig = field(default_factory=FewStepConfig)
    RULES: ClassVar = (_size_rule, _prior_rule, _fewstep_rule)  # relations across sections

    def to_dict(self) -> dict:
        # Tuples as lists: YAML's safe dumper knows no tuples.
        return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
                for name, section in dataclasses.asdict(self).items()}


SECTIONS = {"mel": MelConfig, "model": ModelConfig, "diffusion": DiffusionConfig, "data": DataConfig,
            "train": TrainConfig, "fewstep": FewStepConfig}


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
    if cls is ModelConfig:
        cls, values = _model_values(values)
    names = {f.name for f in dataclasses.fields(cls)}
    if cls is MelConfig:
        names = names | {"preset"}
    for key in values:
        if key not in names:
            raise AudiodiffError(f"unknown recipe key {section}.{key}{_nearest(key, names)}")
    checked = _checked(cls, section, {k: v for k, v in values.items() if k != "preset"})
    built = mel_config(values.get("preset", "hifigan"), **checked) if cls is MelConfig else cls(**checked)
    _check_rules(built)
    return built


def _checked(cls, section: str, values: dict) -> dict:
    """``values`` with each checked against its field's type and declared range (``Range`` / ``OneOf``)."""
    hints = typing.get_type_hints(cls)
    checked = {k: _check_type(f"{section}.{k}", v, hints[k]) for k, v in values.items()}
    specs = typing.get_type_hints(cls, include_extras=True)
    for key, value in checked.items():
        for spec in getattr(specs[key], "__metadata__", ()):  # Range / OneOf declared on the field
            problem = spec.problem(value)
            if problem:
                valid = [str(c) for c in getattr(spec, "choices", ()) if c is not None]
                hint = _nearest(value, valid, cutoff=0.6, list_valid=False) if isinstance(value, str) else ""
                shown = list(value) if isinstance(value, tuple) else value
                raise AudiodiffError(f"recipe key {section}.{key}: {shown!r} {problem}{hint}")
    return checked


def _model_values(values: dict) -> tuple[type, dict]:
    """The model section's dataclass, chosen by ``arch``, and its values. A key of another kind is refused by name;
    all of another kind's keys at once are what files written before the split hold (every field of both kinds),
    and are dropped, so that those files still load."""
    arch = _checked(ModelConfig, "model", {"arch": values.get("arch", "diffwave")})["arch"]
    values = dict(values)
    for other, keys in OWN_KEYS.items():
        if other != arch and SPLIT_KEYS[other] <= values.keys():
            values = {k: v for k, v in values.items() if k not in keys}
        for key in keys & values.keys() if other != arch else ():
            _checked(MODEL_CONFIGS[other], "model", {key: values[key]})  # a value wrong anyway is reported as such
            raise AudiodiffError(f"recipe key model.{key} belongs to model.arch {other}, not {arch}; remove it, "
                                 f"or set model.arch: {other}")
    return MODEL_CONFIGS[arch], values


def _check_rules(config) -> None:
    for rule in getattr(config, "RULES", ()):
        problem = rule(config)
        if problem:
            raise AudiodiffError(problem)


def recipe_from_dict(raw: dict | None) -> Recipe:
    """Validate a recipe mapping and build the frozen ``Recipe``."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise AudiodiffError("a recipe must be a YAML mapping with sections mel, model, diffusion, data, train")
    for key in raw:
        if key not in SECTIONS:
            raise AudiodiffError(f"unknown recipe section {key!r}{_nearest(key, SECTIONS)}")
    built = {name: _build(cls, name, raw.get(name, {}) or {}) for name, cls in SECTIONS.items() if name != "model"}
    built["model"] = _build(ModelConfig, "model", _tile_from_crops(raw.get("model", {}) or {}, raw, built["data"]))
    recipe = Recipe(**built)
    _check_rules(recipe)
    return recipe


def _tile_from_crops(model: dict, raw: dict, data: DataConfig) -> dict:
    # A U-Net's image_frames is its crops' width: a recipe that sets data.crop_frames and not model.image_frames
    # gets it from there (the two must be equal: families.ImageFamily.check).
    tiled = isinstance(model, dict) and "image_frames" in OWN_KEYS.get(str(model.get("arch")), ())
    if tiled and "image_frames" not in model and "crop_frames" in (raw.get("data") or {}):
        return {**model, "image_frames": data.crop_frames}
    return model


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
