"""Statistics shared by the sweep, recommend and the report: seed intervals, Pareto masks."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

__all__ = [
    "METHOD",
    "accuracy_interval",
    "discordant",
    "gap_closed_interval",
    "newcombe_paired",
    "pack_bits",
    "paired_bound",
    "paired_interval",
    "paired_intervals",
    "pareto_mask",
    "share",
    "summarise_seeds",
    "t_of",
    "tango_limit",
    "unpack_bits",
    "wilson",
    "z_of",
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
    averages over seeds). Built from the Wilson intervals of the two margins and the
    correlation of the pairs, with Newcombe's continuity-corrected numerator: φ̂ uses
    AD − BC − N/2 when AD − BC > N/2, 0 when 0 ≤ AD − BC ≤ N/2, and AD − BC when it is
    negative. It has non-zero width even when no pair disagrees (b = c = 0).
    """
    n = a + b + c + d
    if n <= 0:
        return math.nan, math.nan
    n_int = max(1, round(n))
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(p1 * n_int, n_int, z)
    l2, u2 = wilson(p2 * n_int, n_int, z)
    denom = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    cross = a * d - b * c
    num = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = num / denom if denom > 0 else 0.0
    theta = p1 - p2
    dl = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    du = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, theta - dl), min(1.0, theta + du)


METHOD = (
    "95 % intervals of a recipe (mean over S training seeds): a Student-t seed part "
    "(t_{S-1} · s / sqrt(S)) combined with the per-example paired error (z · sd / sqrt(n)) as "
    "sqrt(seed^2 + example^2), widened to at least the binomial score interval (Wilson for "
    "accuracies, Newcombe's corrected paired interval for gaps and KD gains), clipped to "
    "[-1, 1]; one file's gap (test-set error only: one file, no seeds): Tango's paired score "
    "interval with a half-count continuity correction"
)


@functools.lru_cache(maxsize=64)
def z_of(level: float) -> float:
    """The two-sided normal quantile of ``level`` (0.95 → 1.96)."""
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 2))


@functools.lru_cache(maxsize=256)
def t_of(level: float, df: int) -> float:
    """The two-sided Student-t quantile of ``level`` on ``df`` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


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


def _seed_and_example(
    per_seed: np.ndarray, per_example: np.ndarray, level: float, predict: bool = False
) -> tuple[float, float]:
    """Half-widths (seed part, example part) of an interval for a mean over S seeds and n
    test examples: ``t_{S−1} · s / √S`` from the S per-seed values (``√(1 + 1/S)`` instead of
    ``1/√S`` with ``predict``: one more training run) and ``z · sd / √n`` from the n
    per-example values averaged over seeds (0 for S = 1 resp. n = 1)."""
    s = len(per_seed)
    n = len(per_example)
    seed_half = 0.0
    if s >= 2:
        sd = float(np.std(per_seed, ddof=1))
        factor = math.sqrt(1 + 1 / s) if predict else 1 / math.sqrt(s)
        seed_half = t_of(level, s - 1) * sd * factor
    ex_half = z_of(level) * float(np.std(per_example, ddof=1)) / math.sqrt(n) if n >= 2 else 0.0
    return seed_half, ex_half


def _interval(
    estimate: float,
    per_seed: np.ndarray,
    per_example: np.ndarray,
    level: float,
    floor: tuple[float, float],
    predict: bool = False,
) -> tuple[float, float]:
    seed_half, ex_half = _seed_and_example(per_seed, per_example, level, predict)
    half = math.hypot(seed_half, ex_half)
    return _hull((estimate - half, estimate + half), floor)


def accuracy_interval(right: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` interval of a recipe's accuracy from the right/wrong predictions of its S
    training seeds on n test examples (``[S, n]``): the seed part (Student-t) combined with the
    example part, widened to at least Wilson's binomial interval of the pooled accuracy
    (:func:`paired_intervals` gives ``student_acc`` the same), clipped to [0, 1]; NaN for no
    examples. The test-set error is in it, however few the examples."""
    right = np.asarray(right, bool)
    if right.ndim != 2 or right.shape[1] == 0 or right.shape[0] == 0:
        return math.nan, math.nan
    n = right.shape[1]
    mean = float(right.mean())
    lo, hi = _interval(mean, right.mean(1), right.mean(0), level, wilson(mean * n, n, z_of(level)))
    return max(0.0, lo), min(1.0, hi)


