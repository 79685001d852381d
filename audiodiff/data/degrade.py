"""Mels degraded the way acoustic models degrade them, to measure fine-tuning on acoustic-model output without an
acoustic model (``bench/degraded_mels.py``; docs/interop.md, "Fine-tuning on acoustic-model output").

An acoustic model trained with an L1 or L2 loss on mels predicts something near their conditional mean: its mels are
smoother in time and frequency than the recording's (the "over-smoothness" of Ren et al., "Revisiting Over-Smoothness
in Text to Speech", ACL 2022), a little off in level and contrast, and wrong in details that vary smoothly. The
degradation, on the natural log of the linear mel ``x = ln m`` (so that its arguments mean the same in every
convention; ``audio/mel.py`` ``decompress`` and ``compress`` map from and back to the convention's values)::

    y = gain * G(x + noise * z) + offset

``G``: a separable Gaussian blur of ``time_sigma`` frames and ``freq_sigma`` bands (reflected at the edges; 0: none);
``z``: white noise from ``seed``, blurred with the rest, so that its errors are smooth as a model's are; ``gain``
multiplies the log (below 1 it narrows the dynamic range, as regression to the mean does); ``offset`` a level in nats
(0.1 is +0.87 dB). The convention's floor and clipping then apply as they do to a real mel.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from audiodiff.audio.mel import MelConfig, compress, decompress


def degrade_mel(mel: np.ndarray, config: MelConfig, *, time_sigma: float = 1.0, freq_sigma: float = 1.0,
                gain: float = 0.95, offset: float = 0.1, noise: float = 0.2, seed: int = 0) -> np.ndarray:
    """``mel [n_mels, frames]`` in the convention ``config`` -> the degraded mel of the same shape and convention
    (module docstring); the same arguments and ``seed`` give the same mel."""
    mel = np.asarray(mel)
    if mel.ndim != 2 or mel.shape[0] != config.n_mels:
        raise ValueError(f"mel of shape {mel.shape}; expected [{config.n_mels}, frames]")
    x = decompress(torch.from_numpy(mel.astype(np.float64)), config).clamp(min=1e-12).log().numpy()  # [M, F] nats
    if noise:
        x = x + noise * np.random.default_rng(seed).standard_normal(x.shape)
    if time_sigma or freq_sigma:
        x = gaussian_filter(x, sigma=(freq_sigma, time_sigma), mode="reflect")
    y = gain * x + offset
    return compress(torch.from_numpy(np.exp(y)), config).float().numpy()


def frame_variation(mel: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of ``mel [n_mels, frames]``: what a blur over time lowers."""
    return float(np.abs(np.diff(np.asarray(mel, np.float64), axis=-1)).mean())
