"""Intervals that include the test set's own sampling error (issue #10) and cover the truth
with few seeds (issue #19), checked by simulation against a known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.stats import (
    TANGO_CC,
    accuracy_interval,
    discordant,
    gap_closed_interval,
    newcombe_paired,
    pack_bits,
    paired_bound,
    paired_interval,
    paired_intervals,
    tango_limit,
    unpack_bits,
    wilson,
    z_of,
)


def test_wilson_is_never_degenerate() -> None:
    lo, hi = wilson(36, 36)
    assert hi == 1.0 and lo == pytest.approx(0.9036, abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi > 0.25


def test_newcombe_paired_interval_without_any_disagreement_has_width() -> None:
    lo, hi = newcombe_paired(35, 0, 0, 1)  # two models agree on all 36 examples
    # corrected correlation (AD - BC = 35 > N/2): ± 10.5 pp, not the uncorrected ± 9.1 pp
    assert lo == pytest.approx(-0.1047, abs=1e-3) and hi == pytest.approx(0.1047, abs=1e-3)


def test_two_models_agreeing_on_a_small_test_set_do_not_give_a_zero_width_gap() -> None:
    right = np.ones((2, 36), bool)
    out = paired_intervals(right, np.ones(36, bool), right)
    assert out["acc_gap_ci_high"] - out["acc_gap_ci_low"] > 0.15  # ± 9 pp on 36 examples
    assert out["student_acc_ci_low"] < 0.91


def test_the_gap_interval_is_at_least_as_wide_as_the_binomial_allows() -> None:
    rng = np.random.default_rng(0)
    for n in (36, 114, 1000, 5000):
        ens = rng.random(n) < 0.95
        student = np.stack([ens ^ (rng.random(n) < 0.02) for _ in range(3)])
        out = paired_intervals(student, ens, None)
        a, b, c, d = (float(x) for x in _pairs_mean(ens, student))
        lo, hi = newcombe_paired(a, b, c, d)
        assert out["acc_gap_ci_low"] <= lo + 1e-12 and out["acc_gap_ci_high"] >= hi - 1e-12
        width = out["student_acc_ci_high"] - out["student_acc_ci_low"]
        p = student.mean()
        assert width >= 2 * 1.6 * math.sqrt(p * (1 - p) / n)  # no narrower than the binomial


def _pairs_mean(ens: np.ndarray, student: np.ndarray) -> tuple[float, float, float, float]:
    e = np.broadcast_to(ens, student.shape)
    return (
        (e & student).sum(1).mean(),
        (e & ~student).sum(1).mean(),
        (~e & student).sum(1).mean(),
        (~e & ~student).sum(1).mean(),
    )


def test_seeds_that_disagree_widen_the_interval() -> None:
    rng = np.random.default_rng(2)
    n = 4000
    ens = rng.random(n) < 0.97
    steady = np.stack([rng.random(n) < 0.95] * 4)
    shaky = np.stack([rng.random(n) < p for p in (0.90, 0.95, 0.96, 0.99)])

    def w(o):
        return o["student_acc_ci_high"] - o["student_acc_ci_low"]

    assert w(paired_intervals(shaky, ens, None)) > 2 * w(paired_intervals(steady, ens, None))


def test_intervals_are_clipped_and_reproducible() -> None:
    rng = np.random.default_rng(3)
    student = rng.random((2, 20)) < 0.5
    ens = rng.random(20) < 0.5
    a = paired_intervals(student, ens, ~student)
    assert a == paired_intervals(student, ens, ~student)
    assert all(-1.0 <= v <= 1.0 for v in a.values())


def test_packed_bits_round_trip() -> None:
    bits = np.random.default_rng(4).random(1001) < 0.5
    assert np.array_equal(unpack_bits(pack_bits(bits), 1001), bits)


def test_newcombe_matches_the_published_implementation() -> None:
    # contingencytables::Newcombe_square_and_add_CI_paired_2x2, Cavo et al. 2012 (59, 6, 16,
    # 80): -0.1186 to -0.0046; AD - BC > N/2, so the corrected correlation is exercised.
    lo, hi = newcombe_paired(59, 6, 16, 80)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)


def _population(seed_sd: float) -> tuple[np.ndarray, float, float]:
    """A known truth: per-example difficulty p ~ Beta(9, 1.5) (about 86 % accuracy); a seed
    moves every example's logit by N(0, seed_sd²); the ensemble is right with p + 0.03."""
    rng = np.random.default_rng(123)
    p = rng.beta(9, 1.5, 200_000)
    logit = np.log(p) - np.log1p(-p + 1e-12)
    shifts = rng.normal(0, seed_sd, 400)
    acc = float(np.mean([(1 / (1 + np.exp(-(logit[:20_000] + b)))).mean() for b in shifts]))
    return p, acc, float(np.clip(p + 0.03, 0, 1).mean()) - acc


