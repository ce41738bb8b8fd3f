"""Transfer sets ([transfer]): a fraction of the training split, omitted classes with the bias
fix, unlabeled rows taught by the teacher alone; every validation rule exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.config.suite import load_suite
from bench.group.transfer import apply_transfer, choose_bias_shift, read_unlabeled
from bench.records import read_trials
from bench.run.options import RunOptions
from bench.run.sweep import run_suite
from bench.stats import wilson
from bench.tasks import load_task
from tests.bench_tests.conftest import TINY_SUITE, assert_refused

# the tiny suite's task: synthetic, 1,200 rows, 8 features, classes "0", "1", "2"


def _raw_rows(n: int, seed: int = 5) -> np.ndarray:
    """Fresh rows like the tiny task's (same generator, another seed: none of its rows)."""
    from sklearn.datasets import make_classification

    x, _ = make_classification(
        n_samples=n,
        n_features=8,
        n_informative=6,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        random_state=seed,
    )
    return x


def _run(suite: Path, tmp_path: Path, capsys) -> tuple[int, str, str]:
    code = main(
        ["run", str(suite), "--out", str(tmp_path / "results"), "--reports", str(tmp_path / "rep")]
    )
    out, err = capsys.readouterr()
    return code, out, err


def _bad_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """case -> ([transfer] body, what the one line must say)."""
    np.savez(tmp_path / "seven.npz", X=np.zeros((20, 7)))
    pd.DataFrame(np.zeros((20, 9)), columns=[f"c{i}" for i in range(9)]).to_csv(
        tmp_path / "nine.csv", index=False
    )
    pd.DataFrame(np.full((5, 8), np.nan)).to_csv(tmp_path / "nan.csv", index=False)
    (tmp_path / "rows.txt").write_text("1,2,3\n")
    return {
        "unknown class": ("omit_classes = [7]", "'omit_classes' parameter of [transfer] must be"),
        "class twice": ('omit_classes = ["1", 1]', "each label once"),
        "every class": ("omit_classes = [0, 1, 2]", "keeps at least one class"),
        "empty class": ("fraction = 0.001", "'fraction' parameter of [transfer]"),
        "fraction 0": ("fraction = 0.0", "'fraction' parameter of [transfer]"),
        "fraction > 1": ("fraction = 1.5", "'fraction' parameter of [transfer]"),
        "bias without omit": ("bias_correction = true", "'bias_correction' parameter"),
        "missing file": ('unlabeled = "none.csv"', "an existing file"),
        "extension": ('unlabeled = "rows.txt"', "ending in .csv, .parquet or .npz"),
        "features (npz)": ('unlabeled = "seven.npz"', "8 features per row"),
        "features (csv)": ('unlabeled = "nine.csv"', "8 feature columns"),
        "not finite": ('unlabeled = "nan.csv"', "finite features"),
        "unknown key": ("fractoin = 0.5", "fractoin"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown class",
        "class twice",
        "every class",
        "empty class",
        "fraction 0",
        "fraction > 1",
        "bias without omit",
        "missing file",
        "extension",
        "features (npz)",
        "features (csv)",
        "not finite",
        "unknown key",
    ],
)
def test_bad_transfer_settings_exit_2_with_one_line_and_no_run_folder(
    case: str, tmp_path: Path, capsys
) -> None:
    body, expected = _bad_cases(tmp_path)[case]
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE + "\n[transfer]\n" + body + "\n")
    code, out, err = _run(suite, tmp_path, capsys)
    assert_refused(code, out, err, expected, tmp_path / "results")


def test_unlabeled_rows_of_the_held_out_splits_are_a_leak_and_refused(
    tmp_path: Path, capsys
) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    task = load_task(load_suite(suite).tasks[0])
    from sklearn.datasets import make_classification

    raw, _ = make_classification(  # the tiny task's own rows: its test rows among them
        n_samples=1200,
        n_features=8,
        n_informative=6,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        random_state=0,
    )
    leaked = np.concatenate([_raw_rows(30), raw[task.rows["test"][:1]]])
    pd.DataFrame(leaked).to_csv(tmp_path / "leak.csv", index=False)
    suite.write_text(TINY_SUITE + '\n[transfer]\nunlabeled = "leak.csv"\n')
    code, out, err = _run(suite, tmp_path, capsys)
    assert_refused(code, out, err, "1 such row(s)", tmp_path / "results")
    assert "row 30" in err


