"""Intervals that include the test set's own sampling error (issue #10)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.stats import newcombe_paired, pack_bits, paired_intervals, unpack_bits, wilson


def test_wilson_is_never_degenerate() -> None:
    lo, hi = wilson(36, 36)
    assert hi == 1.0 and lo == pytest.approx(0.9036, abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi > 0.25


def test_newcombe_paired_interval_without_any_disagreement_has_width() -> None:
    lo, hi = newcombe_paired(35, 0, 0, 1)  # two models agree on all 36 examples
    assert lo == pytest.approx(-0.0911, abs=1e-3) and hi == pytest.approx(0.0911, abs=1e-3)


def test_two_models_agreeing_on_a_small_test_set_do_not_give_a_zero_width_gap() -> None:
    right = np.ones((2, 36), bool)
    out = paired_intervals(right, np.ones(36, bool), right, seed=0)
    assert out["acc_gap_ci_high"] - out["acc_gap_ci_low"] > 0.15  # ± 9 pp on 36 examples
    assert out["student_acc_ci_low"] < 0.91


def test_the_gap_interval_is_at_least_as_wide_as_the_binomial_allows() -> None:
    rng = np.random.default_rng(0)
    for n in (36, 114, 1000, 5000):
        ens = rng.random(n) < 0.95
        student = np.stack([ens ^ (rng.random(n) < 0.02) for _ in range(3)])
        out = paired_intervals(student, ens, None, seed=1)
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
    w = lambda o: o["student_acc_ci_high"] - o["student_acc_ci_low"]  # noqa: E731
    assert w(paired_intervals(shaky, ens, None, seed=0)) > 2 * w(
        paired_intervals(steady, ens, None, seed=0)
    )


def test_intervals_are_clipped_and_reproducible() -> None:
    rng = np.random.default_rng(3)
    student = rng.random((2, 20)) < 0.5
    ens = rng.random(20) < 0.5
    a = paired_intervals(student, ens, ~student, seed=7)
    assert a == paired_intervals(student, ens, ~student, seed=7)
    assert all(-1.0 <= v <= 1.0 for v in a.values())


def test_packed_bits_round_trip() -> None:
    bits = np.random.default_rng(4).random(1001) < 0.5
    assert np.array_equal(unpack_bits(pack_bits(bits), 1001), bits)
