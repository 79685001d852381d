"""The values a log-mel of the front end (``audio/mel.py``) can hold, and the likely convention of a mel that holds
others: a dB, log10, [0, 1] or linear-magnitude mel is refused with one line instead of vocoded into loud noise.

Bounds for audio in [-1, 1], from the front end's arithmetic (window ``w``, filterbank rows ``f_m``, ``N = n_fft``):
- floor: the compression's clamp, ``ln(1e-5) = -11.513`` for ``log: ln`` (digital silence sits exactly there), 0
  for ``log: diffwave`` (clamped to [0, 1]);
- ceiling (``ln``): every bin has ``|X_k| <= sum(w)``, and ``sum_k |X_k|^2 <= N sum(w^2)`` (Parseval), so band
  ``m`` is at most ``min(sum(w) sum_k f_m[k], ||f_m|| sqrt(N sum(w^2)))`` (plus ``sqrt(mag_eps) sum_k f_m[k]``);
  the ceiling is the log of the largest band's bound: 2.97 for the ``hifigan`` preset, whose loudest full-scale
  sine reaches 2.27. ``diffwave``: 1, the clamp;
- noise level (``ln``): full-scale white noise of +-1 samples, the loudest signal spread evenly over the spectrum,
  has ``E|X_k| = sqrt(pi / 4 sum(w^2))`` in each bin; the level of its loudest band is -0.16 for ``hifigan``. A mel
  with every value above that level has no quiet band in any frame, as no recording has: a [0, 1] or linear mel.
Accepted: ``[floor - MARGIN, ceiling + MARGIN]``, ``MARGIN`` = 2 nats (17 dB) of room for an acoustic model's error;
inside that, a ``ln`` mel clamped well above the floor (a plateau at its minimum) is a log10 mel.

Every other convention (the presets of ``audio/presets.py``: log10, dB, Coqui's normalised dB, a log guard added
rather than clamped, per-band statistics, power mels) gets the same two bounds in its own units: the compression
(``mel.compress``) of silence and of each band's largest value (for power mels the looser
``sum(w)^p sum_k f_m[k]``), over all bands, with the margin of 2 nats taken in those units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from audiodiff.errors import AudiodiffError

LN_FLOOR = math.log(1e-5)  # -11.513
DB_PER_NAT = 20 / math.log(10)  # 8.686 dB of magnitude per nat
MARGIN = 2.0  # nats; 2 * 8.686 / 100 = 0.174 on the diffwave scale
PLATEAU = 0.01  # share of values at the minimum that marks a clamp
REMAKE = "remake it with this model's front end (`audiodiff mel IN OUT.npy --model MODEL`)"
SKIP = "to vocode it anyway pass check_mel_range=False (synth: --no-mel-check)"


@dataclass(frozen=True)
class MelRange:
    """The values a front end's log-mel can take (see the module docstring); ``noise`` only for ``log: ln``."""

    log: str  # "ln" (the hifigan convention), "diffwave", or "other" (any other: name says which)
    floor: float
    ceiling: float
    noise: float | None = None
    units: float | None = None  # "other": MARGIN in the convention's units
    name: str = ""

    @property
    def margin(self) -> float:
        if self.units is not None:
            return self.units
        return MARGIN if self.log == "ln" else MARGIN * DB_PER_NAT / 100

    @property
    def lo(self) -> float:
        return self.floor - self.margin

    @property
    def hi(self) -> float:
        return self.ceiling + self.margin

    def describe(self) -> str:
        if self.log == "other":
            return (f"mels of its own front end ({self.name}: from {self.floor:.3g} for silence to at most "
                    f"{self.ceiling:.3g} for audio in [-1, 1])")
        if self.log == "ln":
            return (f"natural-log mels (the hifigan convention, ln(max(magnitude, 1e-5)): {self.floor:.2f} for "
                    f"silence, at most {self.ceiling:.2f} for audio in [-1, 1])")
        return "[0, 1] mels (the diffwave preset, (20 log10(max(magnitude, 1e-5)) + 80) / 100 clamped)"



def _classic(c) -> bool:
    """The hifigan convention, which the checks below know the other conventions' look of."""
    return (c.log == "ln" and c.mean is None and c.log_floor == 1e-5 and c.log_guard == "clamp"
            and c.mag_power == 1.0)


def _name(c) -> str:
    parts = [c.log if c.log != "db" else f"dB re {c.db_ref:g}"]
    if c.db_norm:
        parts.append(f"{c.db_norm} normalisation")
    if c.mean is not None:
        parts.append("mean-variance statistics")
    if c.mag_power != 1.0:
        parts.append(f"magnitude^{c.mag_power:g}")
    return ", ".join(parts)


