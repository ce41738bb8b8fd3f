"""Statistics shared by the sweep, recommend and the report: seed intervals, Pareto masks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["pareto_mask", "share", "summarise_seeds"]


def summarise_seeds(values: list[float]) -> tuple[float, float, float, float]:
    """mean, sample std, and the 95 % Student-t interval of the mean (NaN for n < 2)."""
    from scipy import stats

    clean = [v for v in values if not math.isnan(v)]
    n = len(clean)
    if n == 0:
        return (math.nan,) * 4
    mean = sum(clean) / n
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def share(num: float, den: float) -> float:
    """``num / den`` when the denominator is positive, else NaN."""
    return num / den if den > 0 and not math.isnan(num) else math.nan


def pareto_mask(cost_a: Any, cost_b: Any) -> np.ndarray:
    """Boolean mask of points not dominated when minimising both costs."""
    a, b = np.asarray(cost_a, float), np.asarray(cost_b, float)
    mask = np.ones(len(a), dtype=bool)
    for i in range(len(a)):
        dominated = (a <= a[i]) & (b <= b[i]) & ((a < a[i]) | (b < b[i]))
        mask[i] = not dominated.any()
    return mask
