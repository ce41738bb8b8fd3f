"""One way to print a number: the CLI, the report and the model card all format through here.

Conventions: accuracies and gaps are fractions in the files and print as percentages or
percentage points with two decimals (``98.62``, ``+0.15``); intervals as ``[lo, hi]`` in the
same unit; latencies in milliseconds with three significant digits; counts with thousands
separators; any other number with four significant digits in fixed notation (never
``2.21e+05`` beside ``4,620.69``). A value that is missing (None, NA, NaN, not a number) prints
as :data:`MISSING`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "MISSING",
    "cell",
    "count",
    "fixed",
    "interval",
    "is_missing",
    "level",
    "ms",
    "number",
    "pct",
    "ratio",
    "times",
    "to_float",
    "tolerance",
]

MISSING = "n/a"


def to_float(v: Any) -> float:
    """``v`` as a float; NaN when it is missing or not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def is_missing(v: Any) -> bool:
    return math.isnan(to_float(v))


def pct(frac: Any, signed: bool = False) -> str:
    """A fraction as percent or percentage points, two decimals: 0.98623 → ``98.62``."""
    f = to_float(frac) * 100
    if math.isnan(f):
        return MISSING
    return f"{f:+.2f}" if signed else f"{f:.2f}"


def interval(lo: Any, hi: Any, signed: bool = False) -> str:
    """``[lo, hi]`` of two fractions, in percent or percentage points (:func:`pct`)."""
    if is_missing(lo) or is_missing(hi):
        return MISSING
    return f"[{pct(lo, signed)}, {pct(hi, signed)}]"


def ms(v: Any, missing: str = MISSING) -> str:
    """A latency in milliseconds, three significant digits: ``0.0817 ms``, ``12.3 ms``."""
    f = to_float(v)
    if math.isnan(f):
        return missing
    return f"{_significant(f, 3)} ms"


def count(v: Any) -> str:
    """A whole number with thousands separators: ``1,154``."""
    f = to_float(v)
    return MISSING if math.isnan(f) else f"{round(f):,}"


def number(v: Any, digits: int = 4) -> str:
    """Any other number: ``digits`` significant digits in fixed notation, thousands
    separators (``0.01160``, ``0.01142``, ``4,621``, ``221,000``)."""
    f = to_float(v)
    return MISSING if math.isnan(f) else _significant(f, digits)


def fixed(v: Any, decimals: int = 2) -> str:
    """A setting printed with a fixed number of decimals: T and alpha, ``1.80``."""
    f = to_float(v)
    return MISSING if math.isnan(f) else f"{f:.{decimals}f}"


def times(v: Any) -> str:
    """A ratio of two costs, one decimal: ``3.6×``."""
    f = to_float(v)
    return MISSING if math.isnan(f) else f"{f:.1f}×"


def tolerance(frac: Any) -> str:
    """A tolerance in percentage points as a user types it: ``0.005`` → ``0.5``."""
    f = to_float(frac) * 100
    return MISSING if math.isnan(f) else f"{round(f, 10):g}"


def level(v: Any) -> str:
    """A probability or error level as a user types it, to four significant digits:
    ``0.05``, ``0.025``, ``0.0125`` (rounding 0.0125 to 0.013 would misstate the test),
    ``0.008333`` (0.025 / 3)."""
    f = to_float(v)
    return MISSING if math.isnan(f) else f"{round(f, 12):.4g}"


def ratio(param_ratio: Any) -> str:
    """Student size against the ensemble, read before "of the ensemble": ``1/130``, or
    ``2.8 times the size`` for a larger student."""
    r = to_float(param_ratio)
    if math.isnan(r) or r <= 0:
        return "n/a (teacher size unknown)"
    return f"1/{1 / r:.1f}" if r < 1 else f"{r:.1f} times the size"


def cell(v: Any, column: str = "") -> str:
    """A table cell, formatted by the unit its column names: ``%`` and ``pp`` two decimals,
    ``ms`` a latency, other floats by :func:`number`, integers as counts, text as it is."""
    if v is None or str(v) in ("<NA>", "nan", "NaN"):
        return MISSING
    if isinstance(v, bool | str):
        return str(v)
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}"
    if isinstance(v, numbers.Real):
        words = column.replace("[", " ").replace("]", " ").split()
        if "%" in words or "pp" in words:
            return f"{float(v):.2f}"
        if "ms" in words:
            return _significant(float(v), 3)
        return number(v)
    return str(v)


def _significant(f: float, digits: int) -> str:
    if f == 0 or math.isinf(f):
        return f"{f:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(f))))
    return f"{f:,.{decimals}f}"
