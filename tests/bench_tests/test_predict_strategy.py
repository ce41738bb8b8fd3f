"""``[search] strategy = "predict"``: the capacity law chooses the sizes the search trains."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest

from bench.config import DEFAULT_MAX_GAP
from bench.config.suite import load_suite, suite_from_dict
from bench.decision.protocol import certify_margin, claim_level
from bench.records import read_trials
from bench.run.options import RunOptions
from bench.run.sweep import run_suite
from bench.search.predict import EXPLORE, LADDER, NEIGHBOURS, SPARE, explore_positions, ladder
from bench.search.recovery import group_plan
from bench.study import StorageSpec, journal_path, open_storage
from tests.bench_tests.conftest import assert_refused

PREDICT = {
    "width = { low = 4, high = 32, log = true }": "size = { low = 0.002, high = 0.5, log = true }",
    "alpha = { low = 0.5, high = 1.0 }": 'alpha = { low = 0.5, high = 1.0 }\nstrategy = "predict"',
    "[student]\nepochs = 3": "[student]\nepochs = 8",
    "trials = 3": 'trials = 30\nfidelity = "halving"\nmin_epochs = 2',
}


def test_the_strategy_is_read_and_kept(tiny_suite) -> None:
    suite = load_suite(tiny_suite(replace=PREDICT))
    assert suite.search.strategy == "predict"
    again = suite_from_dict(suite.to_dict())
    assert again.search.strategy == "predict" and again.digest() == suite.digest()
    plain = load_suite(tiny_suite(name="plain.toml"))
    assert plain.search.strategy == "sample" and "strategy" not in plain.to_dict()["search"]


def test_an_unknown_strategy_is_refused(tiny_suite, tmp_path: Path, capsys) -> None:
    from bench.cli import main

    path = tiny_suite(
        replace={
            "alpha = { low = 0.5, high = 1.0 }": 'strategy = "guess"\nalpha = { low = 0.5, high = 1.0 }'
        }
    )
    code = main(["run", str(path), "--out", str(tmp_path / "r"), "-q"])
    out, err = capsys.readouterr()
    assert_refused(
        code, out, err,
        "The 'strategy' parameter of [search] must be one of 'sample', 'predict'. Got 'guess'",
        tmp_path / "r",
    )  # fmt: skip


@pytest.mark.slow
def test_predict_explores_the_small_end_then_aims_at_the_predicted_size(
    tiny_suite, tmp_path: Path
) -> None:
    suite = load_suite(tiny_suite(replace=PREDICT))
    run = run_suite(suite, RunOptions(out_root=tmp_path / "r", cache_dir=tmp_path / "c"))
    rows = read_trials(run)
    search = rows[rows["phase"] == "search"].sort_values("trial")
    # every trial trained its full epochs: halving is off under this strategy
    assert (search["state"] == "complete").all(), search[["state", "fail_reason"]]
    where = explore_positions(2)
    assert where == (0.0, 0.2, 0.4)  # 2 shapes: 3 sizes each leave the law 2 spare dof
    first = search.iloc[: 2 * len(where)]  # two depths × the explored positions
    assert sorted(first["arch_depth"].tolist()) == [1] * len(where) + [2] * len(where)
    for _, part in first.groupby("arch_depth"):
        ratio = part["param_ratio"].to_numpy()
        want = [0.002 * (0.5 / 0.002) ** w for w in where]
        assert all(
            math.isclose(r, w, rel_tol=0.35) for r, w in zip(sorted(ratio), want, strict=True)
        ), ratio
    # it stopped on its own, well inside the budget of 30
    assert 2 * len(where) < len(search) < 30
    assert search["arch"].nunique() == len(search)  # nothing trained twice
    # the first aimed batch: one shape; the prediction and 1.5 × it (one may be skipped as
    # trained: 1.5 × can land on an explored size), then at most one anchor far above them
    batch = _batches(run)
    assert sorted(set(batch.values()))[:1] == [0]
    second = sorted(set(batch.values()))[1]
    aimed = search[search["trial"].map(batch) == second]
    assert aimed["arch_depth"].nunique() == 1
    p = np.sort(aimed["student_params"].to_numpy(float))
    near, far = p[p <= p[0] * 2.6], p[p > p[0] * 2.6]
    assert (near[1:] / near[:-1] > 1.2).all() and len(near) <= len(NEIGHBOURS), p
    assert len(far) <= 1, p
    # it stopped with a student certification can start from (validation gap within the
    # tolerance by certification's margin), or with the range's largest student trained
    # (validation and test have the same size here: 20 % of 1,200 rows each)
    gap = search["ensemble_val_acc"] - search["student_val_acc"]
    margin = certify_margin(
        search["student_val_acc"], search["ensemble_val_acc"], search["n_test"],
        float(search["n_test"].max()), claim_level(0.05, 0, 1),
    )  # fmt: skip
    safe = (gap + margin <= DEFAULT_MAX_GAP).any()
    assert safe or search["param_ratio"].max() > 0.5 / 1.35, search[["arch", "param_ratio"]]


def _batches(run: Path) -> dict[int, int]:
    """Each search trial's batch (the batch's first trial number), from the study."""
    storage = open_storage(StorageSpec(path=str(journal_path(run))))
    (name,) = [s.study_name for s in storage.get_all_studies() if ":certify" not in s.study_name]
    study = optuna.load_study(study_name=name, storage=storage)
    return {
        t.number: int(plan["batch"])
        for t in study.get_trials(deepcopy=False)
        if (plan := group_plan(study, t)) is not None
    }


def test_explore_positions_leave_the_law_spare_degrees_of_freedom() -> None:
    for shapes in range(1, 9):
        where = explore_positions(shapes)
        assert where[0] == 0.0 and math.isclose(where[-1], EXPLORE) and len(where) >= 2
        assert shapes * len(where) >= shapes + 2 + SPARE  # points ≥ the law's parameters + spare
        assert shapes * (len(where) - 1) < shapes + 2 + SPARE or len(where) == 2  # the fewest
    assert [len(explore_positions(n)) for n in (1, 2, 3, 4)] == [5, 3, 3, 2]


def test_predict_needs_a_family_with_a_size_parameter() -> None:
    from torch import nn

    from bench.config.suite import parse_suite
    from bench.errors import InputError
    from kdcore import ArchParam, register_family

    register_family(
        "test_unsized",
        lambda shape, classes, rank: nn.Linear(shape[0], classes),
        (ArchParam("rank", int, (1, 64), (2, 8)),),
        "no size parameter (tests)",
        replace=True,
    )
    with pytest.raises(InputError, match="can be 'predict' only for a family with a size"):
        parse_suite({"student": {"family": "test_unsized"}, "search": {"strategy": "predict"}})


def test_the_ladder_fills_every_wide_gap_up_to_where_certification_starts() -> None:
    # digits at 3 pp: predicted 836 params, certification starts at 19,210 (nothing safe)
    trained = np.array([310, 685, 865, 1285, 1585, 2047, 2509, 10060, 19210], dtype=float)
    (mid,) = ladder(trained, 836.0, 19210.0)
    assert math.isclose(mid, math.sqrt(2509 * 10060))  # the one gap wider than LADDER
    # nothing above the top, nothing below the prediction counts; each gap gets its middle
    got = ladder(np.array([100.0, 5000.0, 90000.0]), 1000.0, 20000.0)
    assert np.allclose(got, [math.sqrt(1000 * 5000), math.sqrt(5000 * 20000)])
    # a whole ladder, a top at or below the prediction, or no prediction: nothing to train
    assert ladder(np.array([1000.0, 2000.0, 4000.0]), 1000.0, 8000.0) == []
    assert ladder(trained, 20000.0, 19210.0) == []
    assert ladder(trained, math.inf, 19210.0) == []
    # every gap the ladder leaves is at most LADDER once its middles are trained
    filled = np.sort(np.concatenate([trained, ladder(trained, 836.0, 19210.0)]))
    span = filled[(filled >= 836.0) & (filled <= 19210.0)]
    assert (span[1:] / span[:-1] <= LADDER).all(), span
