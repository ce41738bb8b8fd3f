"""Intervals that include the test set's own sampling error (issue #10) and cover the truth
with few seeds (issue #19), checked by simulation against a known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.stats import (
    file_gap,
    gap_closed_interval,
    newcombe_paired,
    pack_bits,
    paired_intervals,
    unpack_bits,
    wilson,
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


def test_a_file_gap_is_the_paired_difference_of_one_model() -> None:
    ens = np.array([True] * 90 + [False] * 10)
    student = ens.copy()
    student[:5] = False
    gap, lo, hi = file_gap(student, ens)
    assert gap == pytest.approx(0.05) and lo < 0.05 < hi
    assert file_gap(student, ens, level=0.90)[2] < hi  # a lower level: a lower upper bound


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