def paired_intervals(
    student: np.ndarray,
    ensemble: np.ndarray,
    scratch: np.ndarray | None,
    *,
    level: float = 0.95,
) -> dict[str, float]:
    """Intervals (``level``, default 95 %) of a student recipe's accuracy, its gap to the
    ensemble and its KD gain, from the test predictions of S training seeds.

    ``student``: per seed, per test example, right or wrong ``[S, n]``; ``ensemble``: ``[n]``;
    ``scratch``: the scratch students of the same seeds ``[S, n]`` (or None).

    The quantity is the recipe's expected value over training seeds and over the test
    distribution, estimated by the mean over the S seeds and n examples. Its error has a seed
    part and an example part (a two-way random-effects model ``R[s, i] = μ + a_i + b_s + e``):

    * seed part: ``t_{S−1, (1+level)/2} · s_seed / √S`` from the S per-seed values (a
      Student-t quantile: a bootstrap over 3 seeds gives about their [min, max] and covers
      ~75 %);
    * example part: ``z · sd_i / √n`` from the n per-example values, each the mean over seeds
      of the paired difference (ensemble − student for the gap, student − scratch for the
      gain; the paired difference keeps the pairs' correlation);

    combined as ``√(seed² + example²)`` (both parts count the seed × example noise once:
    conservative), and widened to cover at least the binomial score interval of the same
    quantity (Wilson for the accuracy; Newcombe's corrected paired interval for the gap and
    the gain, from the disagreement counts averaged over seeds), so a small test set never
    gives a narrow interval because two models agree on it. ``acc_gap_pi_*`` is the
    prediction interval of one more training run's gap (seed part ``t · s · √(1 + 1/S)``).
    Everything clipped to [−1, 1]; deterministic. Coverage is checked by simulation
    (``tests/bench_tests/test_stats.py``).
    """
    student = np.asarray(student, bool)
    ensemble = np.asarray(ensemble, bool)
    n = student.shape[1]
    z = z_of(level)
    acc_s = student.mean(1)
    m_i = student.mean(0)
    mean_acc = float(acc_s.mean())
    e_acc = float(ensemble.mean())
    acc_ci = _interval(mean_acc, acc_s, m_i, level, wilson(mean_acc * n, n, z))
    stacked = np.broadcast_to(ensemble, student.shape)
    gap_floor = newcombe_paired(*_pairs(stacked, student), z=z)
    gap_s, gap_i = e_acc - acc_s, ensemble.astype(float) - m_i
    gap_ci = _interval(e_acc - mean_acc, gap_s, gap_i, level, gap_floor)
    gap_pi = _interval(e_acc - mean_acc, gap_s, gap_i, level, gap_floor, predict=True)
    out = {
        "student_acc_ci_low": max(0.0, acc_ci[0]),
        "student_acc_ci_high": min(1.0, acc_ci[1]),
        "acc_gap_ci_low": gap_ci[0],
        "acc_gap_ci_high": gap_ci[1],
        "acc_gap_pi_low": gap_pi[0],
        "acc_gap_pi_high": gap_pi[1],
        "kd_gain_ci_low": math.nan,
        "kd_gain_ci_high": math.nan,
    }
    if scratch is not None:
        sc = np.asarray(scratch, bool)
        gain_ci = _interval(
            mean_acc - float(sc.mean()),
            acc_s - sc.mean(1),
            m_i - sc.mean(0),
            level,
            newcombe_paired(*_pairs(student, sc), z=z),
        )
        out["kd_gain_ci_low"], out["kd_gain_ci_high"] = gain_ci
    return out


