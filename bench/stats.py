"""Statistics shared by the sweep, recommend and the report: seed intervals, Pareto masks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "newcombe_paired",
    "pack_bits",
    "paired_intervals",
    "pareto_mask",
    "share",
    "summarise_seeds",
    "unpack_bits",
    "wilson",
]


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


# ---------------------------------------------------------------------- intervals
Z95 = 1.959963984540054
N_BOOT = 2000


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (non-degenerate at 0 and 1)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired(a: float, b: float, c: float, d: float, z: float = Z95) -> tuple[float, float]:
    """Newcombe's (1998, method 10) score interval for p1 − p2 from paired binary outcomes.

    a: both right, b: first right only, c: second right only, d: both wrong (counts; may be
    averages over seeds). Built from the Wilson intervals of the two margins and the phi
    correlation of the pairs; it has non-zero width even when no pair disagrees (b = c = 0),
    which the paired bootstrap cannot show.
    """
    n = a + b + c + d
    if n <= 0:
        return math.nan, math.nan
    n_int = max(1, round(n))
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(p1 * n_int, n_int, z)
    l2, u2 = wilson(p2 * n_int, n_int, z)
    denom = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    phi = (a * d - b * c) / denom if denom > 0 else 0.0
    theta = p1 - p2
    dl = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    du = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, theta - dl), min(1.0, theta + du)


def _pairs(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Mean (over seeds) counts of (both, x only, y only, neither) right; x, y: [S, n] bool."""
    return (
        float((x & y).sum(1).mean()),
        float((x & ~y).sum(1).mean()),
        float((~x & y).sum(1).mean()),
        float((~x & ~y).sum(1).mean()),
    )


def _hull(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    lo = min(a[0], b[0]) if not math.isnan(b[0]) else a[0]
    hi = max(a[1], b[1]) if not math.isnan(b[1]) else a[1]
    return max(-1.0, lo), min(1.0, hi)


def paired_intervals(
    student: np.ndarray,
    ensemble: np.ndarray,
    scratch: np.ndarray | None,
    *,
    seed: int,
    n_boot: int = N_BOOT,
) -> dict[str, float]:
    """95 % intervals of a student's accuracy, its gap to the ensemble and its KD gain.

    ``student``: per seed, per test example, right or wrong ``[S, n]``; ``ensemble``: ``[n]``;
    ``scratch``: the scratch students of the same seeds ``[S, n]`` (or None).

    Method: a paired bootstrap over test examples *and* seeds — each of ``n_boot`` resamples
    draws n examples and S seeds with replacement and recomputes the mean accuracy, the gap
    (ensemble − student, on the same examples) and the gain (student − scratch, same seed,
    same examples); percentile interval — widened to cover at least the binomial score
    interval of the same quantity (Wilson for the accuracy; Newcombe's paired interval for
    the gap and the gain, from the disagreement counts averaged over seeds), so a small test
    set never gives a narrow interval just because two models happened to agree on it.
    Everything clipped to [−1, 1].
    """
    student = np.asarray(student, bool)
    ensemble = np.asarray(ensemble, bool)
    s, n = student.shape
    rng = np.random.default_rng(seed)
    # Every example is one pattern of right/wrong across (ensemble, students, scratches);
    # resampling n examples is a multinomial draw over the patterns that occur (exact, and
    # cheap: typically a few dozen patterns instead of n examples).
    rows = [ensemble[None], student] + ([np.asarray(scratch, bool)] if scratch is not None else [])
    patterns, counts = np.unique(np.concatenate(rows).T, axis=0, return_counts=True)
    patterns = patterns.astype(np.float64)
    draws = rng.multinomial(n, counts / n, size=n_boot).astype(np.float64)  # [B, K]
    pick = rng.integers(0, s, size=(n_boot, s))
    take = np.arange(n_boot)[:, None], pick
    acc_s = draws @ patterns[:, 1 : 1 + s] / n
    acc = acc_s[take].mean(1)
    acc_b, gap_b = [acc], [draws @ patterns[:, 0] / n - acc]
    gain_b = []
    if scratch is not None:
        sc_s = draws @ patterns[:, 1 + s : 1 + 2 * s] / n
        gain_b.append((acc_s - sc_s)[take].mean(1))
    pct = lambda v: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))  # noqa: E731
    mean_acc = float(student.mean())
    acc_ci = _hull(pct(np.concatenate(acc_b)), wilson(mean_acc * n, n))
    stacked = np.broadcast_to(ensemble, student.shape)
    gap_ci = _hull(pct(np.concatenate(gap_b)), newcombe_paired(*_pairs(stacked, student)))
    out = {
        "student_acc_ci_low": max(0.0, acc_ci[0]),
        "student_acc_ci_high": min(1.0, acc_ci[1]),
        "acc_gap_ci_low": gap_ci[0],
        "acc_gap_ci_high": gap_ci[1],
        "kd_gain_ci_low": math.nan,
        "kd_gain_ci_high": math.nan,
    }
    if scratch is not None:
        gain_ci = _hull(
            pct(np.concatenate(gain_b)),
            newcombe_paired(*_pairs(student, np.asarray(scratch, bool))),
        )
        out["kd_gain_ci_low"], out["kd_gain_ci_high"] = gain_ci
    return out


def pack_bits(right: np.ndarray) -> str:
    """Per-example right/wrong as compact text (base64 of packed bits) for trial records."""
    import base64

    return base64.b64encode(np.packbits(np.asarray(right, bool)).tobytes()).decode("ascii")


def unpack_bits(text: str, n: int) -> np.ndarray:
    import base64

    return np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))[:n].astype(bool)
