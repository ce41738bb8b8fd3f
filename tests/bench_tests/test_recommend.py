"""The decision rule: recommend only certified students (issue #19), from the table alone."""

from __future__ import annotations

import json
import math

import numpy as np

from bench.decision import claims
from bench.decision.recommend import Constraints, candidates, recommend
from tests.bench_tests.conftest import make_table


def _cert(trial: int, params: int, acc: float, **kw: object) -> dict[str, object]:
    """A certification row; ranks follow size (the largest first), as validation orders them."""
    return {
        "trial": trial,
        "phase": "certify",
        "n_seeds": 5,
        "student_params": params,
        "student_flops": 2 * params,
        "student_acc": acc,
        **kw,
    }


def test_the_cheapest_certified_student_is_recommended() -> None:
    table = make_table(
        _cert(2, 4000, 0.969, certify_rank=0),
        _cert(1, 1000, 0.968, certify_rank=1),
        _cert(0, 250, 0.90, certify_rank=2),  # too far: not certified
    )
    rec = recommend(table, Constraints(max_gap=0.005))
    assert rec.met and rec.chosen is not None and rec.chosen["trial"] == 1
    text = claims.text(rec)
    assert "Recommended student: width" in text and "Certified at 0.5 pp" in text
    assert "fixed-sequence testing" in claims.basis(rec)
    assert rec.certification is not None and rec.certification.certified == 2


def test_fixed_sequence_testing_stops_at_the_first_failure() -> None:
    """A smaller student that would pass after a failure is not certified: the order, chosen
    on validation, is what bounds the family-wise error."""
    table = make_table(
        _cert(0, 4000, 0.969, certify_rank=0),
        _cert(1, 1000, 0.960, certify_rank=1),  # fails
        _cert(2, 250, 0.969, certify_rank=2),  # would pass alone
    )
    rec = recommend(table, Constraints(max_gap=0.005))
    assert rec.chosen["trial"] == 0
    cert = table[table["phase"] == "certify"].set_index("trial")["certified"]
    assert cert.to_dict() == {0: True, 1: False, 2: False}


def test_search_rows_are_never_recommended() -> None:
    table = make_table(
        {"trial": 0, "student_params": 100, "student_acc": 0.97},  # search: great on test
        _cert(1, 4000, 0.969, certify_rank=0),
    )
    assert recommend(table, Constraints(max_gap=0.005)).chosen["trial"] == 1
    only_search = make_table({"trial": 0, "student_acc": 0.97})
    rec = recommend(only_search, Constraints(max_gap=0.005))
    assert not rec.met and "kdbench certify RUN --max-gap 0.5" in claims.text(rec)


def test_a_tolerance_not_certified_says_how_to_certify_it() -> None:
    table = make_table(_cert(0, 4000, 0.969, certify_max_gap=0.01))
    tighter = recommend(table, Constraints(max_gap=0.005))
    assert not tighter.met
    assert "certified at 1 pp" in claims.text(tighter) and "kdbench certify RUN --max-gap 0.5" in (
        claims.text(tighter)
    )
    looser = recommend(table, Constraints(max_gap=0.02))
    assert looser.met and any("tighter than the 2 pp asked" in n for n in claims.notes(looser))
    assert "kdbench certify RUN --max-gap 2" in claims.text(looser)


def test_the_round_with_the_largest_tolerance_within_the_request_is_used() -> None:
    table = make_table(
        _cert(0, 4000, 0.969, certify_max_gap=0.005, certify_round=0),
        _cert(0, 4000, 0.969, certify_max_gap=0.01, certify_round=1, certify_rank=0),
        _cert(1, 500, 0.962, certify_max_gap=0.01, certify_round=1, certify_rank=1),
    )
    rec = recommend(table, Constraints(max_gap=0.01))
    assert rec.certification.round == 1 and rec.chosen["trial"] == 1
    assert recommend(table, Constraints(max_gap=0.007)).certification.round == 0


def test_relative_accuracy_is_a_tolerance_too() -> None:
    # ensemble 97 %: 99 % of it allows a gap of 0.97 pp; certified at 1 pp is too loose
    table = make_table(_cert(0, 4000, 0.965, certify_max_gap=0.009))
    assert recommend(table, Constraints(min_relative_acc=0.99)).met
    assert not recommend(table, Constraints(min_relative_acc=0.995)).met


def test_cost_limits_choose_within_the_certified_set() -> None:
    table = make_table(
        _cert(0, 4000, 0.969, certify_rank=0, latency_cpu_b1_p50_ms=0.5),
        _cert(1, 1000, 0.968, certify_rank=1, latency_cpu_b1_p50_ms=0.4),
    )
    rec = recommend(table, Constraints(max_gap=0.005, max_latency_ms=0.45))
    assert rec.chosen["trial"] == 1 and rec.cost_column == "latency_cpu_b1_p50_ms"
    none = recommend(table, Constraints(max_gap=0.005, max_flops=100))
    assert not none.met and none.closest["trial"] == 1
    assert any("none meets the cost limits" in n for n in claims.notes(none))
    gpu = recommend(table, Constraints(max_gap=0.005, max_latency_ms=1.0, device="gpu"))
    assert not gpu.met and any("not measured" in n for n in claims.notes(gpu))