def discordant(first: np.ndarray, second: np.ndarray) -> tuple[int, int]:
    """The discordant pairs of two models on the same examples (``[n]`` right or wrong):
    (first right and second wrong, second right and first wrong) — with ``n``, all a paired
    difference's bound needs."""
    a, b = np.asarray(first, bool), np.asarray(second, bool)
    return int((a & ~b).sum()), int((~a & b).sum())


# The continuity correction of the paired score bound, in counts of the statistic n12 − n21:
# half a count keeps the one-sided level at or below alpha on the grid of
# tests/bench_tests/test_stats.py (n 360–10,000), where plain Tango reaches 5.7 % at n = 360.
TANGO_CC = 0.5


def tango_limit(n12: Any, n21: Any, n: Any, z: float, *, upper: bool, cc: float = TANGO_CC) -> Any:
    """Tango's (1998) score confidence limit for δ = p12 − p21, the difference of two paired
    proportions (n12: pairs only the first gets right; n21: only the second; n pairs); ``z``:
    the normal quantile of the one side (1.645 for a one-sided 95 % limit). Vectorised.

    The score statistic is T(δ) = (n12 − n21 − nδ) / √(n(2p̃21 + δ(1 − δ))), with p̃21 the
    maximum-likelihood estimate of p21 under δ,
    p̃21 = (√(B² − 4AC) − B) / (2A), A = 2n, B = −n12 − n21 + (2n − n12 + n21)δ,
    C = −n21 δ(1 − δ); the limit solves T(δ) = −z (upper) or z (lower). ``cc`` counts are
    taken off |n12 − n21 − nδ| (a continuity correction; ``cc = 0`` is Tango's interval, which
    reproduces the published implementation: tests/bench_tests/test_stats.py). Solved by
    bisection (T decreases in δ), 48 halvings of [−1, 1]."""
    if all(isinstance(v, int | float | np.integer | np.floating) for v in (n12, n21, n)):
        return _tango_scalar(float(n12), float(n21), float(n), z, upper, cc)
    n12, n21, n = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (n12, n21, n)))
    lo = np.full(n.shape, -1.0)
    hi = np.full(n.shape, 1.0)
    target = -z if upper else z
    for _ in range(48):
        mid = (lo + hi) / 2
        right = _tango_score(n12, n21, n, mid, cc) > target
        lo = np.where(right, mid, lo)
        hi = np.where(right, hi, mid)
    out = (lo + hi) / 2
    estimate = (n12 - n21) / np.maximum(n, 1)
    return np.where(estimate >= 1, 1.0, out) if upper else np.where(estimate <= -1, -1.0, out)


def _tango_score(n12: Any, n21: Any, n: Any, delta: Any, cc: float) -> Any:
    """Tango's continuity-corrected score statistic at ``delta`` (arrays or floats)."""
    b = -n12 - n21 + (2 * n - n12 + n21) * delta  # B; A = 2n
    c = -n21 * delta * (1 - delta)  # C
    p21 = (np.sqrt(np.maximum(b * b - 8 * n * c, 0.0)) - b) / (4 * n)
    score = n12 - n21 - n * delta
    score = np.sign(score) * np.maximum(np.abs(score) - cc, 0.0)
    return score / np.sqrt(np.maximum(n * (2 * p21 + delta * (1 - delta)), 1e-300))


def _tango_scalar(n12: float, n21: float, n: float, z: float, upper: bool, cc: float) -> float:
    """:func:`tango_limit` of one table in plain floats (numpy's per-call cost, ×48
    halvings, dominated a certification row's bounds)."""
    if n <= 0:
        return math.nan
    estimate = (n12 - n21) / n
    if (upper and estimate >= 1) or (not upper and estimate <= -1):
        return 1.0 if upper else -1.0
    lo, hi, target = -1.0, 1.0, -z if upper else z
    for _ in range(48):
        mid = (lo + hi) / 2
        b = -n12 - n21 + (2 * n - n12 + n21) * mid
        p21 = (math.sqrt(max(b * b + 8 * n * n21 * mid * (1 - mid), 0.0)) - b) / (4 * n)
        score = n12 - n21 - n * mid
        score = math.copysign(max(abs(score) - cc, 0.0), score)
        if score / math.sqrt(max(n * (2 * p21 + mid * (1 - mid)), 1e-300)) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def paired_bound(n12: float, n21: float, n: float, level: float, *, upper: bool = True) -> float:
    """The one-sided ``level`` confidence limit of δ = (n12 − n21) / n, two models' paired
    accuracy difference (:func:`tango_limit`); NaN without pairs. Counts may be expected
    counts (floats), as when solving for the test size a tolerance needs."""
    if n <= 0:
        return math.nan
    return float(tango_limit(n12, n21, n, z_of(2 * level - 1), upper=upper))


