from __future__ import annotations

import math

import numpy as np

from bench.recommend import Constraints, candidates, capacity_fit, knee, recommend
from tests.bench_tests.conftest import make_table


def test_clear_winner_is_the_cheapest_student_within_tolerance() -> None:
    table = make_table(
        {"trial": 0, "student_flops": 500, "student_params": 250, "student_acc": 0.90},  # too far
        {
            "trial": 1,
            "student_flops": 2000,
            "student_params": 1000,
            "student_acc": 0.968,
        },  # ok, cheapest
        {
            "trial": 2,
            "student_flops": 8000,
            "student_params": 4000,
            "student_acc": 0.969,
        },  # ok, dearer
    )
    rec = recommend(table, Constraints(max_gap_pp=0.5))
    assert rec.met and rec.chosen is not None and rec.chosen["trial"] == 1
    assert "Recommended student: width" in rec.text()
    assert "bounds of the 95 % intervals" in rec.gap_basis


def test_no_student_meets_the_gap_names_the_closest_and_extrapolates() -> None:
    rows = [
        {"trial": i, "student_params": p, "student_flops": 2 * p, "student_acc": acc}
        for i, (p, acc) in enumerate(
            [(100, 0.80), (300, 0.86), (1000, 0.90), (3000, 0.92), (10000, 0.93)]
        )
    ]
    rec = recommend(make_table(*rows), Constraints(max_gap_pp=2.0))  # needs >= 95 %
    assert not rec.met and rec.chosen is None
    assert rec.closest is not None and rec.closest["trial"] == 4
    text = rec.text()
    assert "No student meets the constraints." in text and "Closest:" in text
    assert rec.extrapolation is not None
    # accuracy saturates near 94.6 % here: the fit must say no size reaches 95 %
    assert rec.extrapolation["params_needed"] is None
    assert "levels off" in rec.extrapolation["message"]
    assert "no size of this family is predicted to meet the gap" in text


def test_extrapolation_estimates_a_larger_size_on_a_power_law() -> None:
    params = np.array([100, 300, 1000, 3000, 10000], float)
    err = 2.0 * params**-0.5 + 0.01  # the curve the fit assumes
    fit = capacity_fit(params, err)
    assert fit is not None
    _, b, c = fit
    assert abs(b - 0.5) < 0.05 and abs(c - 0.01) < 0.005
    rows = [
        {
            "trial": i,
            "student_params": int(p),
            "student_flops": int(2 * p),
            "student_acc": 1 - e,
            "ensemble_acc": 0.985,
        }
        for i, (p, e) in enumerate(zip(params, err, strict=True))
    ]
    rec = recommend(make_table(*rows), Constraints(max_gap_pp=0.0))
    assert not rec.met
    e = rec.extrapolation
    assert e is not None and e["extrapolated"] and e["params_needed"] > 10000
    expected = (2.0 / (0.015 - 0.01)) ** 2  # error 1.5 % → params = (a / (err − c))^(1/b)
    assert math.isclose(e["params_needed"], expected, rel_tol=0.2)
    assert "treat as a guess" in rec.text()


def test_ties_on_cost_go_to_the_smaller_gap_bound() -> None:
    table = make_table(
        {"trial": 0, "student_flops": 2000, "student_acc": 0.967},
        {"trial": 1, "student_flops": 2000, "student_acc": 0.969},
    )
    rec = recommend(table, Constraints(max_gap_pp=0.5))
    assert rec.chosen is not None and rec.chosen["trial"] == 1
    assert any("tie" in n for n in rec.notes)