def test_a_latency_limit_over_students_timed_on_two_hosts_says_so() -> None:
    rows = [
        _cert(0, 4000, 0.969, certify_rank=0, latency_cpu_b1_p50_ms=0.5, latency_host="a"),
        _cert(1, 1000, 0.968, certify_rank=1, latency_cpu_b1_p50_ms=0.4, latency_host="b"),
    ]
    rec = recommend(make_table(*rows), Constraints(max_gap=0.005, max_latency_ms=1.0))
    assert rec.met and any("timed on 2 hosts (a, b" in n for n in claims.notes(rec))
    rows[1]["latency_host"] = "a"
    one = recommend(make_table(*rows), Constraints(max_gap=0.005, max_latency_ms=1.0))
    assert not any("hosts" in n for n in claims.notes(one))


def test_against_the_best_member_the_paired_member_bounds_are_certified() -> None:
    """Ensemble 97 %, best member 96 %: the 1,000-param student (95.8 %) misses 0.5 pp to the
    ensemble but is within it of the member, by the member's own paired bound and the same
    fixed-sequence test in the same validation order."""
    table = make_table(
        _cert(0, 4000, 0.969, certify_rank=0),
        _cert(1, 1000, 0.958, certify_rank=1),
        _cert(2, 250, 0.90, certify_rank=2),
    )
    assert recommend(table, Constraints(max_gap=0.005)).chosen["trial"] == 0
    rec = recommend(table, Constraints(max_gap=0.005, against="best-member"))
    assert rec.met and rec.chosen["trial"] == 1
    assert "bound to the best member" in claims.basis(rec)
    cert = table[table["phase"] == "certify"].set_index("trial")
    assert cert["certified_best_member"].to_dict() == {0: True, 1: True, 2: False}
    # a member bound that fails at the first rank certifies nothing (fixed sequence)
    worse = make_table(
        _cert(0, 4000, 0.969, certify_rank=0, certify_bound_best_member=0.02),
        _cert(1, 1000, 0.958, certify_rank=1),
    )
    assert not recommend(worse, Constraints(max_gap=0.005, against="best-member")).met
    # --min-relative-acc is relative to the member: 99.5 % of 96 % asks 0.48 pp, tighter than
    # the round's 0.5 pp; 99 % asks 0.96 pp, which the 0.5 pp round serves
    tight = recommend(table, Constraints(min_relative_acc=0.995, against="best-member"))
    assert not tight.met and "kdbench certify RUN --max-gap 0.48" in claims.text(tight)
    rel = recommend(table, Constraints(min_relative_acc=0.99, against="best-member"))
    assert rel.met and rel.chosen["trial"] == 1


def test_the_verdict_says_whether_distillation_is_needed() -> None:
    needed = make_table(
        _cert(0, 4000, 0.969, certify_rank=0, scratch_acc=0.95),
        _cert(1, 1000, 0.968, certify_rank=1, scratch_acc=0.95),
    )
    rec = recommend(needed, Constraints(max_gap=0.005))
    assert claims.verdict(rec).startswith("Distillation is needed at 0.5 pp")
    not_needed = make_table(
        _cert(0, 4000, 0.969, certify_rank=0, scratch_acc=0.969),
        _cert(1, 1000, 0.968, certify_rank=1, scratch_acc=0.968),
    )
    rec = recommend(not_needed, Constraints(max_gap=0.005))
    assert "Distillation is not needed at 0.5 pp" in claims.text(rec)
    assert "1,000 params trained from scratch" in claims.verdict(rec)


def test_nothing_certified_says_why_and_how_many_test_examples_it_would_take() -> None:
    """The first candidate's bound, its observed gap, and the test examples at which the
    certification bound itself (not a normal approximation of it) would clear the tolerance
    at the observed rates; or that no test split certifies it."""
    from bench.stats import paired_bound

    near = make_table(
        _cert(
            0,
            4000,
            0.966,
            certify_rank=0,
            n_test=1000,
            disagree=0.03,
            certify_max_gap=0.01,
            certify_bound=0.0146,  # Tango's bound for these counts (19, 15) at level 0.05
        ),
        _cert(1, 1000, 0.95, certify_rank=1, n_test=1000, certify_max_gap=0.01),
    )
    rec = recommend(near, Constraints(max_gap=0.01))
    s = rec.shortfall
    assert not rec.met and s is not None and s.row["trial"] == 0 and s.n_test == 1000
    row = near.set_index("trial").loc[0]
    a, b = int(row["ens_not_file"]), int(row["file_not_ens"])
    level = float(row["certify_alpha"])
    assert s.bound == row["certify_bound"] and math.isclose(s.gap, (a - b) / 1000)

    def bound_at(m: int) -> float:
        return paired_bound(a * m / 1000, b * m / 1000, m, 1 - level)

    assert s.n_needed is not None and s.n_needed > 1000
    assert bound_at(s.n_needed) <= 0.01 < bound_at(s.n_needed - 1)
    line = claims.shortfall(rec)
    assert line.startswith("Nothing is certified at 1 pp because the first candidate")
    assert f"about {s.n_needed:,} test examples" in line and line in claims.text(rec)
    far = make_table(_cert(0, 4000, 0.95, certify_rank=0, n_test=1000, certify_max_gap=0.01))
    rec = recommend(far, Constraints(max_gap=0.01))
    assert rec.shortfall is not None and rec.shortfall.n_needed is None
    assert "its observed gap exceeds the tolerance" in claims.shortfall(rec)