def paired_interval(n12: int, n21: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The two-sided ``level`` interval of δ = (n12 − n21) / n (:func:`tango_limit`)."""
    if n <= 0:
        return math.nan, math.nan
    z = z_of(level)
    return (
        float(tango_limit(n12, n21, n, z, upper=False)),
        float(tango_limit(n12, n21, n, z, upper=True)),
    )


def gap_closed_interval(
    student_right: np.ndarray,
    scratch_right: np.ndarray,
    ensemble_right: np.ndarray,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the fraction of the gap closed,
    ``(s − r) / (e − r)``: ``s`` the students' mean test accuracy over seeds, ``r`` the scratch
    twins' (``[seeds, n]`` right/wrong each, paired by seed), ``e`` the ensemble's (``[n]``).

    Each resample weighs the test examples (one draw shared by student, scratch and ensemble:
    they are paired) and the seeds (one draw shared by a student and its twin), so the interval
    holds both sources of noise. It is conservative where the seeds differ only through
    seed × example noise (that noise is counted twice; simulated coverage 99 % at 3 seeds) and
    near the nominal level where they differ more (1 pp: 96 % at 3 seeds, 97.5 % at 5), but
    few seeds that differ a lot make it too narrow (2 pp at 3 seeds: 90 %; at 5 seeds: 96 %).
    A resample whose denominator is not positive is dropped; NaN when more than
    ``(1 − level) / 2`` of them are (the gap itself is not there)."""
    s_right = np.asarray(student_right, dtype=bool)
    r_right = np.asarray(scratch_right, dtype=bool)
    n_seeds = s_right.shape[0]
    # The Poisson bootstrap (each example weighed by a Poisson(1) count) on the examples'
    # right/wrong patterns: the weights of the m examples that share a pattern sum to one
    # Poisson(m) draw, so a resample costs one draw per distinct pattern, not per example.
    bits = np.concatenate([s_right, r_right, np.asarray(ensemble_right, bool)[None]]).T
    patterns, counts = np.unique(bits, axis=0, return_counts=True)
    rng = np.random.default_rng(seed)
    weights = rng.poisson(counts.astype(float), (resamples, len(counts))).astype(float)
    weights /= np.maximum(weights.sum(1, keepdims=True), 1.0)
    p = patterns.astype(float)
    s_right, r_right, e_right = p[:, :n_seeds].T, p[:, n_seeds:-1].T, p[:, -1]
    picks = rng.integers(0, n_seeds, (resamples, n_seeds))
    per_seed_s, per_seed_r = s_right @ weights.T, r_right @ weights.T  # [seeds, resamples]
    cols = np.arange(resamples)[None, :]
    s = per_seed_s[picks.T, cols].mean(0)
    r = per_seed_r[picks.T, cols].mean(0)
    e = weights @ e_right
    den = e - r
    ok = den > 0
    tail = (1 - level) / 2
    if (~ok).mean() > tail:
        return math.nan, math.nan
    ratio = (s[ok] - r[ok]) / den[ok]
    lo, hi = np.quantile(ratio, [tail, 1 - tail])
    return float(lo), float(hi)


def pack_bits(right: np.ndarray) -> str:
    """Per-example right/wrong as compact text (base64 of packed bits) for trial records."""
    import base64

    return base64.b64encode(np.packbits(np.asarray(right, bool)).tobytes()).decode("ascii")


def unpack_bits(text: str, n: int) -> np.ndarray:
    import base64

    return np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))[:n].astype(bool)