@pytest.mark.slow
@pytest.mark.parametrize("n_seeds", [3, 5])
@pytest.mark.parametrize("seed_sd", [0.05, 0.3])
def test_the_interval_covers_the_recipe_at_few_seeds(n_seeds: int, seed_sd: float) -> None:
    """2,000 simulated runs: test sets of 1,000 examples from the population, n_seeds
    training seeds; the 95 % intervals of the accuracy and of the gap cover the truth at
    least 93 % of the time (seed noise small, and seed noise dominant)."""
    pop, acc_true, gap_true = _population(seed_sd)
    rng = np.random.default_rng(n_seeds * 1000 + int(seed_sd * 100))
    draws, n = 2000, 1000
    hit_acc = hit_gap = 0
    for _ in range(draws):
        p = rng.choice(pop, n)
        logit = np.log(p) - np.log1p(-p + 1e-12)
        b = rng.normal(0, seed_sd, n_seeds)
        right = rng.random((n_seeds, n)) < 1 / (1 + np.exp(-(logit[None] + b[:, None])))
        ens = rng.random(n) < np.clip(p + 0.03, 0, 1)
        out = paired_intervals(right, ens, None)
        hit_acc += out["student_acc_ci_low"] <= acc_true <= out["student_acc_ci_high"]
        hit_gap += out["acc_gap_ci_low"] <= gap_true <= out["acc_gap_ci_high"]
    assert hit_acc / draws >= 0.93 and hit_gap / draws >= 0.93, (hit_acc, hit_gap)


