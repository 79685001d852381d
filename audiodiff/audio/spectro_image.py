"""Log-mel spectrograms as images in ``[-1, 1]`` for the 2-D U-Net, and the exact way back to the vocoder's mel.

The mel is the one of ``audio/mel.py`` (same presets), so a generated image maps back to what the vocoder reads.

Range (fixed, so every model and every tile shares one scale):
- ``log = "ln"`` (hifigan-style): ``m = ln(max(mel, 1e-5))`` is clamped to ``[ln 1e-5, LN_MAX]`` with
  ``LN_MAX = 2.5`` (about the loudest bands of speech or music normalised to peak 1; louder bands saturate), then
  ``image = 2 (m - lo) / (hi - lo) - 1``. The floor ``ln 1e-5`` is the front end's own floor, so silence is ``-1``.
- ``log = "diffwave"``: the mel already lies in ``[0, 1]``; ``image = 2 m - 1``.
The inverse ``to_mel`` clamps the image to ``[-1, 1]`` and undoes the affine map; inside the range the round trip is
exact up to floating-point rounding (computed in float64).

Tiles: a mel ``[n_mels, F]`` is cut into ``ceil(F / frames)`` non-overlapping tiles of ``frames`` frames, starting
at frame 0; the last tile is padded on the right with the floor value (image ``-1``, i.e. silence). ``stitch``
concatenates tiles along time and crops to the requested length, so ``stitch(tiles(mel), F) == mel`` in the range.
"""

from __future__ import annotations

import math

import torch

from audiodiff.audio.mel import MelConfig
from audiodiff.errors import AudiodiffError

# The mel front end's floor ln(1e-5), rounded to float32 as the front end computes it, so silence maps to exactly -1.
LN_MIN = float(torch.tensor(math.log(1e-5), dtype=torch.float32))
LN_MAX = 2.5


class MelImage:
    """Map a log-mel ``[..., n_mels, F]`` to an image in ``[-1, 1]`` and back; cut and stitch ``frames``-frame tiles."""

    def __init__(self, log: str = "ln", frames: int = 64, lo: float | None = None, hi: float | None = None):
        if log not in ("ln", "diffwave"):
            raise AudiodiffError(f"mel image: unknown log compression {log!r}; expected 'ln' or 'diffwave'")
        default = (LN_MIN, LN_MAX) if log == "ln" else (0.0, 1.0)
        self.lo = default[0] if lo is None else float(lo)
        self.hi = default[1] if hi is None else float(hi)
        if not self.hi > self.lo:
            raise AudiodiffError(f"mel image: need hi > lo, got lo={self.lo}, hi={self.hi}")
        if frames < 1:
            raise AudiodiffError(f"mel image: frames must be at least 1, got {frames}")
        self.frames = frames

    @classmethod
    def for_mel(cls, mel: MelConfig, frames: int = 64) -> "MelImage":
        """The image map for the front end ``mel`` (its ``log`` setting picks the range)."""
        return cls(mel.log, frames)

    def to_image(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., n_mels, F]`` -> image ``[..., n_mels, F]`` in ``[-1, 1]`` (same dtype)."""
        m = mel.double().clamp(self.lo, self.hi)
        return (2 * (m - self.lo) / (self.hi - self.lo) - 1).to(mel.dtype)

    def to_mel(self, image: torch.Tensor) -> torch.Tensor:
        """Image ``[..., n_mels, F]`` (clamped to ``[-1, 1]``) -> log-mel on the vocoder's scale (same dtype)."""
        x = image.double().clamp(-1.0, 1.0)
        return ((x + 1) / 2 * (self.hi - self.lo) + self.lo).to(image.dtype)

    def tiles(self, image: torch.Tensor) -> torch.Tensor:
        """Image ``[n_mels, F]`` -> ``[ceil(F / frames), 1, n_mels, frames]``, the last tile padded with ``-1``."""
        if image.ndim != 2:
            raise AudiodiffError(f"mel image tiles: expected [n_mels, frames], got shape {tuple(image.shape)}")
        n = max(1, math.ceil(image.shape[-1] / self.frames))
        padded = torch.nn.functional.pad(image, (0, n * self.frames - image.shape[-1]), value=-1.0)
        return padded.reshape(image.shape[0], n, self.frames).permute(1, 0, 2).unsqueeze(1)

    def stitch(self, tiles: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """``[N, 1, n_mels, frames]`` -> image ``[n_mels, length]`` (default ``N * frames``), tiles side by side."""
        if tiles.ndim != 4 or tiles.shape[1] != 1:
            raise AudiodiffError(f"mel image stitch: expected [N, 1, n_mels, frames], got {tuple(tiles.shape)}")
        image = torch.cat(list(tiles[:, 0]), dim=-1)  # [n_mels, N * frames]
        return image if length is None else image[:, :length]
