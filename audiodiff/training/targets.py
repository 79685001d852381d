"""What the denoiser learns from a batch: the noisy-sample inputs ``(x0, sigma, noise, cond)`` of one batch of crops.

``batch_inputs`` is the one path from a loader batch to the denoiser's arguments, for training and validation alike,
so the two never disagree. What ``x0`` and its conditioning are depends on the model's family (``families.py``):
the waveform crop ``[B, 1, N * hop]`` with its mel (and a shaped prior's transform, ``audio/prior.py``) for ``diffwave``, the crop's
log-mel image ``[B, 1, n_mels, N]`` for ``unet2d``. Class labels, with label dropout in training, are the same for
both.

Pairs (``data.pairs``): the batch also carries ``mel``, an acoustic model's mel of each crop (``data/pairs.py``), and
that is the conditioning (and so what a shaped prior is built from): the model learns to make the recording from the
mel it will be given at inference. ``Inputs.mel``, the auxiliary losses' target, stays the mel of the recording.

``mel_loss``: the auxiliary objective of FreGrad (Nguyen et al. 2024), WaveFit (Koizumi et al. 2022) and WaveFM
(2025): the L1 distance between the log-mel of the denoised estimate and the crop's own mel.
``stft_loss``: the multi-resolution STFT loss of Parallel WaveGAN (Yamamoto et al. 2020, eqs. 1-3): spectral
convergence plus log-magnitude L1 between the denoised estimate and the crop, averaged over three resolutions.
``auxiliary_loss``: both, weighted per example by noise level and by ``train.mel_loss`` / ``train.stft_loss``.
Written here rather than taken from auraloss (the maintained collection of such losses): the noise-level weighting
needs each example's value of both terms, and the whole loss is a dozen lines of ``torch.stft``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from audiodiff.config import Recipe
from audiodiff.diffusion.guidance import drop_labels
from audiodiff.families import family_of


class Inputs(NamedTuple):
    x0: torch.Tensor  # the clean sample, [B, 1, T] or [B, 1, n_mels, N]
    sigma: torch.Tensor  # [B] noise levels
    noise: torch.Tensor  # like x0
    cond: dict  # the backbone's conditioning keywords (mel, prior, class_labels)
    mel: torch.Tensor  # [B, n_mels, N], the mel of the crop's audio


def diffusion_inputs(recipe: Recipe, audio: torch.Tensor, mel: torch.Tensor, mel_fn) -> tuple[torch.Tensor, dict]:
    """``audio [B, 1, T]``, ``mel [B, n_mels, N]`` -> ``(x0, cond)`` of the model's family; no class labels."""
    return family_of(recipe.model).inputs(recipe, audio, mel, mel_fn)


def batch_inputs(recipe: Recipe, batch: dict, mel_fn, denoiser, gen: torch.Generator, device,
                 label_dropout: float | None = None) -> Inputs:
    """A loader batch (``audio [B, N * hop]``, ``segment`` (the crop with its mel context), ``label [B]``, and from
    pairs ``mel [B, n_mels, N]``, the conditioning) -> the denoiser's inputs. The draws from ``gen`` come in a fixed
    order: noise levels, noise, then (with ``label_dropout``) the labels dropped to the null class; without it the
    labels are used as they are."""
    audio = batch["audio"].to(device, non_blocking=True).unsqueeze(1)  # [B, 1, N * hop]
    segment = batch["segment"].to(device, non_blocking=True)
    with torch.no_grad():
        mel = mel_fn(segment, pad=False)  # [B, n_mels, N]
    sigma = denoiser.sample_training_sigma(audio.shape[0], generator=gen)
    # From pairs the model is conditioned on the acoustic model's mel; the auxiliary mel loss's target (Inputs.mel)
    # remains the mel of the real audio, which is what the denoised estimate should match.
    given = batch["mel"].to(device, non_blocking=True) if "mel" in batch else mel
    x0, cond = diffusion_inputs(recipe, audio, given, mel_fn)
    noise = torch.randn(x0.shape, generator=gen, device=device)
    if recipe.model.num_classes:  # drawn after the noise: the waveform path's random stream is unchanged
        labels = batch["label"].to(device)
        cond["class_labels"] = labels if label_dropout is None else drop_labels(labels, label_dropout, gen)
    return Inputs(x0, sigma, noise, cond, mel)


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
