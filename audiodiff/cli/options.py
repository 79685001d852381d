"""The options that several commands share: the seed type, the sampler choice, and the ``--steps``/``--sampler``,
``--precision``, ``--max-batch`` and ``--refine`` decorators of synth, eval and generate.

Choices and defaults come from the library (``audiodiff.inference.options``, ``diffusion.SAMPLERS``) without
importing torch at import time, so that ``audiodiff --help`` starts fast.
"""

from __future__ import annotations

import click

from audiodiff.inference import options as synthesis  # no torch: choices and defaults of the inference options

SEED = click.IntRange(0, 2**63 - 1)


class SamplerChoice(click.Choice):
    """``click.Choice`` of ``diffusion.SAMPLERS``, read when first needed (parsing, help) rather than at import:
    the samplers' module imports torch, which would add seconds to every command's start."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self):
        from audiodiff.diffusion import SAMPLERS

        return tuple(sorted(SAMPLERS))

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns the (empty) tuple given above
        pass


def sampling_options(command):
    """``--steps`` and ``--sampler`` of synth, eval and generate: this run's, over the model's own."""
    command = click.option("--sampler", type=SamplerChoice(),
                           help="Sampler (docs/samplers.md) [default: the model's].")(command)
    return click.option("--steps", type=click.IntRange(min=1), help="Sampling steps [default: the model's].")(command)


def precision_option(command):
    """``--precision`` of synth and eval (``SynthesisOptions.precision``)."""
    return click.option("--precision", type=click.Choice(synthesis.PRECISIONS), default="auto", show_default=True,
                        help="auto: bf16 on a GPU, fp32 on the CPU. fp32 on a GPU is the slow reference path.")(command)


def max_batch_option(command):
    """``--max-batch``: how many chunks of a long mel synth and eval run at once (``Vocoder.max_batch``)."""
    mb = synthesis.MAX_BATCH
    return click.option(
        "--max-batch", type=click.IntRange(min=1),
        help=f"Mel chunks ({synthesis.CHUNK_FRAMES} frames) synthesised at once; peak memory grows with it, about "
             f"0.8 GiB a chunk for the bundled model on the CPU [default: {mb['cuda']} on a GPU, {mb['cpu']} on "
             f"the CPU].")(command)


def refine_options(command):
    """``--refine`` and ``--refine-momentum``: the mel-consistency refinement of synth and eval."""
    command = click.option(
        "--refine-momentum", type=click.FloatRange(0, 1, max_open=True),
        help=f"Momentum of the refinement iterations, as in fast Griffin-Lim (0: plain) [default: the model's, "
             f"else {synthesis.REFINE_MOMENTUM}].")(command)
    return click.option(
        "--refine", type=click.IntRange(min=0),
        help=f"Mel-consistency iterations after sampling (0: the raw diffusion output) [default: the model's, else "
             f"{synthesis.REFINE_ITERATIONS}].")(command)
