"""``[search] strategy = "predict"``: the capacity law chooses the sizes the search trains."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.config.suite import load_suite, suite_from_dict
from bench.records import read_trials
from bench.run.options import RunOptions
from bench.run.sweep import run_suite
from bench.search.predict import EXPLORE, NEIGHBOURS
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
    first = search.iloc[: 2 * len(EXPLORE)]  # two depths × the explored positions
    assert sorted(first["arch_depth"].tolist()) == [1] * len(EXPLORE) + [2] * len(EXPLORE)
    for _, part in first.groupby("arch_depth"):
        ratio = part["param_ratio"].to_numpy()
        want = [0.002 * (0.5 / 0.002) ** w for w in EXPLORE]
        assert all(
            math.isclose(r, w, rel_tol=0.35) for r, w in zip(sorted(ratio), want, strict=True)
        ), ratio
    # it stopped on its own, well inside the budget of 30
    assert 2 * len(EXPLORE) < len(search) < 30
    # every later trial is one of a prediction's neighbours, in one shape per batch
    later = search.iloc[2 * len(EXPLORE) :]
    assert len(later) <= len(NEIGHBOURS) * 8
    assert search["arch"].nunique() == len(search)  # nothing trained twice
    # the first aimed batch: one shape, sizes in the ratios of NEIGHBOURS (1, 1.5, 2.25)
    aimed = later.iloc[: len(NEIGHBOURS)]
    assert aimed["arch_depth"].nunique() == 1
    p = np.sort(aimed["student_params"].to_numpy(float))
    assert ((p[1:] / p[:-1] > 1.2) & (p[1:] / p[:-1] < 2.6)).all(), p  # a trained one is skipped


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
