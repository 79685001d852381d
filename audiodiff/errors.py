"""User-facing errors: one line that names what was wrong, what was expected and how to fix it.

The CLI prints these without a traceback (unless ``--debug``) and exits non-zero; library users catch
``AudiodiffError`` (a ``ValueError``) like any other bad-argument error.
"""

from __future__ import annotations

import difflib
import numbers

SEED_MAX = 2**63 - 1  # seeds become int64 tensors (diffusion/noise.py) and torch.Generator seeds


class AudiodiffError(ValueError):
    """Bad input or configuration that the user can fix; the message says how."""


def check_options(given, valid, where: str) -> None:
    """Refuse keyword arguments ``given`` (names) that are not in ``valid``, suggesting the closest one."""
    unknown = [k for k in given if k not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(valid), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise AudiodiffError(f"{where}: unknown option {unknown[0]!r}{hint}; valid options: {', '.join(valid)}")


def check_count(name: str, value) -> int:
    """``value`` as an int >= 1 (steps, frames, batch sizes), or one line naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise AudiodiffError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def check_seed(seed) -> int:
    """``seed`` as an int in [0, 2**63 - 1], or one line saying what a seed must be."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= SEED_MAX:
        raise AudiodiffError(f"seed must be a whole number in [0, 2**63 - 1], got {seed!r}; pass e.g. seed=0")
    return int(seed)