def test_unlabeled_rows_need_a_teacher_that_can_run_on_them(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    task = load_task(load_suite(suite).tasks[0])
    torch.save({"logits": torch.zeros(2, task.n_rows, 3)}, tmp_path / "logits.pt")
    pd.DataFrame(_raw_rows(30)).to_csv(tmp_path / "u.csv", index=False)
    text = TINY_SUITE.replace("[teacher]\nmembers = 2\n", '[teacher]\nlogits = "logits.pt"\n')
    suite.write_text(text + '\n[transfer]\nunlabeled = "u.csv"\n')
    code, out, err = _run(suite, tmp_path, capsys)
    assert_refused(code, out, err, "offline teacher", tmp_path / "results")


def test_the_transfer_set_is_a_stratified_seeded_fraction_without_the_omitted_classes(
    tmp_path: Path,
) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE + '\n[transfer]\nfraction = 0.1\nomit_classes = ["1"]\n')
    s = load_suite(suite)
    task = load_task(s.tasks[0])
    a, b = (apply_transfer(task, s.transfer, s.teacher) for _ in range(2))
    assert a.transfer is not None and np.array_equal(a.transfer, b.transfer)  # seeded
    y = task.y_train.numpy()
    per_class = np.bincount(y[a.transfer], minlength=3)
    full = np.bincount(y, minlength=3)
    assert per_class[1] == 0 and a.omitted == (1,)
    for k in (0, 2):
        assert per_class[k] == int(np.floor(0.1 * full[k] + 0.5))
    assert len(set(a.transfer.tolist())) == len(a.transfer)  # without replacement
    assert a.x_val is task.x_val and a.x_test is task.x_test  # held-out splits untouched


def test_unlabeled_files_read_as_the_tasks_features_scaled_like_train(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    task = load_task(load_suite(suite).tasks[0])
    raw = _raw_rows(12)
    pd.DataFrame(raw, columns=[f"f{i}" for i in range(8)]).assign(target=0).to_csv(
        tmp_path / "u.csv", index=False
    )
    np.savez(tmp_path / "u.npz", X=raw)
    want = (raw - task.scaler_mean) / task.scaler_scale
    for name in ("u.csv", "u.npz"):  # a label column, when present, is ignored
        got = read_unlabeled(str(tmp_path / name), task)
        assert got.shape == (12, 8)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(20))
def test_the_bias_shift_is_the_first_best_one_on_a_fine_grid(seed: int) -> None:
    """Against brute force: no shift on a fine grid does better, and the shift lies in the
    first run of best shifts (every grid shift from the smallest best one up to it is best)."""
    g = torch.Generator().manual_seed(seed)
    n, c = 200, 5
    y = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) + 2.0 * torch.nn.functional.one_hot(y, c)
    logits[:, 3] -= 3.0  # class 3 under-predicted, as an omitted class is
    omitted = (3,) if seed % 2 else (1, 3)
    b = choose_bias_shift(logits, y, omitted)

    def acc(shift: float) -> float:
        z = logits.clone()
        z[:, list(omitted)] += shift
        return float((z.argmax(-1) == y).float().mean())

    grid = np.linspace(0.0, 12.0, 4801)
    best = max(acc(float(s)) for s in grid)
    assert b >= 0 and acc(b) >= best - 1e-12
    first = min(float(s) for s in grid if acc(float(s)) >= best - 1e-12)
    assert all(acc(float(s)) >= best - 1e-12 for s in grid if first <= s <= b)


@pytest.mark.slow
def test_an_omitted_digit_is_never_predicted_by_scratch_and_recovered_by_the_bias_fix(
    tmp_path: Path, capsys
) -> None:
    suite = tmp_path / "omit.toml"
    suite.write_text(
        """
name = "omit"
[task]
kind = "digits"
[teacher]
members = 3
epochs = 30
batch_size = 64
[student]
epochs = 25
batch_size = 64
[search]
width = { low = 48, high = 64 }
depth = 1
temperature = { low = 4.0, high = 8.0 }
alpha = { low = 0.9, high = 1.0 }
[budget]
trials = 1
seeds = 3
[certify]
candidates = 1
seeds = 2
[transfer]
omit_classes = [3]
bias_correction = true
[measure]
min_run_time = 0.005
warmup = 1
multi_thread = false
runtimes = ["torch"]
"""
    )
    code, _, err = _run(suite, tmp_path, capsys)
    assert code in (0, 1), err  # 1: no student certified at 0.5 pp (a missing digit costs)
    run = next((tmp_path / "results").glob("*_omit"))
    trials = read_trials(run)
    row = trials[trials["phase"] == "search"].iloc[0]
    assert row["n_test_omitted"] > 0 and row["transfer_rows"] > 0
    assert row["scratch_omitted_acc"] == 0.0  # the scratch twin never saw a 3
    assert row["omitted_acc_corrected"] > row["omitted_acc"]  # the shift recovers 3s
    assert row["bias_shift"] > 0
    for col, n in (
        ("omitted_acc_corrected", row["n_test_omitted"]),
        ("omitted_acc", row["n_test_omitted"]),
        ("scratch_omitted_acc", row["n_test_omitted"]),
        ("student_acc_corrected", row["n_test"]),
        ("full_scratch_acc", row["n_test"]),
    ):
        lo, hi = row[f"{col}_ci_low"], row[f"{col}_ci_high"]
        assert 0.0 <= lo <= row[col] <= hi <= 1.0
        # the test-set error is in it: at least the binomial interval of the pooled accuracy
        w_lo, w_hi = wilson(row[col] * n, int(n))
        assert lo <= w_lo + 1e-9 and hi >= w_hi - 1e-9, col
    assert row["full_scratch_acc"] > row["scratch_acc"]  # the whole split has the 3s
    report = next((tmp_path / "rep").glob("*/report.md")).read_text()
    assert "Transfer set" in report and "after the bias fix" in report
    assert main(["export", str(run), "--out", str(tmp_path / "ship"), "--trial", "0"]) == 0
    card = (tmp_path / "ship" / "MODEL_CARD.md").read_text()
    assert "without class(es) 3" in card and "Bias correction" in card


