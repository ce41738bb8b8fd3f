"""The capacity axis and successive halving on epochs, as a user runs them."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from bench.config.suite import load_suite
from bench.records import read_trials
from bench.report.tables import time_by_size
from bench.run.options import RunOptions
from bench.run.sweep import run_suite
from bench.search.halving import promoted, rung_epochs
from bench.study import Key, StorageSpec, journal_path, open_storage
from kdcore import build_student, count_flops, count_params

CAPACITY = {
    "width = { low = 4, high = 32, log = true }": "size = { low = 0.005, high = 0.2, log = true }",
    "[student]\nepochs = 3": "[student]\nepochs = 12",
    "trials = 3": 'trials = 10\nfidelity = "halving"\nmin_epochs = 2',
}


def test_rung_epochs() -> None:
    assert rung_epochs(3, 3, 30) == [3, 9]  # not 27: it would save 3 of 30 epochs
    assert rung_epochs(3, 3, 27) == [3, 9]
    assert rung_epochs(2, 3, 12) == [2]
    assert rung_epochs(2, 2, 16) == [2, 4, 8]
    assert rung_epochs(5, 2, 5) == []


def test_the_rung_rule_keeps_the_top_third() -> None:
    peers = [(0.90, 1.0), (0.80, 1.0), (0.70, 1.0), (0.60, 1.0), (0.50, 1.0)]
    assert promoted((0.10, 1.0), peers[:2], 3, pareto=False)  # warm-up: < eta peers
    # 6 trials, top ceil(6/3) = 2 go on: 0.85 is second, 0.75 third.
    assert promoted((0.85, 1.0), peers, 3, pareto=False)
    assert not promoted((0.75, 1.0), peers, 3, pareto=False)
    assert not promoted((0.90, 1.0), [(0.90, 1.0)] * 6, 3, pareto=False)  # ties: peers first


def test_the_pareto_rung_rule_never_halves_the_capacity_frontier() -> None:
    peers = [(0.95, 1000.0), (0.94, 500.0), (0.93, 200.0), (0.80, 900.0), (0.70, 800.0)]
    assert promoted((0.60, 10.0), peers, 3, pareto=True)  # the smallest: an end of the front
    assert promoted((0.99, 5000.0), peers, 3, pareto=True)  # the most accurate: the other end
    assert promoted((0.935, 350.0), peers, 3, pareto=True)  # inside the front: not dominated
    assert not promoted((0.50, 950.0), peers, 3, pareto=True)  # dominated
    assert not promoted((0.92, 300.0), peers, 3, pareto=True)  # (0.93, 200) is smaller, better
    # Off the front, the top third still goes on: 8 trials, 3 promoted by rank, and the
    # second front's crowding ends rank first.
    crowd = [*peers, (0.97, 2000.0), (0.85, 950.0)]
    assert not promoted((0.949, 1500.0), crowd, 3, pareto=True)  # front 0 fills the top 3
    assert promoted((0.96, 1500.0), crowd, 3, pareto=True)  # a fifth point on the front


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    from tests.bench_tests.conftest import TINY_SUITE

    tmp = tmp_path_factory.mktemp("capacity")
    text = TINY_SUITE
    for old, new in CAPACITY.items():
        assert old in text
        text = text.replace(old, new)
    suite = tmp / "cap.toml"
    suite.write_text(text)
    cache = tmp / "cache"
    a = run_suite(load_suite(suite), RunOptions(out_root=tmp / "a", cache_dir=cache))
    b = run_suite(load_suite(suite), RunOptions(out_root=tmp / "b", cache_dir=cache))
    return suite, a, b


@pytest.mark.slow
def test_students_are_sized_as_a_fraction_of_the_ensemble(runs) -> None:
    _suite, run, _ = runs
    trials = read_trials(run)
    study = _search_study(run)
    for t in study.get_trials():
        assert 0.005 <= t.params["size"] <= 0.2
        row = trials[(trials["phase"] == "search") & (trials["trial"] == t.number)].iloc[0]
        # the width is solved from the size, not sampled: an attribute, not a parameter
        assert "width" not in t.params
        assert row["arch_width"] == t.user_attrs[Key.DERIVED]["width"]
        assert row["arch_depth"] == t.params["depth"]
    done = trials[trials["state"] == "complete"]
    sizes = {t.number: t.params["size"] for t in study.get_trials()}
    for _, r in done[done["phase"] == "search"].iterrows():
        # the width is the integer nearest the target on a log scale: within one unit's step
        assert abs(math.log(r["param_ratio"] / sizes[int(r["trial"])])) < 0.25


@pytest.mark.slow
def test_importances_of_the_search_study_rank_only_what_was_sampled(runs) -> None:
    """What optuna-dashboard computes from the study: no parameter whose distribution changes
    per trial (a solved width used to be one, shown as 0.00 with PED-ANOVA's "Some regimes
    for parameter `width`" warning)."""
    _, run, _ = runs
    study = _search_study(run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for evaluator in (  # the report's, then optuna-dashboard's (its default call)
            optuna.importance.FanovaImportanceEvaluator(seed=0),
            optuna.importance.PedAnovaImportanceEvaluator(),
        ):
            imp = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t: -t.values[0]
            )
            assert "width" not in imp, (evaluator, imp)
            assert set(imp) <= {"size", "depth", "temperature", "alpha"}, imp
    regimes = [str(w.message) for w in caught if "regimes for parameter" in str(w.message)]
    assert not regimes, regimes


@pytest.mark.slow
def test_halving_stops_trials_by_the_documented_rule_and_records_why(runs) -> None:
    _, run, _ = runs
    trials = read_trials(run)
    search = trials[trials["phase"] == "search"].set_index("trial")
    pruned = search[search["state"] == "pruned"]
    assert len(pruned) >= 1 and (search["state"] != "fail").all()
    study = _search_study(run)
    rungs = {t.number: t.user_attrs.get(Key.RUNGS, {}) for t in study.get_trials()}
    # the batch a trial was asked in: its peers are the trials of earlier batches only
    batch = {t.number: t.user_attrs[Key.GROUP]["batch"] for t in study.get_trials()}
    for number, reached in rungs.items():
        for epoch, (acc, flops) in reached.items():
            peers = [tuple(r[epoch]) for n, r in rungs.items() if n < batch[number] and epoch in r]
            go_on = promoted((acc, flops), peers, 3, pareto=True)
            stopped_here = (
                search.loc[number, "state"] == "pruned" and max(reached, key=int) == epoch
            )
            assert go_on != stopped_here, (number, epoch)
        if search.loc[number, "state"] == "pruned":
            last = max(reached, key=int)
            assert f"stopped at epoch {last} by successive halving" in str(
                search.loc[number, "fail_reason"]
            )
    assert set().union(*rungs.values()) <= {"2", "6"}


@pytest.mark.slow
def test_the_same_suite_stops_the_same_trials(runs) -> None:
    _, a, b = runs
    cols = ["phase", "trial", "state", "arch", "fail_reason", "student_acc"]
    pd.testing.assert_frame_equal(read_trials(a)[cols], read_trials(b)[cols])


@pytest.mark.slow
def test_pruned_trials_carry_their_size_and_the_time_they_ran(runs) -> None:
    _, run, _ = runs
    trials = read_trials(run)
    pruned = trials[trials["state"] == "pruned"]
    assert len(pruned) and (pruned["trial_time_s"] > 0).all()
    for _, r in pruned.iterrows():
        model = build_student(
            "mlp", (8,), 3, width=int(r["arch_width"]), depth=int(r["arch_depth"])
        )
        assert r["student_params"] == count_params(model)
        assert r["student_flops"] == count_flops(model, torch.zeros(1, 8))
    spent = time_by_size(trials, "tiny")
    assert spent["trials"].sum() == len(trials)
    assert spent["pruned"].sum() == len(pruned)
    # each bucket's seconds are rounded to 0.1 s
    assert spent["total_s"].sum() == pytest.approx(
        trials["trial_time_s"].sum(), abs=0.05 * len(spent) + 1e-9
    )
    assert spent["share %"].sum() == pytest.approx(100, abs=0.2)


def _search_study(run: Path) -> optuna.Study:
    storage = open_storage(StorageSpec(path=str(journal_path(run))))
    (name,) = [s.study_name for s in storage.get_all_studies() if ":certify" not in s.study_name]
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_a_replay_of_a_sized_suite_trains_the_same_architectures(runs, tmp_path: Path) -> None:
    """--replay enqueues each recorded configuration as the space's own params: the size (its
    realised parameter ratio, which solves to the same width) rather than the derived width,
    which is not a parameter of a sized space and used to be dropped (the replay then drew
    fresh sizes)."""
    suite, run, _ = runs
    other = tmp_path / "other.toml"  # another sampler seed: nothing to draw the same sizes
    other.write_text(suite.read_text().replace("[budget]\n", "[budget]\nsampler_seed = 7\n", 1))
    opts = RunOptions(out_root=tmp_path, cache_dir=suite.parent / "cache", replay=run)
    again = read_trials(run_suite(load_suite(other), opts))
    first = read_trials(run)
    cols = ["arch", "temperature", "alpha"]
    search = [
        f[f["phase"] == "search"].sort_values("trial")[cols].reset_index(drop=True)
        for f in (first, again)
    ]
    pd.testing.assert_frame_equal(search[0], search[1])