def test_noisy_interval_changes_the_decision() -> None:
    # Trial 0's mean gap (0.3 pp) is within 0.5 pp but its interval is wide (upper 0.9 pp);
    # trial 1 is dearer with a tight interval. The rule uses the upper bound → trial 1.
    table = make_table(
        {"trial": 0, "student_flops": 1000, "student_acc": 0.967, "half_ci": 0.006},
        {"trial": 1, "student_flops": 3000, "student_acc": 0.968, "half_ci": 0.001},
    )
    assert recommend(table, Constraints(max_gap_pp=0.5)).chosen["trial"] == 1
    tight = make_table(
        {"trial": 0, "student_flops": 1000, "student_acc": 0.967, "half_ci": 0.001},
        {"trial": 1, "student_flops": 3000, "student_acc": 0.968, "half_ci": 0.001},
    )
    assert recommend(tight, Constraints(max_gap_pp=0.5)).chosen["trial"] == 0


def test_latency_constraint_and_best_member_reference() -> None:
    table = make_table(
        {"trial": 0, "student_flops": 1000, "student_acc": 0.968, "latency_cpu_b1_p50_ms": 0.5},
        {"trial": 1, "student_flops": 3000, "student_acc": 0.968, "latency_cpu_b1_p50_ms": 0.1},
    )
    rec = recommend(table, Constraints(max_gap_pp=0.5, max_latency_ms=0.2))
    assert rec.chosen["trial"] == 1 and rec.cost_column == "latency_cpu_b1_p50_ms"
    # Against the best member (96.0 %) a 95.5 % student is within 0.5 pp + CI 0.2 pp? No: 0.7 pp.
    weaker = make_table(
        {"trial": 0, "student_acc": 0.9555, "best_member_acc": 0.96, "half_ci": 0.0}
    )
    assert recommend(weaker, Constraints(max_gap_pp=0.5, against="best-member")).met
    assert not recommend(weaker, Constraints(max_gap_pp=0.5)).met
    gpu = recommend(table, Constraints(max_gap_pp=0.5, max_latency_ms=1.0, device="gpu"))
    assert not gpu.met and any("not measured" in n for n in gpu.notes)


def test_confirm_rows_replace_search_rows_and_single_seed_rows_are_set_aside() -> None:
    table = make_table(
        {"trial": 0, "phase": "search", "n_seeds": 1, "student_flops": 100, "student_acc": 0.969},
        {"trial": 1, "phase": "search", "n_seeds": 1, "student_flops": 500, "student_acc": 0.969},
        {"trial": 1, "phase": "confirm", "n_seeds": 5, "student_flops": 500, "student_acc": 0.968},
    )
    c = candidates(table, "t")
    assert list(zip(c["trial"], c["phase"], strict=True)) == [(0, "search"), (1, "confirm")]
    rec = recommend(table, Constraints(max_gap_pp=0.5))
    assert rec.chosen["trial"] == 1 and rec.chosen["phase"] == "confirm"
    assert any("replicate seeds" in n for n in rec.notes)


def test_recommendations_on_few_seeds_or_small_test_sets_carry_warnings() -> None:
    table = make_table({"trial": 0, "n_seeds": 2, "student_acc": 0.969, "n_test": 114})
    rec = recommend(table, Constraints(max_gap_pp=0.5))
    assert rec.met
    text = rec.text()
    assert "WARNING: it rests on 2 seed(s), fewer than 3" in text
    assert "WARNING: it rests on 114 test examples, fewer than about 1,000" in text
    clean = recommend(make_table({"trial": 0, "n_seeds": 5}), Constraints(max_gap_pp=5))
    assert clean.warnings == []


def test_warnings_for_a_weak_ensemble_and_a_student_larger_than_it() -> None:
    table = make_table(
        {
            "trial": 0,
            "ensemble_acc": 0.96,
            "best_member_acc": 0.965,
            "student_acc": 0.962,
            "student_params": 300_000,
            "ensemble_params": 100_000,
        }
    )
    rec = recommend(table, Constraints(max_gap_pp=1))
    assert any("no better than its best member" in w for w in rec.warnings)
    assert any("3.0x the ensemble's parameters" in w for w in rec.warnings)
    assert "3.0x (larger than the ensemble)" in rec.text()


