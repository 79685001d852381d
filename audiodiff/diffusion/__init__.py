"""The shared diffusion core: schedules, the preconditioning wrapper and loss, noise-level plans, samplers and
classifier-free guidance.

It knows tensors, never architectures: the 1-D DiffWave and the 2-D U-Net plug in through ``Denoiser``.
"""

from audiodiff.diffusion.denoiser import Denoiser
from audiodiff.diffusion.guidance import NULL_LABEL, drop_labels, guided
from audiodiff.diffusion.plan import fast_betas, sigmas_for
from audiodiff.diffusion.samplers import (
    SAMPLERS,
    prior,
    sample_ancestral,
    sample_ddim,
    sample_dpmpp_2m,
    sample_heun,
    sample_pc,
    with_grad,
)
from audiodiff.diffusion.schedules import (
    DiscreteSchedule,
    append_dims,
    cosine_betas,
    explicit_betas,
    karras_sigmas,
    linear_betas,
    loglinear_sigmas,
    make_betas,
)

__all__ = [
    "NULL_LABEL", "SAMPLERS", "Denoiser", "DiscreteSchedule", "append_dims", "cosine_betas", "drop_labels",
    "explicit_betas", "fast_betas", "guided", "karras_sigmas", "linear_betas", "loglinear_sigmas", "make_betas",
    "prior", "sample_ancestral", "sample_ddim", "sample_dpmpp_2m", "sample_heun", "sample_pc", "sigmas_for",
    "with_grad",
]
