from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import InputError
from bench.report.compare import parse_threshold
from tests.bench_tests.conftest import make_run_dir


def _run_dir(root: Path, name: str, rows: list[dict]) -> Path:
    return make_run_dir(root, name, rows)


BASE = [  # two certification candidates, the larger tested first
    {
        "trial": 0,
        "phase": "certify",
        "certify_rank": 1,
        "n_seeds": 5,
        "width": 8,
        "student_flops": 1000,
        "student_acc": 0.968,
        "latency_cpu_b1_p50_ms": 0.05,
    },
    {
        "trial": 1,
        "phase": "certify",
        "certify_rank": 0,
        "n_seeds": 5,
        "width": 32,
        "student_flops": 4000,
        "student_acc": 0.969,
        "latency_cpu_b1_p50_ms": 0.08,
    },
]


def test_identical_runs_exit_0(tmp_path: Path, capsys) -> None:
    a = _run_dir(tmp_path, "a", BASE)
    b = _run_dir(tmp_path, "b", BASE)
    assert (
        main(
            [
                "compare",
                str(a),
                str(b),
                "--fail",
                "latency_cpu_b1_p50_ms:10%",
                "--fail",
                "acc_gap:0.5pp",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 matched configurations" in out and "No regression." in out


def test_constructed_regression_exits_1(tmp_path: Path, capsys) -> None:
    a = _run_dir(tmp_path, "a", BASE)
    slower = [dict(r, latency_cpu_b1_p50_ms=r["latency_cpu_b1_p50_ms"] * 1.5) for r in BASE]
    b = _run_dir(tmp_path, "b", slower)
    assert main(["compare", str(a), str(b), "--fail", "latency_cpu_b1_p50_ms:10%"]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    worse_acc = [dict(r, student_acc=r["student_acc"] - 0.01) for r in BASE]
    c = _run_dir(tmp_path, "c", worse_acc)
    assert main(["compare", str(a), str(c), "--fail", "acc_gap:0.5pp"]) == 1
    capsys.readouterr()
    # Within the 2 pp threshold, but no student meets 0.5 pp any more: still a regression.
    assert main(["compare", str(a), str(c), "--fail", "acc_gap:2pp"]) == 1
    out = capsys.readouterr().out
    assert "[ok] acc_gap:2pp" in out and "recommendation lost" in out
    faster = [dict(r, latency_cpu_b1_p50_ms=r["latency_cpu_b1_p50_ms"] * 0.5) for r in BASE]
    d = _run_dir(tmp_path, "d", faster)
    assert (
        main(["compare", str(a), str(d), "--fail", "latency_cpu_b1_p50_ms:10%"]) == 0
    )  # faster is fine


def test_threshold_parsing() -> None:
    t = parse_threshold("acc_gap:0.5pp")
    assert (t.metric, t.limit, t.kind) == ("acc_gap", 0.5, "pp")
    assert t.worse_by(0.010, 0.012) == pytest.approx(0.2)
    assert parse_threshold("student_acc:1pp").worse_by(0.97, 0.95) == pytest.approx(2.0)
    with pytest.raises(InputError, match="must name a result column"):
        parse_threshold("speed:10%")
    with pytest.raises(InputError, match="must look like"):
        parse_threshold("latency_cpu_b1_p50_ms>10")


def test_every_numeric_column_has_a_declared_direction() -> None:
    from bench.records import BETTER, COLUMNS

    numeric = [c.name for c in COLUMNS if c.dtype not in ("string", "bool", "boolean")]
    assert numeric and sorted(BETTER) == sorted(numeric)
    assert set(BETTER.values()) == {"higher", "lower", "-"}
    for name in numeric:  # a drop of an accuracy-like column is worse, a rise of a cost is worse
        if BETTER[name] == "-":
            with pytest.raises(InputError, match="better direction"):
                parse_threshold(f"{name}:10%")
            continue
        t = parse_threshold(f"{name}:10%")
        down = t.worse_by(1.0, 0.9)
        assert (down > 0) == (BETTER[name] == "higher"), name


@pytest.mark.parametrize(
    "name",
    [  # the columns the old hand list judged backwards (a drop counted as an improvement)
        "rel_acc", "rel_acc_ci_low", "student_acc_ci_low", "kd_gain_ci_low",
        "specialist_gain", "generalist_taught_acc", "mean_member_acc", "scratch_val_acc",
        "file_acc",
    ],
)  # fmt: skip
def test_a_drop_of_an_accuracy_column_is_a_regression(name: str) -> None:
    assert parse_threshold(f"{name}:1%").worse_by(0.9, 0.8) > 0


def test_deltas_carry_units(tmp_path: Path, capsys) -> None:
    a = _run_dir(tmp_path, "a", BASE)
    slower = [dict(r, latency_cpu_b1_p50_ms=r["latency_cpu_b1_p50_ms"] + 0.01) for r in BASE]
    b = _run_dir(tmp_path, "b", slower)
    assert main(["compare", str(a), str(b), "--fail", "latency_cpu_b1_p50_ms:0.001"]) == 1
    out = capsys.readouterr().out
    assert "B worse by 0.0100 ms" in out
    assert main(["compare", str(b), str(a), "--fail", "latency_cpu_b1_p50_ms:5%"]) == 0
    assert "B better by" in capsys.readouterr().out
    with pytest.raises(InputError, match="pp only for fraction columns"):
        parse_threshold("latency_cpu_b1_p50_ms:1pp")
