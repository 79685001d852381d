"""``SynthesisOptions``: every setting of a vocoder's synthesis in one frozen, validated value.

Validation happens here once (the constructor, ``from_pretrained`` and the CLI all go through it), and the value
itself is the fast path's cache key (``fastpath.Runtime``): a compiled or captured copy is reused only for options
equal in every field, so a new field can never be left out of the key. The module imports no torch, so that the
CLI can take its choices and defaults from here without paying for it.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

from audiodiff.errors import AudiodiffError, check_count

PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 on a GPU, fp32 elsewhere (resolve_precision)
MAX_BATCH = {"cuda": 16, "cpu": 2}  # chunks synthesised at once when max_batch is None (other devices: the CPU's)
CHUNK_FRAMES, OVERLAP_FRAMES = 1024, 32
# The refinement's defaults (audio/refine.py ITERATIONS and MOMENTUM, which tests/test_options.py keeps equal):
# restated here because that module imports torch and the CLI's help shows them.
REFINE_ITERATIONS, REFINE_MOMENTUM = 32, 0.9
SAVED = ("sampler", "steps", "refine", "refine_momentum")  # what defines a model's output: save_pretrained keeps it


def resolve_precision(precision: str, device_type: str) -> str:
    """``"fp32"`` or ``"bf16"``: ``precision`` with ``"auto"`` resolved for a device of ``device_type``."""
    if precision != "auto":
        return precision
    return "bf16" if device_type == "cuda" else "fp32"


@dataclass(frozen=True)
class SynthesisOptions:
    """How a ``Vocoder`` synthesises. ``sampler`` and ``steps`` have no library default (a model's diffusion section
    gives them: ``for_model``); ``max_batch`` None means ``MAX_BATCH`` of the device."""

    sampler: str
    steps: int
    refine: int = REFINE_ITERATIONS  # mel-consistency iterations after sampling (audio/refine.py); 0: off
    refine_momentum: float = REFINE_MOMENTUM  # fast Griffin-Lim momentum of those iterations; 0: plain
    precision: str = "auto"  # one of PRECISIONS
    graphs: bool = True  # replay whole sampling calls from CUDA graphs on a GPU
    kernel: bool = True  # the fused Triton layer kernel in bf16 on a GPU, the time-tiled layers on the CPU
    chunk_frames: int = CHUNK_FRAMES  # long mels are synthesised in chunks of this many frames
    overlap_frames: int = OVERLAP_FRAMES  # ... overlapping by at least this many, cross-faded
    max_batch: int | None = None  # chunks at once; peak memory grows with it
    check_mel_range: bool = True  # refuse mels whose values do not fit the model's convention

    def __post_init__(self):
        from audiodiff.diffusion.plan import check_sampler  # here, not at the top: this module imports no torch

        check_sampler(self.sampler)
        check_count("steps", self.steps)
        if isinstance(self.refine, bool) or not isinstance(self.refine, numbers.Integral) or self.refine < 0:
            raise AudiodiffError(f"refine must be a whole number of iterations >= 0 (0: off), got {self.refine!r}")
        m = self.refine_momentum
        if isinstance(m, bool) or not isinstance(m, numbers.Real) or not 0 <= m < 1:
            raise AudiodiffError(f"refine_momentum must lie in [0, 1) (0: plain iterations), got {m!r}")
        if self.precision not in PRECISIONS:
            raise AudiodiffError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("graphs", "kernel", "check_mel_range"):
            if not isinstance(getattr(self, name), bool):
                raise AudiodiffError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_count("chunk_frames", self.chunk_frames)
        if isinstance(self.overlap_frames, bool) or not isinstance(self.overlap_frames, numbers.Integral) \
                or not 0 <= 2 * self.overlap_frames < self.chunk_frames:
            raise AudiodiffError(f"need 0 <= 2 * overlap_frames < chunk_frames, got overlap_frames "
                                 f"{self.overlap_frames!r} and chunk_frames {self.chunk_frames!r}")
        if self.max_batch is not None:
            check_count("max_batch", self.max_batch)
        # Plain Python numbers (numpy's would not survive config.json), set once here: the value stays frozen.
        for name in ("steps", "refine", "chunk_frames", "overlap_frames", "max_batch"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "refine_momentum", float(self.refine_momentum))

    @classmethod
    def for_model(cls, diffusion, **settings) -> "SynthesisOptions":
        """The options for a model with diffusion section ``diffusion``; a setting given as None takes its default
        (the model's sampler and sample_steps, the library's for the rest)."""
        given = {k: v for k, v in settings.items() if v is not None}
        given.setdefault("sampler", diffusion.sampler)
        given.setdefault("steps", diffusion.sample_steps)
        return cls(**given)

    def replace(self, **changes) -> "SynthesisOptions":
        """A copy with ``changes``, validated like a new value."""
        return dataclasses.replace(self, **changes)

    def precision_on(self, device_type: str) -> str:
        """The precision sampling runs in on a device of ``device_type`` (``"fp32"`` or ``"bf16"``)."""
        return resolve_precision(self.precision, device_type)

    def max_batch_on(self, device_type: str) -> int:
        """Chunks synthesised at once on a device of ``device_type``."""
        return self.max_batch or MAX_BATCH.get(device_type, MAX_BATCH["cpu"])


NAMES = tuple(f.name for f in dataclasses.fields(SynthesisOptions))  # the Vocoder's settings, in order
