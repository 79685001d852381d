"""A time-varying zero-phase filter applied by STFT multiplication and overlap-add, tied to the mel's frames: the
linear map ``L`` of SpecGrad's noise (Koizumi et al., Interspeech 2022, section 3: ``L = G^+ D G`` with ``G`` an
STFT, ``D`` the per-frame filter, ``G^+`` its inverse), with an exact inverse by iteration.

Frames: ``n = 4 hop`` samples, Hann windows for analysis and synthesis, hop ``hop``; frame ``f`` is centred on
sample ``(f + 1/2) hop``, the centre the mel upsampler gives mel frame ``f``, and takes that frame's magnitude
response. Frames ``-2 .. F+1`` cover every sample of a ``F * hop``-sample signal four times (edge frames take the
edge responses; samples outside the signal are zeros), and the squared Hann windows at a quarter-frame shift sum to
exactly 3/2, so a response of 1 gives ``L = I``. Each output sample depends only on the input within ``4 hop``
samples and on the responses of the frames around it: a chunk of frames ``[a, e)``, given the slice ``[a, e)`` of
the whole signal's responses, computes the whole's samples except within four frames of its edges.

The response is real and positive (zero phase), so ``L = G^T D G / (3/2)`` is symmetric positive definite with its
spectrum inside ``[min D, max D]``, and Gaussian noise ``L z`` has covariance ``L^2``: per frame, about the power
spectrum ``D^2``. SpecGrad designs minimum-phase filters instead; for Gaussian noise only ``|D|`` matters, and zero
phase keeps ``L`` symmetric, which the inverse needs. The inverse (``whiten``) solves ``L w = x`` by conjugate gradients
preconditioned with ``P``, the same filter with response ``1 / D`` (SpecGrad's approximate inverse ``G^+ D^-1 G``,
exact only where the response does not change between frames; plain Richardson iteration on it diverges on
speech, where ``P L`` has eigenvalues above 2).
"""

from __future__ import annotations

import torch

WHITEN_ITERATIONS = 16  # |x - L whiten(x)| / |x| 3e-6 across abrupt changes of the envelope, where 8 leave 1e-3


class FrameFilter:
    """``L``: the filter of magnitude response ``gains [B, n // 2 + 1, F]`` (one column per mel frame, ``n = 4
    hop``) on signals ``[B, 1, F * hop]``. ``apply(z) = L z``; ``whiten(x) = L^-1 x``."""

    def __init__(self, gains: torch.Tensor, hop: int):
        self.gains, self.hop, self.n = gains, hop, 4 * hop
        if gains.shape[-2] != self.n // 2 + 1:
            raise ValueError(f"gains have {gains.shape[-2]} bins; a hop of {hop} needs {self.n // 2 + 1}")

    def _filter(self, x: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        hop, n, F = self.hop, self.n, gains.shape[-1]
        if T != F * hop or C != 1:
            raise ValueError(f"signal {tuple(x.shape)} does not match {F} frames of hop {hop}: expected [B, 1, "
                             f"{F * hop}]")
        with torch.autocast(x.device.type, enabled=False):
            left = n - hop // 2  # frame -2 starts at -2 hop + hop // 2 - 2 hop
            xp = torch.nn.functional.pad(x[:, 0].float(), (left, 3 * hop + hop // 2))  # [B, (F + 7) hop]
            window = torch.hann_window(n, device=x.device)
            frames = xp.unfold(-1, n, hop)  # [B, F + 4, n]: frames -2 .. F + 1
            index = (torch.arange(F + 4, device=x.device) - 2).clamp(0, F - 1)
            response = gains.float().index_select(-1, index).transpose(-1, -2)  # [B, F + 4, n // 2 + 1]
            out = torch.fft.irfft(torch.fft.rfft(frames * window) * response, n) * window  # [B, F + 4, n]
            # Overlap-add: quarter q of frame j lands on samples [(j + q) hop, (j + q + 1) hop) of xp.
            L = F + 4
            y = sum(torch.nn.functional.pad(out[..., q * hop:(q + 1) * hop].reshape(B, L * hop),
                                            (q * hop, (3 - q) * hop)) for q in range(4))
            return (y[:, left:left + T] / 1.5).unsqueeze(1).to(x.dtype)

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        """``L z``: white noise ``z`` to noise with the per-frame power spectrum ``gains^2``."""
        return self._filter(z, self.gains)

    def whiten(self, x: torch.Tensor, iterations: int = WHITEN_ITERATIONS) -> torch.Tensor:
        """``L^-1 x`` by conjugate gradients preconditioned with ``P`` (module docstring), per example."""
        inverse = 1 / self.gains

        def dot(a, b):
            return (a * b).sum(dim=(1, 2), keepdim=True)  # [B, 1, 1]

        w = self._filter(x, inverse)
        r = x - self.apply(w)
        z = self._filter(r, inverse)
        p, rz = z, dot(r, z)
        for _ in range(iterations):
            q = self.apply(p)
            step = rz / dot(p, q).clamp(min=torch.finfo(x.dtype).tiny)
            w, r = w + step * p, r - step * q
            z = self._filter(r, inverse)
            rz_next = dot(r, z)
            p, rz = z + rz_next / rz.clamp(min=torch.finfo(x.dtype).tiny) * p, rz_next
        return w
