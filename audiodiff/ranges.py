"""Valid values of config fields, declared on the fields themselves: ``n_fft: Annotated[int, Range(1)] = 1024``.

``Range`` bounds a number (each item of a tuple field), ``OneOf`` lists the allowed values of a string; relations
between fields (``beta_start < beta_end``, ``fmax <= sample_rate / 2``, the model's size) are functions in a class's
``RULES``, each returning an error message or ``None``. Nothing here validates by itself: ``config._build`` reads
these declarations and checks every recipe, run ``config.yaml`` and exported ``config.json`` in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (``<`` where open); ``None``: unbounded on that side. Floats must also be finite."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""  # what a boundary value means, e.g. "0 keeps every checkpoint"

    def problem(self, value) -> str | None:
        """Why ``value`` is out of range (``"is out of range; expected ..."``), or ``None``."""
        if value is None:
            return None
        for v in value if isinstance(value, tuple) else (value,):
            finite = not isinstance(v, float) or math.isfinite(v)
            below = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
            above = self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi)
            if not finite or below or above:
                what = "each item" if isinstance(value, tuple) else "an integer" if isinstance(v, int) else "a number"
                note = f" ({self.note})" if self.note else ""
                return f"is out of range; expected {what} {self.describe()}{note}"
        return None

    def describe(self) -> str:
        lo, hi = _number(self.lo), _number(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        return f"{'<' if self.hi_open else '<='} {hi}"


@dataclass(frozen=True)
class OneOf:
    """One of ``choices`` (``None`` for YAML ``null``)."""

    choices: tuple

    def __init__(self, *choices):
        object.__setattr__(self, "choices", tuple(choices))

    def problem(self, value) -> str | None:
        if value in self.choices:
            return None
        return f"is not one of {', '.join('null' if c is None else str(c) for c in self.choices)}"


def _number(x) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