def _band_bound(mel_fn) -> torch.Tensor:
    """Each band's largest linear value for audio in [-1, 1] ``[n_mels]`` (the module docstring)."""
    c = mel_fn.config
    fb = mel_fn.fbank.detach().double().cpu()  # [n_mels, bins]
    w = mel_fn.window.detach().double().cpu()
    energy = float(w.square().sum())
    norm = math.sqrt(energy) if c.normalized else 1.0
    if c.mag_power != 1.0:
        return fb.sum(1) * ((float(w.sum()) + math.sqrt(c.mag_eps)) / norm) ** c.mag_power
    bound = torch.minimum(float(w.sum()) * fb.sum(1), fb.norm(dim=1) * math.sqrt(c.n_fft * energy))
    return (bound + math.sqrt(c.mag_eps) * fb.sum(1)) / norm


def mel_range(mel_fn) -> MelRange:
    """The ``MelRange`` of a ``MelSpectrogram`` module, from its window and filterbank."""
    from audiodiff.audio.mel import compress

    c = mel_fn.config
    if c.log == "diffwave":
        return MelRange("diffwave", 0.0, 1.0)
    bound = _band_bound(mel_fn)
    if not _classic(c):
        squeeze = lambda x: compress(x[:, None], c)[:, 0]  # noqa: E731  (per band: the statistics are per band)
        floor, top = squeeze(torch.zeros_like(bound)), squeeze(bound)
        margin = float((squeeze(bound * math.exp(MARGIN)) - top).abs().max())  # 2 nats in this convention's units
        return MelRange("other", float(floor.min()), float(top.max()), units=margin, name=_name(c))
    noise = mel_fn.noise_band_mean()  # full-scale noise of +-1 samples has unit variance
    return MelRange("ln", LN_FLOOR, math.log(max(float(bound.max()), 1e-5)),
                    math.log(max(float(noise.max()), 1e-5)))


def check_mel_range(mel: torch.Tensor, rng: MelRange) -> None:
    """Refuse a finite ``mel`` (any shape) whose values do not fit ``rng``, naming the likely convention and the fix."""
    mn, mx = torch.stack(torch.aminmax(mel.detach().float())).tolist()  # one host synchronisation
    if rng.log == "other":
        problem = _other_problem(mn, mx, rng)
    else:
        problem = _ln_problem(mel, mn, mx, rng) if rng.log == "ln" else _diffwave_problem(mn, mx, rng)
    if problem:
        seen, fix = problem
        raise AudiodiffError(f"{seen}; this model expects {rng.describe()}; {fix}; {SKIP}")


def _ln_problem(mel: torch.Tensor, mn: float, mx: float, rng: MelRange) -> tuple[str, str] | None:
    from_db = f"convert dB of magnitude with np.maximum(mel / {DB_PER_NAT:.3f}, {rng.floor:.3f}) or {REMAKE}"
    if mn > rng.noise:
        if mx <= 1 + MARGIN * DB_PER_NAT / 100:
            return (f"mel values all lie in [{mn:.3g}, {mx:.3g}], no band ever near silence: it looks like a [0, 1] "
                    f"mel (the diffwave preset)", REMAKE)
        return (f"mel values are all at least {mn:.3g} (up to {mx:.3g}), no band ever near silence: it looks like a "
                f"linear magnitude mel", f"take np.log(np.maximum(mel, 1e-5)) or {REMAKE}")
    if mn < rng.lo:
        return f"mel values reach {mn:.3g}, below the floor ln(1e-5) = {rng.floor:.2f}: it looks like a dB mel", from_db
    if mx > rng.hi:
        return (f"mel values reach {mx:.3g}, above what audio in [-1, 1] gives: it looks like a dB mel", from_db)
    if mn > rng.floor + 1 and mx > mn + 1:
        share = float((mel <= mn).float().mean())
        if share >= PLATEAU:
            return (f"mel values are clamped at {mn:.3g} ({share:.0%} of them), not at the floor ln(1e-5) = "
                    f"{rng.floor:.2f}: it looks like a log10 mel floored at {10 ** mn:.2g}",
                    f"multiply it by ln(10) = 2.303 or {REMAKE}")
    return None


def _diffwave_problem(mn: float, mx: float, rng: MelRange) -> tuple[str, str] | None:
    if mn < rng.lo and mn >= LN_FLOOR - MARGIN:
        return f"mel values span [{mn:.3g}, {mx:.3g}]: it looks like a natural-log mel (the hifigan preset)", REMAKE
    if mn < rng.lo:
        return (f"mel values reach {mn:.3g}, below 0: it looks like a dB mel",
                f"convert dB of magnitude with np.clip((mel + 80) / 100, 0, 1) or {REMAKE}")
    if mx > rng.hi:
        return (f"mel values reach {mx:.3g}, above 1: it looks like a linear magnitude mel",
                f"take np.clip((20 * np.log10(np.maximum(mel, 1e-5)) + 80) / 100, 0, 1) or {REMAKE}")
    return None


def _other_problem(mn: float, mx: float, rng: MelRange) -> tuple[str, str] | None:
    convert = f"convert it with audiodiff.audio.convert (synth: --mel-preset NAME) or {REMAKE}"
    if mn < rng.lo:
        return f"mel values reach {mn:.3g}, below what silence gives ({rng.floor:.3g})", convert
    if mx > rng.hi:
        return f"mel values reach {mx:.3g}, above what audio in [-1, 1] gives ({rng.ceiling:.3g})", convert
    return None