def test_the_verdict_never_contradicts_its_own_certification_table() -> None:
    """On 300 random rounds: "needed" never stands beside a scratch twin no larger than the
    shipped student whose bound in the table is within the tolerance; "not needed" always
    names such a twin."""
    from bench.stats import paired_bound
    from tests.bench_tests.conftest import discordant_counts

    rng = np.random.default_rng(33)
    kinds = set()
    for _ in range(200):
        accs = np.sort(rng.uniform(0.955, 0.972, 4))[::-1]
        rows = []
        for k in range(4):
            scratch = float(accs[k] - rng.uniform(-0.01, 0.02))
            disagree = float(rng.uniform(0.002, 0.02))
            # the table's scratch bound as a run writes it: Tango's, from the same counts
            a, b = discordant_counts(0.97 - scratch, 4000, disagree)
            bound = paired_bound(a, b, 4000, 0.95)
            rows.append(
                _cert(
                    k, 8000 >> k, float(accs[k]), certify_rank=k, scratch_acc=scratch,
                    disagree=disagree, scratch_certify_bound=bound,
                )
            )  # fmt: skip
        table = make_table(*rows)
        rec = recommend(table, Constraints(max_gap=0.005))
        if rec.verdict is None:
            continue
        kinds.add(rec.verdict.kind)
        part = table[table["phase"] == "certify"]
        size = rec.chosen["student_params"]
        twins = part[part["student_params"] <= size]
        within = (twins["scratch_certify_bound"] <= 0.005).any()
        if rec.verdict.kind == "needed":
            assert not within
            assert all(t.low > 0.005 for t in rec.verdict.twins)
        if rec.verdict.kind == "not_needed":
            assert rec.verdict.witness is not None and rec.verdict.witness.high <= 0.005
            assert rec.verdict.witness.params <= size
    assert kinds == {"needed", "not_needed", "inconclusive"}


def test_a_certification_row_replaces_its_search_row_in_the_tables() -> None:
    table = make_table(
        {"trial": 0, "phase": "search", "student_flops": 100},
        {"trial": 1, "phase": "search", "student_flops": 500},
        _cert(1, 250, 0.968),
    )
    c = candidates(table, "t")
    assert list(zip(c["trial"], c["phase"], strict=True)) == [(0, "search"), (1, "certify")]


def test_recommendations_on_few_seeds_or_small_test_sets_carry_warnings() -> None:
    table = make_table(_cert(0, 1000, 0.969, n_seeds=2, n_test=114, half_ci=0.001))
    rec = recommend(table, Constraints(max_gap=0.005))
    assert rec.met
    text = claims.text(rec)
    assert "WARNING: it rests on 2 seed(s), fewer than 3" in text
    assert "WARNING: it rests on 114 test examples, fewer than about 1,000" in text
    clean = recommend(make_table(_cert(0, 1000, 0.969)), Constraints(max_gap=0.005))
    assert claims.warnings(clean) == []


def test_warnings_for_a_weak_ensemble_and_a_student_larger_than_it() -> None:
    table = make_table(
        _cert(
            0,
            300_000,
            0.962,
            ensemble_acc=0.96,
            best_member_acc=0.965,
            ensemble_params=100_000,
            certify_max_gap=0.01,
        )
    )
    rec = recommend(table, Constraints(max_gap=0.01))
    assert any("less accurate than its best member" in w for w in claims.warnings(rec))
    assert any("3.0x the ensemble's parameters" in w for w in claims.warnings(rec))
    assert "3.0 times the size of the ensemble" in claims.text(rec)


def test_json_is_strict_and_has_no_private_keys() -> None:
    rec = recommend(
        make_table(_cert(0, 1000, 0.969, latency_gpu_b1_p50_ms=float("nan"))),
        Constraints(max_gap=0.005),
    )
    text = claims.to_json(rec)

    def refuse(name: str) -> None:
        raise ValueError(name)

    data = json.loads(text, parse_constant=refuse)  # NaN / Infinity would raise
    assert data["met"] is True and data["chosen"]["latency_gpu_b1_p50_ms"] is None
    assert not any(k.startswith("_") for k in data["chosen"])
    assert data["certification"]["seed_list"] == [2_000_000_000 + i for i in range(5)]


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
