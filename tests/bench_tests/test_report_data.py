"""The plotted data of every figure, exactly, on a small fixture table."""

from __future__ import annotations

import math

import pandas as pd

from bench.report import plots, tables
from tests.bench_tests.conftest import make_table


def _fixture() -> pd.DataFrame:
    return make_table(
        {
            "trial": 0,
            "width": 4,
            "student_params": 100,
            "student_flops": 200,
            "student_acc": 0.90,
            "scratch_acc": 0.91,
            "temperature": 2.0,
            "student_val_acc": 0.90,
            "latency_cpu_b1_p50_ms": 0.01,
        },
        {
            "trial": 1,
            "width": 16,
            "student_params": 1000,
            "student_flops": 2000,
            "student_acc": 0.96,
            "scratch_acc": 0.95,
            "temperature": 8.0,
            "student_val_acc": 0.95,
            "latency_cpu_b1_p50_ms": 0.03,
        },
        {
            "trial": 2,
            "width": 16,
            "student_params": 1000,
            "student_flops": 2000,
            "student_acc": 0.955,
            "scratch_acc": 0.95,
            "temperature": 2.0,
            "student_val_acc": 0.96,
            "latency_cpu_b1_p50_ms": 0.03,
        },
        {
            "trial": 3,
            "width": 64,
            "student_params": 10000,
            "student_flops": 20000,
            "student_acc": 0.95,
            "scratch_acc": 0.94,
            "temperature": 8.0,
            "student_val_acc": 0.955,
            "latency_cpu_b1_p50_ms": 0.02,
        },
        {"trial": 4, "state": "fail", "fail_reason": "diverged", "student_val_acc": math.nan},
    )


def test_pareto_data() -> None:
    data = plots.pareto_data(_fixture(), "student_flops", recommended_trial=2)
    assert list(data["trial"]) == [0, 1, 2, 3]  # failed trial excluded, sorted by cost
    assert [round(g, 6) for g in data["gap_pp"]] == [7.0, 1.0, 1.5, 2.0]
    assert list(data["on_front"]) == [True, True, False, False]
    assert list(data["recommended"]) == [False, False, True, False]
    assert [round(v, 6) for v in data["gap_high_pp"] - data["gap_pp"]] == [0.2] * 4
    lat = plots.pareto_data(_fixture(), "latency_cpu_b1_p50_ms")
    assert list(lat.loc[lat["on_front"], "trial"]) == [0, 3, 1]


def test_capacity_data_takes_the_best_validation_temperature_per_size() -> None:
    data = plots.capacity_data(_fixture())
    dist = data[data["kind"] == "distilled"].set_index("student_params")
    assert list(dist.index) == [100, 1000, 10000]
    assert (
        dist.loc[1000, "acc"] == 0.955 and dist.loc[1000, "temperature"] == 2.0
    )  # trial 2 wins on val
    scratch = data[data["kind"] == "scratch"].set_index("student_params")
    assert list(scratch["acc"]) == [0.91, 0.95, 0.94]


def test_temperature_map_data() -> None:
    data = plots.temperature_map_data(_fixture(), n_t_bins=2)
    assert list(data.index) == [64, 256, 4096]  # parameter bins (powers of 4): 100, 1000, 10000
    assert data.shape == (3, 2)
    assert (
        round(data.iloc[1, 0], 6) == 1.5 and round(data.iloc[1, 1], 6) == 1.0
    )  # 1,000 parameters at T 2 / T 8
    assert round(data.iloc[0, 0], 6) == 7.0 and math.isnan(data.iloc[0, 1])


def test_kd_gain_data() -> None:
    data = plots.kd_gain_data(_fixture())
    assert list(data["trial"]) == [0, 1, 2, 3]
    assert [round(v, 6) for v in data["kd_gain_pp"]] == [-1.0, 1.0, 0.5, 1.0]


def test_history_data() -> None:
    data = plots.history_data(_fixture())
    assert list(data["trial"]) == [0, 1, 2, 3, 4]
    assert [round(v, 6) for v in data["best_so_far_pct"]] == [90.0, 95.0, 96.0, 96.0, 96.0]
    assert math.isnan(data["val_acc_pct"].iloc[4]) and data["state"].iloc[4] == "fail"


def test_tables() -> None:
    t = tables.trials_table(_fixture(), "t")
    assert list(t["trial"]) == [0, 1, 2, 3]  # by FLOPs, then the smaller gap (trial 1 before 2)
    assert "gap pp" in t.columns and len(t) == 4
    failed = tables.failed_table(_fixture(), "t")
    assert list(failed["fail_reason"]) == ["diverged"]
    md = tables.markdown_table(failed)
    assert md.startswith("| trial |") and "diverged" in md
    lat = tables.latency_table(_fixture(), "t", 2)
    assert list(lat["CPU b1 p50 ms"]) == [0.5, 0.2, 0.03]


def test_temperature_map_with_close_temperatures() -> None:
    """Two temperatures 0.09 apart gave duplicate bin labels and a ValueError."""
    table = make_table(
        {"trial": 0, "temperature": 7.63, "student_params": 375},
        {"trial": 1, "temperature": 7.72, "student_params": 147},
    )
    data = plots.temperature_map_data(table)
    assert data.shape[1] == 5 and len(set(data.columns)) == 5
