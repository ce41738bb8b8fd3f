from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.durable.rundir import atomic_write_text
from bench.errors import InputError
from bench.records import COLUMNS, read_trials, to_frame, write_trials
from bench.tasks import DigitsTask, FileTask, SyntheticTask, load_task, task_from_file

ROOT = Path(__file__).resolve().parents[2]


def test_synthetic_split_is_stratified_and_scaled_on_train_only() -> None:
    task = load_task(
        SyntheticTask(n_samples=1000, n_features=8, n_informative=4, n_redundant=0, seed=3)
    )
    assert task.sizes() == {"train": 600, "val": 200, "test": 200}
    assert torch.allclose(task.x_train.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(task.x_train.std(0, unbiased=False), torch.ones(8), atol=1e-4)
    assert not torch.allclose(
        task.x_test.mean(0), torch.zeros(8), atol=1e-5
    )  # not refitted on test
    shares = [float((y == 1).float().mean()) for y in (task.y_train, task.y_val, task.y_test)]
    assert max(shares) - min(shares) < 0.01
    again = load_task(
        SyntheticTask(n_samples=1000, n_features=8, n_informative=4, n_redundant=0, seed=3)
    )
    assert torch.equal(task.x_test, again.x_test) and task.fingerprint() == again.fingerprint()


def test_digits_ships_with_sklearn() -> None:
    task = load_task(DigitsTask(name="digits"))
    assert task.input_shape == (1, 8, 8) and task.num_classes == 10
    assert sum(task.sizes().values()) == 1797


def test_user_csv_task(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"a": range(100), "b": [i % 7 for i in range(100)], "label": ["x", "y"] * 50}
    )
    frame.to_csv(tmp_path / "data.csv", index=False)
    task = load_task(FileTask(name="data", path=str(tmp_path / "data.csv"), target="label"))
    assert task.input_shape == (2,) and task.num_classes == 2
    assert task.class_names == ("x", "y")
    with pytest.raises(InputError, match="must have the label column 'target' = 'nope'"):
        load_task(FileTask(name="data", path=str(tmp_path / "data.csv"), target="nope"))


def test_a_saved_task_reads_back_the_same_for_local_workers(tmp_path: Path) -> None:
    """Local workers get the loaded task as a file; it must be the same task, bit for bit."""
    frame = pd.DataFrame({"a": range(60), "b": [i % 5 for i in range(60)], "y": ["p", "q"] * 30})
    frame.to_csv(tmp_path / "data.csv", index=False)
    for cfg in (
        DigitsTask(name="digits"),
        FileTask(name="data", path=str(tmp_path / "data.csv"), target="y", scale=False),
    ):
        task = load_task(cfg)
        task.save(tmp_path / "task.pt")
        back = task_from_file(tmp_path / "task.pt", cfg)
        assert back.fingerprint() == task.fingerprint()
        assert (back.name, back.config, back.num_classes, back.n_rows) == (
            task.name,
            task.config,
            task.num_classes,
            task.n_rows,
        )
        assert back.class_names == task.class_names and back.source == task.source
        for k in task.rows:
            assert (back.rows[k] == task.rows[k]).all()
        for a, b in ((back.scaler_mean, task.scaler_mean), (back.scaler_scale, task.scaler_scale)):
            assert (a is None and b is None) or (a == b).all()


def test_the_direction_lists_name_real_columns() -> None:
    from bench.records.schema import COLUMN_NAMES, HIGHER_IS_BETTER, NOT_JUDGED

    assert set(HIGHER_IS_BETTER) | set(NOT_JUDGED) <= set(COLUMN_NAMES)


def test_the_docs_show_exactly_the_result_columns() -> None:
    from bench.records import columns_markdown

    page = (ROOT / "docs" / "columns.md").read_text()
    assert columns_markdown() in page, (
        "regenerate the table of docs/columns.md: bench.records.columns_markdown()"
    )
    missing = [c.name for c in COLUMNS if f"`{c.name}`" not in page]
    assert not missing


def test_every_interval_and_bound_states_that_it_includes_the_test_set_error() -> None:
    """An interval over seeds alone looks precise on a small test split and is not: every
    interval, prediction interval and certification bound says what error it carries."""
    import re

    ranged = [c for c in COLUMNS if re.search(r"_(ci|pi)_(low|high)$|_bound", c.name)]
    assert len(ranged) >= 30
    silent = [c.name for c in ranged if "test-set error" not in c.meaning]
    assert not silent


def test_to_frame_has_every_column_and_refuses_undocumented_ones() -> None:
    frame = to_frame([{"trial": 1, "state": "complete", "latency_gpu_b1_p50_ms": None}])
    assert list(frame.columns) == [c.name for c in COLUMNS]
    assert (
        frame["latency_gpu_b1_p50_ms"].isna().all() and frame["latency_gpu_b1_noisy"].isna().all()
    )
    with pytest.raises(KeyError, match="undocumented"):
        to_frame([{"mystery": 1}])


def _row(trial: int) -> dict[str, object]:
    """A row with its key columns (a row without one reads as cut short)."""
    from bench.records import SCHEMA_VERSION

    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": "r",
        "task": "t",
        "trial": trial,
        "phase": "search",
        "state": "complete",
    }


def test_a_crash_while_writing_leaves_the_old_results_intact(tmp_path: Path, monkeypatch) -> None:
    write_trials(to_frame([_row(0)]), tmp_path)
    before = (tmp_path / "trials.csv").read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_trials(to_frame([_row(0), _row(1)]), tmp_path)
    assert (tmp_path / "trials.csv").read_text() == before
    assert len(read_trials(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.csv", "trials.parquet"]
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "x.txt", "new")
    assert not (tmp_path / "x.txt").exists()


def test_a_table_cut_short_is_refused_by_every_reader(tmp_path: Path) -> None:
    write_trials(to_frame([_row(0), {"trial": 1}]), tmp_path)  # the second row lost its keys
    with pytest.raises(InputError, match=r"rows without 'schema_version'.*kdbench doctor"):
        read_trials(tmp_path)


def test_a_table_of_an_older_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    old = to_frame([_row(0)]).assign(schema_version=2)
    write_trials(old, tmp_path)
    with pytest.raises(
        InputError,
        match=r"older kdbench \(schema 2; since then, schema 3: .*width.*schema 4: .*certif.*"
        r"schema 7: tolerances are fractions",
    ):
        read_trials(tmp_path)


def test_a_manifest_task_entry_reads_typed_with_nan_for_unknown_numbers() -> None:
    from bench.records import TaskEntry

    entry = TaskEntry.from_dict(
        {
            "num_classes": 3,
            "input_shape": [4],
            "class_names": ["a", "b", "c"],
            "teacher": {"ensemble_acc": 0.9, "params": None, "member_test_acc": [0.8, None]},
            "warnings": ["w"],
            "a key a later version added": 1,
        }
    )
    assert entry.input_shape == (4,) and entry.class_names == ("a", "b", "c")
    assert entry.teacher.ensemble_acc == 0.9 and math.isnan(entry.teacher.params)
    assert entry.teacher.member_test_acc[0] == 0.8 and math.isnan(entry.teacher.member_test_acc[1])
    assert entry.warnings == ("w",) and entry.teacher.specialists is None
