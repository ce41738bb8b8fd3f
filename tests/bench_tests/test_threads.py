"""``[measure] train_threads = "auto"``: training threads chosen by student size (issue #13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.records import read_trials
from bench.threads import AUTO_MIN_FLOPS, ThreadPolicy, all_cores


def test_auto_gives_small_students_one_thread_and_large_ones_every_core() -> None:
    policy = ThreadPolicy("auto", cores=8)
    assert policy.threads(AUTO_MIN_FLOPS - 1) == 1
    assert policy.threads(AUTO_MIN_FLOPS) == 8


def test_a_fixed_setting_is_the_same_in_every_worker() -> None:
    """The thread count decides floating-point results, so it never depends on --workers
    (issue #19): a fixed N is N in every worker."""
    assert ThreadPolicy(0, cores=8).threads(10) == 8
    assert ThreadPolicy(6, cores=8).threads(1e9) == 6
    assert ThreadPolicy(1, cores=8).threads(1e9) == 1


@pytest.mark.parametrize("value", ['"many"', "-1", "2.5", "true"])
def test_a_bad_train_threads_names_the_key_the_rule_and_the_value(
    tiny_suite, tmp_path: Path, capsys, value: str
) -> None:
    suite = tiny_suite(replace={"[measure]\n": f"[measure]\ntrain_threads = {value}\n"})
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "train_threads" in err and '"auto"' in err and value.strip('"').lower() in err.lower()


@pytest.mark.slow
def test_an_auto_run_records_the_threads_of_each_group(tiny_suite, tmp_path: Path) -> None:
    suite = tiny_suite(
        replace={
            "[measure]\n": '[measure]\ntrain_threads = "auto"\n',
            "width = { low = 4, high = 32, log = true }": "width = { low = 4, high = 400, log = true }",
            "depth = { low = 1, high = 2 }": "depth = 2",
            "trials = 3": "trials = 6",
        }
    )
    out = tmp_path / "r"
    assert main(["run", str(suite), "--out", str(out), "--reports", str(tmp_path / "p")]) == 0
    (run,) = [p for p in out.iterdir() if p.name != "teachers"]
    rows = read_trials(run)
    expected = [1 if f < AUTO_MIN_FLOPS else all_cores() for f in rows["student_flops"]]
    assert rows["train_threads"].tolist() == expected
    if all_cores() > 1:  # both sides of the rule were exercised
        assert rows["train_threads"].nunique() == 2