def test_the_old_seed_bootstrap_would_fail_this_check() -> None:
    """The check above can fail: resampling 3 seeds gives about their [min, max], which
    covers the mean of 3 normal draws only ~75 % of the time (2 · 2⁻³ of resamples)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    covered = (x.min(1) <= 0) & (x.max(1) >= 0)
    assert 0.70 < covered.mean() < 0.80


def test_the_prediction_interval_is_wider_than_the_mean_interval() -> None:
    rng = np.random.default_rng(5)
    ens = rng.random(2000) < 0.95
    student = np.stack([rng.random(2000) < p for p in (0.90, 0.92, 0.93)])
    out = paired_intervals(student, ens, None)
    assert out["acc_gap_pi_low"] < out["acc_gap_ci_low"] < out["acc_gap_ci_high"]
    assert out["acc_gap_ci_high"] < out["acc_gap_pi_high"]


def test_an_accuracy_interval_holds_the_test_sets_error() -> None:
    """On few examples the seeds may agree perfectly: the interval is still at least the
    binomial one, and it is the interval paired_intervals gives student_acc."""
    rng = np.random.default_rng(3)
    same = np.tile(rng.random(60) < 0.9, (3, 1))  # three seeds, identical predictions
    lo, hi = accuracy_interval(same)
    w_lo, w_hi = wilson(same.mean() * 60, 60)
    assert lo <= w_lo + 1e-12 and hi >= w_hi - 1e-12 and hi - lo > 0.1
    student = rng.random((3, 500)) < 0.8
    out = paired_intervals(student, rng.random(500) < 0.9, None)
    assert accuracy_interval(student) == (out["student_acc_ci_low"], out["student_acc_ci_high"])
    assert all(math.isnan(v) for v in accuracy_interval(np.zeros((3, 0), bool)))


def test_a_file_gap_is_the_paired_difference_of_one_model() -> None:
    ens = np.array([True] * 90 + [False] * 10)
    student = ens.copy()
    student[:5] = False
    ens_only, student_only = discordant(ens, student)
    assert (ens_only, student_only) == (5, 0)
    lo, hi = paired_interval(ens_only, student_only, 100)
    assert lo < 0.05 < hi
    assert paired_bound(5, 0, 100, 0.90) < hi  # a lower level: a lower upper bound
    assert paired_bound(5, 0, 100, 0.95, upper=False) > lo


def test_tangos_interval_reproduces_the_published_implementation() -> None:
    """Tango (1998) with no continuity correction against the R package contingencytables
    (Fagerland, Lydersen & Laake; its tests/testthat/test-ch8.R): Cavo et al. (2012),
    n12 = 6, n21 = 16, N = 161 → (−0.1240, −0.0054); (3, 0, 3) → (−0.1230, 1); (0, 3, 3) →
    (−1, 0.1230)."""
    z = z_of(0.95)
    for (n12, n21, n), expected in (
        ((6, 16, 161), (-0.1240, -0.0054)),
        ((3, 0, 3), (-0.1230, 1.0)),
        ((0, 3, 3), (-1.0, 0.1230)),
    ):
        got = [tango_limit(n12, n21, n, z, upper=u, cc=0.0) for u in (False, True)]
        assert got == pytest.approx(expected, abs=5e-5), (n12, n21, n)
    # the continuity correction only widens; arrays give the same limits as scalars
    assert paired_interval(6, 16, 161)[0] < -0.1240 and paired_interval(6, 16, 161)[1] > -0.0054
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 60, 200), rng.integers(0, 60, 200)
    vec = tango_limit(a, b, 4000, 1.7, upper=True)
    assert np.array_equal(
        vec, [tango_limit(int(x), int(y), 4000, 1.7, upper=True) for x, y in zip(a, b, strict=True)]
    )


# The level grid of issue #33: n, the ensemble's accuracy, the tolerance, and how often the
# student alone is right (the discordant cell that Newcombe's limit mishandles near zero).
GRID = [
    (n, p_ens, tol, only)
    for n in (360, 1000, 4000, 10000)
    for p_ens in (0.9, 0.98)
    for tol in (0.005, 0.01, 0.02)
    for only in (0.0, 0.005, 0.02)
    if only <= 1 - p_ens
]


def false_certification_rate(
    bound: object, n: int, p_ens: float, tol: float, only: float, draws: int, seed: int
) -> float:
    """How often ``bound(counts, n)`` (the one-sided 95 % upper limit of the gap of each drawn
    table: both right, ensemble only, student only, both wrong) is within ``tol`` when the
    true gap is exactly ``tol``."""
    probs = [p_ens - tol - only, tol + only, only, 1 - p_ens - only]
    counts = np.random.default_rng(seed).multinomial(n, probs, size=draws)
    return float((bound(counts, n) <= tol + 1e-12).mean())  # type: ignore[operator]


@pytest.mark.slow
def test_the_certification_bound_keeps_its_level_on_the_grid() -> None:
    """At a true gap equal to the tolerance, the bound in use (Tango's score bound with a
    half-count continuity correction) is within the tolerance in at most 5 % of 20,000 draws
    per cell, up to Monte-Carlo error, on all 60 cells (measured worst: 4.9 %)."""
    draws, alpha = 20_000, 0.05
    z = z_of(1 - 2 * alpha)

    def tango(counts: np.ndarray, n: int) -> np.ndarray:
        return np.asarray(tango_limit(counts[:, 1], counts[:, 2], n, z, upper=True, cc=TANGO_CC))

    rates = {cell: false_certification_rate(tango, *cell, draws, i) for i, cell in enumerate(GRID)}
    worst = max(rates, key=rates.__getitem__)
    assert rates[worst] <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / draws), (worst, rates[worst])


@pytest.mark.slow
def test_newcombes_bound_breaks_its_level_where_one_discordant_cell_is_empty() -> None:
    """Why the bound changed: with the student never alone right, Newcombe's paired limit
    (used before) certifies a student at the tolerance in 6–7 % of draws at a nominal 5 %."""
    draws, z = 20_000, z_of(0.90)

    def newcombe(counts: np.ndarray, n: int) -> np.ndarray:
        return np.array([newcombe_paired(*row, z=z)[1] for row in counts])

    rate = false_certification_rate(newcombe, 1000, 0.9, 0.01, 0.0, draws, 1)
    assert rate > 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws), rate


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seed_sd", "seeds", "low", "high"),
    [(0.0, 3, 0.95, 1.0), (0.01, 5, 0.93, 0.99)],
)
def test_the_gap_closed_interval_covers_the_true_fraction(
    seed_sd: float, seeds: int, low: float, high: float
) -> None:
    """600 simulated runs with a known truth: in the population the ensemble is right 90 % of
    the time, the scratch twin 80 % and the student 88 % (one per-example difficulty shared by
    all: they are paired), each seed shifted by N(0, seed_sd) and 5 % of its answers flipped
    (the seed × example noise), 600 test examples. Where the seeds differ only by that noise
    the interval is conservative (resampling both examples and seeds counts it twice); with
    seeds that differ (1 pp) it covers near the nominal 95 %."""
    rng = np.random.default_rng(7)
    draws, n, hits = 600, 600, 0

    def flipped(acc: float) -> float:  # a 5 % flip turns right to wrong and wrong to right
        return acc - 0.05 * (2 * acc - 1)

    truth = (flipped(0.88) - flipped(0.80)) / (0.90 - flipped(0.80))
    for i in range(draws):
        u = rng.random(n)
        right = [
            (u[None] < (acc + rng.normal(0, seed_sd, seeds))[:, None])
            ^ (rng.random((seeds, n)) < 0.05)
            for acc in (0.88, 0.80)
        ]
        lo, hi = gap_closed_interval(*right, u < 0.90, resamples=1000, seed=i)
        hits += lo <= truth <= hi
    assert low <= hits / draws <= high, hits / draws


def test_no_gap_gives_no_gap_closed_interval() -> None:
    right = np.ones((3, 100), dtype=bool)
    lo, hi = gap_closed_interval(right, right, np.ones(100, dtype=bool))
    assert math.isnan(lo) and math.isnan(hi)
