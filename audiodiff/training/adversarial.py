"""The adversarial losses of few-step fine-tuning: least-squares GAN and feature matching (HiFi-GAN's).

Least squares (Mao et al. 2017, LSGAN; HiFi-GAN, Kong et al. 2020, eqs. 1-2): the discriminator minimises
``(D(x) - 1)^2 + D(G(s))^2``, the generator ``(D(G(s)) - 1)^2``, each averaged over the logit map of a
sub-discriminator and summed over the sub-discriminators. Feature matching (HiFi-GAN eq. 3, from MelGAN): the L1
distance between the discriminator's activations on real and generated audio, averaged over each layer's elements and
summed over the layers; the real activations are targets (no gradient). HiFi-GAN weighs it by 2 and the mel loss by
45; the weights are the recipe's (``fewstep.fm_weight``, ``fewstep.mel_weight``, ``config.py``), and the mel and STFT
losses are ``training/targets.py``'s.

Every loss returns one value per example ``[B]``; the caller reduces.
"""

from __future__ import annotations

import torch


def _per_example(x: torch.Tensor) -> torch.Tensor:
    return x.float().flatten(1).mean(1)  # [B]


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN discriminator loss ``sum_k mean (D_k(x) - 1)^2 + mean D_k(G(s))^2`` per example, from the logit maps of
    the real and the generated audio (``fake`` computed on detached audio)."""
    return sum(_per_example((r - 1).square()) + _per_example(f.square()) for r, f in zip(real, fake, strict=True))


def generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator loss ``sum_k mean (D_k(G(s)) - 1)^2`` per example."""
    return sum(_per_example((f - 1).square()) for f in fake)


def feature_matching_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """``sum_l mean |D^l(x) - D^l(G(s))|`` per example over every feature map ``l``; the real maps are targets."""
    return sum(_per_example((r.detach() - f).abs()) for r, f in zip(real, fake, strict=True))


def split_batch(outputs, n: int):
    """``(logits, features)`` of a discriminator run on ``[real; fake]`` (``2n`` examples) -> the real and the fake
    halves, each ``(logits, features)``."""
    logits, features = outputs
    return ([x[:n] for x in logits], [x[:n] for x in features]), ([x[n:] for x in logits], [x[n:] for x in features])