def test_relative_accuracy_constraint_uses_the_interval() -> None:
    # ensemble 0.97: 99 % of it is 0.9603. Trial 0's lower relative bound is below, trial 1's above.
    table = make_table(
        {"trial": 0, "student_flops": 1000, "student_acc": 0.962, "half_ci": 0.006},
        {"trial": 1, "student_flops": 3000, "student_acc": 0.966, "half_ci": 0.002},
    )
    rec = recommend(table, Constraints(min_relative_acc=0.99))
    assert rec.met and rec.chosen["trial"] == 1
    assert rec.chosen["relative_bound"] >= 0.99
    both = recommend(table, Constraints(max_gap_pp=0.3, min_relative_acc=0.99))
    assert not both.met  # trial 1's gap bound is 0.6 pp


def test_when_the_cost_limit_fails_it_says_what_the_best_student_within_it_achieves() -> None:
    table = make_table(
        {"trial": 0, "student_flops": 1000, "student_acc": 0.95},
        {"trial": 1, "student_flops": 2000, "student_acc": 0.955},
        {"trial": 2, "student_flops": 8000, "student_acc": 0.969},
    )
    rec = recommend(table, Constraints(max_gap_pp=0.5, max_flops=2500))
    assert not rec.met and rec.closest["trial"] == 2
    assert rec.best_within_cost["trial"] == 1
    assert "Best within the cost limits: width" in rec.text()


def test_json_is_strict_and_has_no_private_keys() -> None:
    import json

    rec = recommend(
        make_table(
            {"trial": 0, "n_seeds": 1, "half_ci": 0.01, "latency_gpu_b1_p50_ms": float("nan")}
        ),
        Constraints(max_gap_pp=5),
    )
    text = rec.to_json()

    def refuse(name: str) -> None:
        raise ValueError(name)

    data = json.loads(text, parse_constant=refuse)  # NaN / Infinity would raise
    assert data["chosen"]["latency_gpu_b1_p50_ms"] is None
    assert "_gap_bound" not in text and "gap_bound" in data["chosen"]


def test_knee_is_the_point_farthest_from_the_chord() -> None:
    table = make_table(
        *[
            {"trial": i, "student_params": p, "student_acc": a}
            for i, (p, a) in enumerate([(100, 0.80), (1000, 0.95), (10000, 0.96), (100000, 0.965)])
        ]
    )
    assert knee(candidates(table))["student_params"] == 1000


def test_json_output_is_valid() -> None:
    import json

    rec = recommend(make_table({"trial": 0}), Constraints(max_gap_pp=5))
    data = json.loads(rec.to_json())
    assert data["met"] is True and data["chosen"]["trial"] == 0 and data["warnings"] == []


def test_pruning_callback_reports_and_raises() -> None:
    import optuna
    import pytest
    import torch

    from bench.search.halving import pruning_callback

    class FakeTrial:
        def __init__(self, prune: bool) -> None:
            self.prune, self.reports = prune, []

        def report(self, value: float, step: int) -> None:
            self.reports.append((step, value))

        def should_prune(self) -> bool:
            return self.prune

    keep = FakeTrial(False)
    pruning_callback(keep)(3, torch.tensor([0.5, 0.7]))  # the trial's distilled members
    assert keep.reports == [(3, pytest.approx(0.6))]
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 4"):
        pruning_callback(FakeTrial(True))(4, torch.tensor([0.5]))


def test_gap_reachable_but_cost_constraint_fails_names_the_cheapest_gap_meeting_student() -> None:
    table = make_table(
        {"trial": 0, "student_flops": 1000, "student_acc": 0.968, "latency_cpu_b1_p50_ms": 0.5},
        {"trial": 1, "student_flops": 3000, "student_acc": 0.969, "latency_cpu_b1_p50_ms": 0.4},
    )
    rec = recommend(table, Constraints(max_gap_pp=0.5, max_latency_ms=0.1))
    assert not rec.met and rec.extrapolation is None
    assert rec.closest["trial"] == 1  # cheapest by the constrained cost (latency)
    assert any(
        "meet the quality constraints but none meets the cost limits" in n for n in rec.notes
    )
    assert "max CPU latency 0.1 ms at batch 1" in rec.text()
