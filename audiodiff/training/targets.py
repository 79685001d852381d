"""What the denoiser learns from a batch: the clean sample ``x0`` and its conditioning, per architecture.

``diffwave``: ``x0`` is the waveform crop ``[B, 1, N * hop]``, conditioned on its mel unless unconditional.
``unet2d``: ``x0`` is the crop's log-mel as an image (``audio/spectro_image.py``) ``[B, 1, n_mels, N]``, with no mel
conditioning. Class labels (with label dropout in training) are added by the caller for both.
A waveform model with a shaped prior (``diffusion.prior``) also gets the prior's transform (``audio/prior.py``).
Training and validation both call this, so the two never disagree.

``mel_loss``: the auxiliary objective of FreGrad (Nguyen et al. 2024), WaveFit (Koizumi et al. 2022) and WaveFM
(2025): the L1 distance between the log-mel of the denoised estimate and the crop's own mel.
``stft_loss``: the multi-resolution STFT loss of Parallel WaveGAN (Yamamoto et al. 2020, eqs. 1-3): spectral
convergence plus log-magnitude L1 between the denoised estimate and the crop, averaged over three resolutions.
``auxiliary_loss``: both, weighted per example by noise level and by ``train.mel_loss`` / ``train.stft_loss``.
"""

from __future__ import annotations

import torch

from audiodiff.audio.prior import MelPrior
from audiodiff.audio.spectro_image import MelImage
from audiodiff.config import Recipe
from audiodiff.errors import AudiodiffError


def check_image_crops(recipe: Recipe) -> None:
    """A U-Net is trained on tiles of ``model.image_frames`` frames: the crops must have that width."""
    if recipe.model.arch == "unet2d" and recipe.data.crop_frames != recipe.model.image_frames:
        raise AudiodiffError(f"data.crop_frames ({recipe.data.crop_frames}) must equal model.image_frames "
                             f"({recipe.model.image_frames}) for arch unet2d; set data.crop_frames: "
                             f"{recipe.model.image_frames}")


def diffusion_inputs(recipe: Recipe, audio: torch.Tensor, mel: torch.Tensor, mel_fn) -> tuple[torch.Tensor, dict]:
    """``audio [B, 1, T]``, ``mel [B, n_mels, N]`` -> ``(x0, cond)``; the caller adds ``class_labels``."""
    if recipe.model.arch == "unet2d":
        image = MelImage.for_mel(recipe.mel, recipe.model.image_frames).to_image(mel)
        return image.unsqueeze(1), {}  # [B, 1, n_mels, N]
    if not recipe.model.conditional:
        return audio, {}
    shaped = MelPrior.from_config(recipe.diffusion, mel_fn)
    return audio, ({"mel": mel} if shaped is None else {"mel": mel, "prior": shaped(mel)})


def mel_loss(mel_fn, x0_hat: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Per-example log-mel L1 of the denoised waveform ``x0_hat [B, 1, N * hop]`` against its crop's mel
    ``[B, n_mels, N]``. Frames whose window reaches into the reflect padding (which the crop's mel replaced with
    real context) are left out."""
    hop, edge = mel_fn.config.hop_length, max(mel_fn.config.pad)
    mel_hat = mel_fn(x0_hat[:, 0].float())  # [B, n_mels, N]
    k = -(-edge // hop) if mel.shape[-1] > 2 * -(-edge // hop) else 0
    err = (mel_hat - mel.float()).abs()[..., k: mel.shape[-1] - k]
    return err.flatten(1).mean(1)


STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft = window length, hop); Hann windows


def _stft_magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True)
    return (spec.real.square() + spec.imag.square()).clamp(min=1e-7).sqrt()  # [B, bins, frames] (PWG's floor)


def stft_loss(x0_hat: torch.Tensor, x0: torch.Tensor, resolutions=STFT_RESOLUTIONS) -> torch.Tensor:
    """Per-example multi-resolution STFT loss of ``x0_hat`` against ``x0`` (both ``[B, 1, T]``): at each
    resolution the spectral convergence ``|| |X| - |X_hat| ||_F / || |X| ||_F`` plus the mean L1 of the log
    magnitudes, averaged over the resolutions (Parallel WaveGAN)."""
    with torch.autocast(x0.device.type, enabled=False):
        x, x_hat = x0[:, 0].float(), x0_hat[:, 0].float()
        total = torch.zeros(x.shape[0], device=x.device)
        for n_fft, hop in resolutions:
            mag, mag_hat = _stft_magnitude(x, n_fft, hop), _stft_magnitude(x_hat, n_fft, hop)
            sc = (mag - mag_hat).flatten(1).norm(dim=1) / mag.flatten(1).norm(dim=1)
            log_l1 = (mag.log() - mag_hat.log()).abs().flatten(1).mean(1)
            total = total + sc + log_l1
        return total / len(resolutions)


def auxiliary_loss(recipe: Recipe, mel_fn, x0_hat: torch.Tensor, x0: torch.Tensor, mel: torch.Tensor,
                   sigma: torch.Tensor) -> torch.Tensor:
    """The batch's weighted auxiliary losses on the denoised estimate ``x0_hat`` (a scalar; 0 with both off).

    Each example's losses are weighted by ``1 / (1 + (sigma / train.mel_loss_sigma)^2)``, with 1.0 the signal's
    share ``alpha^2`` of ``x_t``: at high noise no estimate can match the crop, and the error of ``x0_hat`` grows
    with sigma (``x0_hat = x - sigma eps_hat``). Then ``train.mel_loss`` and ``train.stft_loss`` weigh each."""
    t = recipe.train
    total = torch.zeros((), device=x0.device)
    scale = 1 + (sigma.float() / t.mel_loss_sigma).square()  # [B]
    if t.mel_loss:
        total = total + t.mel_loss * (mel_loss(mel_fn, x0_hat, mel) / scale).mean()
    if t.stft_loss:
        total = total + t.stft_loss * (stft_loss(x0_hat, x0) / scale).mean()
    return total