@pytest.mark.slow
def test_unlabeled_rows_change_the_distilled_students_and_never_the_scratch_twins(
    tmp_path: Path,
) -> None:
    pd.DataFrame(_raw_rows(600)).to_csv(tmp_path / "u.csv", index=False)
    small = "\n[transfer]\nfraction = 0.2\n"
    (tmp_path / "a.toml").write_text(TINY_SUITE + small)
    (tmp_path / "b.toml").write_text(TINY_SUITE + small + 'unlabeled = "u.csv"\n')
    rows = {}
    for name in ("a", "b"):
        run = run_suite(
            load_suite(tmp_path / f"{name}.toml"),
            RunOptions(out_root=tmp_path / name, reports_root=tmp_path / f"rep_{name}"),
        )
        rows[name] = read_trials(run).sort_values("trial").reset_index(drop=True)
    a, b = rows["a"], rows["b"]
    assert (b["transfer_rows"] - a["transfer_rows"] == 600).all()
    assert (b["transfer_unlabeled_rows"] == 600).all()
    pd.testing.assert_series_equal(a["scratch_acc"], b["scratch_acc"])  # labelled rows only
    assert not np.allclose(a["kl_to_teacher"], b["kl_to_teacher"])  # the students changed


def test_an_unlabeled_file_of_a_file_task_needs_its_feature_columns_by_name(
    tmp_path: Path, capsys
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    frame["label"] = np.repeat(["x", "y", "z"], 100)
    frame.to_csv(tmp_path / "data.csv", index=False)
    frame.drop(columns=["label", "c"]).assign(e=1.0).to_csv(tmp_path / "u.csv", index=False)
    text = TINY_SUITE.split("[task]")[0] + (
        '[task]\nkind = "file"\npath = "data.csv"\ntarget = "label"\n[teacher]'
        + TINY_SUITE.split("[teacher]")[1]
    )
    suite = tmp_path / "tiny.toml"
    suite.write_text(text + '\n[transfer]\nunlabeled = "u.csv"\n')
    code, out, err = _run(suite, tmp_path, capsys)
    assert_refused(code, out, err, "without column 'c'", tmp_path / "results")


@pytest.mark.slow
def test_a_transfer_run_is_the_same_with_two_workers(tmp_path: Path, capsys) -> None:
    """Workers read the task (its transfer rows and unlabeled rows) from the task file and run
    the teacher on the unlabeled rows themselves: the trial table must not change."""
    pd.DataFrame(_raw_rows(200)).to_csv(tmp_path / "u.csv", index=False)
    body = '\n[transfer]\nfraction = 0.3\nomit_classes = [2]\nbias_correction = true\nunlabeled = "u.csv"\n'
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE.replace("trials = 3", "trials = 2") + body)
    tables = []
    for workers in ("1", "2"):
        out = tmp_path / f"r{workers}"
        code = main(
            ["run", str(suite), "--workers", workers, "--out", str(out), "--reports", str(out)]
        )
        assert code == 0, capsys.readouterr().err
        run = next(p for p in out.iterdir() if p.name.endswith("_tiny"))
        frame = read_trials(run).sort_values("trial").reset_index(drop=True)
        tables.append(frame)
    same = [
        c
        for c in tables[0].columns
        if not any(k in c for k in ("time", "latency", "throughput", "speedup", "datetime"))
        and c not in ("run_id", "worker", "train_threads")
    ]
    pd.testing.assert_frame_equal(tables[0][same], tables[1][same])
    assert (tables[0]["transfer_unlabeled_rows"] == 200).all()
    assert tables[0]["omitted_acc_corrected"].notna().all()


def test_kdbench_data_marks_the_rows_the_students_learn_from(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE + '\n[transfer]\nfraction = 0.5\nomit_classes = ["0"]\n')
    assert main(["data", str(suite), "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    rows = pd.read_csv(tmp_path / "d" / "tiny" / "rows.csv")
    s = load_suite(suite)
    task = apply_transfer(load_task(s.tasks[0]), s.transfer, s.teacher)
    marked = rows[rows["transfer"]]
    assert (marked["split"] == "train").all() and (marked["label"] != 0).all()
    assert sorted(marked["row"]) == sorted(task.rows["train"][task.transfer].tolist())
