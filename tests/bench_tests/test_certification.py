"""The certified decision (issue #19): validation orders, the test split certifies once,
fixed-sequence testing bounds the error, and the answer does not depend on the workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.decision.protocol import (
    certify_order,
    certify_seeds,
    fixed_sequence,
    validation_frontier,
)
from bench.durable import faults
from bench.records import load_run
from bench.validation import SEED_MAX
from tests.bench_tests.conftest import TINY_SUITE, with_certify

ROOT = Path(__file__).resolve().parents[2]
ALPHA = 0.05


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    assert fixed_sequence([0.1, 0.4, 0.6, 0.2], 0.5) == [True, True, False, False]
    assert fixed_sequence([float("nan"), 0.1], 0.5) == [False, False]
    assert fixed_sequence([], 0.5) == []


def test_certification_seeds_are_fresh() -> None:
    """Disjoint from the search's seeds, from every seed a suite may set (teacher members and
    specialists: [teacher] seed + a few hundred; the task's split) and from each other."""
    used_before = set(range(100)) | set(range(SEED_MAX - 1000, SEED_MAX + 1000))
    rounds = [set(certify_seeds(r, 100)) for r in range(3)]
    assert all(not (r & used_before) and min(r) > SEED_MAX + 1000 for r in rounds)
    assert not (rounds[0] & rounds[1]) and not (rounds[1] & rounds[2])


def test_a_seed_in_the_certification_range_is_refused(tiny_suite, tmp_path: Path, capsys) -> None:
    suite = tiny_suite(replace={"[teacher]\n": "[teacher]\nseed = 2000000000\n"})
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "'seed' parameter of [teacher]" in err and "999999999" in err.replace(",", "")


def _search_frame(val_gap: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One search row per size (parameters 100 · 2^k); test columns filled with noise."""
    n = len(val_gap)
    return pd.DataFrame(
        {
            "trial": np.arange(n),
            "state": "complete",
            "arch": [f"width {k}" for k in range(n)],
            "student_params": 100 * 2 ** np.arange(n),
            "ensemble_val_acc": 0.95,
            "student_val_acc": 0.95 - val_gap,
            "student_acc": rng.random(n),
            "acc_gap_ci_high": rng.random(n),
        }
    )


def test_the_order_reads_validation_columns_only() -> None:
    rng = np.random.default_rng(0)
    frame = _search_frame(np.linspace(0.03, 0.001, 10), rng)
    order = list(certify_order(frame, 6, 0.005)["trial"])
    assert order == sorted(order, reverse=True)[: len(order)]  # the largest first
    for col in ("student_acc", "acc_gap_ci_high"):
        other = frame.assign(**{col: rng.random(len(frame))})
        assert list(certify_order(other, 6, 0.005)["trial"]) == order


def test_the_first_candidate_is_safely_within_the_tolerance_on_validation() -> None:
    """Not validation's optimistic guess: the smallest size whose predicted bound clears the
    tolerance by a standard error, one larger before it, then stepping down."""
    gaps = np.array([0.030, 0.010, 0.0048, 0.004, 0.003, 0.001, 0.0005, 0.0])
    frame = _search_frame(gaps, np.random.default_rng(1)).assign(n_test=100_000)
    order = list(certify_order(frame, 4, 0.005)["trial"])
    # d ≈ 0.1 (two error rates of ~5 %): se = √(0.1 / 100,000) = 0.1 pp; the bound sits
    # z · se ≈ 0.16 pp above the test gap, and the test gap may be √2 · se ≈ 0.14 pp above the
    # validation gap. Size 4 (0.3 pp) is within the tolerance by the bound alone (0.46 pp) but
    # not by a standard error more (0.61 pp); size 5 (0.1 pp: 0.41 pp) is the first safe one,
    # and one larger goes first. The rest step down evenly in log-size to validation's
    # optimistic guess, size 2 (0.48 pp), rather than one frontier step at a time.
    assert order == [6, 5, 3, 2]
    # at 4,000 examples the noise (≈ 1.5 pp) exceeds the tolerance itself: nothing is safe,
    # so the largest goes first, then 3,200, 1,600 and 400 params (12,800 → 400 in log-steps)
    few = list(certify_order(frame.assign(n_test=4000), 4, 0.005)["trial"])
    assert few == [7, 5, 4, 2]
    many = list(certify_order(frame.assign(n_test=10**9), 4, 0.005)["trial"])
    assert many == [3, 2, 1, 0]  # with noise ~0 the first safe size is validation's guess
    # a smaller validation split widens the margin: validation's gap is a noisier guess
    noisy_val = list(certify_order(frame, 4, 0.005, n_val=5_000)["trial"])
    assert noisy_val == few


def test_a_lucky_small_student_does_not_hide_the_larger_ones_validation_cannot_tell_apart() -> None:
    """The winner's curse of a sweep: one small student scores best on validation by luck.
    A strict frontier would end there; the frontier within validation's noise keeps the larger
    students within one standard error of it, so certification can start where a pass is
    likely."""
    gaps = np.array([0.030, 0.010, -0.003, -0.002, -0.0015, -0.001])  # size 2 is the lucky one
    frame = _search_frame(gaps, np.random.default_rng(2)).assign(n_test=1000)
    strict = list(validation_frontier(frame)["trial"])
    assert strict == [0, 1, 2]
    # √((0.047 + 0.048) / 1000) ≈ 0.97 pp of noise: sizes 3–5 (0.1–0.15 pp behind) stay
    assert list(validation_frontier(frame, 1000)["trial"]) == [0, 1, 2, 3, 4, 5]
    assert list(validation_frontier(frame, 10**9)["trial"]) == strict  # no noise: strict
    # a student clearly worse than a smaller one still drops out
    worse = frame.assign(student_val_acc=frame["student_val_acc"] - np.r_[0, 0, 0, 0.03, 0, 0])
    assert 3 not in list(validation_frontier(worse, 1000)["trial"])
    # nothing is safe at 1,000 test examples and a 0.5 pp tolerance: the largest goes first,
    # and the last candidate is validation's optimistic guess (the lucky one)
    assert list(certify_order(frame, 3, 0.005, 0.025, n_val=1000)["trial"]) == [5, 4, 2]


SUITE = (
    with_certify(
        TINY_SUITE.replace(
            "trials = 3",
            'trials = 8\nbatch = 2\nfidelity = "halving"\nmin_epochs = 1\nreduction_factor = 2',
        ).replace("[student]\nepochs = 3", "[student]\nepochs = 4"),
        "candidates = 3\nseeds = 2\nmax_gap_pp = 60\n",
    )
    + '\n[ship]\nforms = ["fp32", "int8_dynamic", "int8_static"]\n'
)  # each certified alike
VOLATILE = ("time", "datetime", "worker", "latency", "speedup", "throughput", "retry")


def _kdbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def _table(run: Path) -> pd.DataFrame:
    t = load_run(run).trials
    keep = [c for c in t.columns if not any(v in c for v in VOLATILE) and c != "run_id"]
    return t[keep].sort_values(["phase", "certify_round", "trial"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The suite with 1, 2 and 4 workers (one teacher cache), and with the test labels
    permuted; each a real `kdbench run` process."""
    tmp = tmp_path_factory.mktemp("certified")
    suite = tmp / "tiny.toml"
    suite.write_text(SUITE)
    cache = tmp / "cache"
    out: dict[str, Path] = {}
    for name, workers, env in (
        ("1", 1, {}),
        ("2", 2, {}),
        ("4", 4, {}),
        ("permuted", 1, {faults.ENV: "permute@test_labels"}),
    ):
        res = _kdbench(
            "run", str(suite), "--out", str(tmp / name), "--cache", str(cache),
            "--reports", str(tmp / f"p{name}"), "--workers", str(workers), "-q", env=env,
        )  # fmt: skip
        assert res.returncode in (0, 1), res.stderr
        (out[name],) = [p for p in (tmp / name).iterdir() if p.name != "teachers"]
    return out


@pytest.mark.slow
def test_the_trial_table_is_the_same_for_1_2_and_4_workers(runs: dict[str, Path]) -> None:
    one = _table(runs["1"])
    assert (one["phase"] == "certify").sum() >= 1 and (one["state"] == "pruned").any()
    key = ["phase", "certify_round", "trial", "state", "fail_reason"]
    for n in ("2", "4"):
        other = _table(runs[n])
        rows = one[key].merge(other[key], how="outer", indicator=True)
        assert (rows["_merge"] == "both").all(), f"{n} workers:\n{rows.to_string()}"
        pd.testing.assert_frame_equal(one, other, check_exact=True)


@pytest.mark.slow
def test_the_test_split_cannot_change_what_is_certified_or_in_which_order(
    runs: dict[str, Path],
) -> None:
    a, b = _table(runs["1"]), _table(runs["permuted"])
    cert = ["trial", "certify_rank", "file_seed", "student_val_acc", "arch", "temperature"]
    pd.testing.assert_frame_equal(
        a[a["phase"] == "certify"][cert], b[b["phase"] == "certify"][cert]
    )
    val = ["trial", "state", "arch", "temperature", "alpha", "student_val_acc"]
    pd.testing.assert_frame_equal(a[a["phase"] == "search"][val], b[b["phase"] == "search"][val])
    assert not a["student_acc"].equals(b["student_acc"])  # the test numbers did move
    # the (size, form) pairs: the same forms of the same files, judged on the same validation
    forms = ["val_acc_int8_dynamic", "val_acc_int8_static", "ship_forms"]
    ca, cb = a[a["phase"] == "certify"], b[b["phase"] == "certify"]
    assert ca["val_acc_int8_static"].notna().all()
    pd.testing.assert_frame_equal(ca[forms], cb[forms])
    assert not ca["file_acc_int8_static"].equals(cb["file_acc_int8_static"])


@pytest.mark.slow
def test_each_certified_form_ships_and_reproduces_its_recorded_accuracy(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Export rebuilds the form from the kept weights exactly as certification built it and
    refuses unless it gives the recorded test accuracy; the card names the form and runtime."""
    run = runs["1"]
    t = load_run(run).trials
    cert = t[(t["phase"] == "certify") & (t["state"] == "complete")]
    # int8 weights: a smaller file; QDQ (static) adds a node pair per tensor, which a tiny
    # model's few weights do not pay back
    assert cert["file_bytes_int8_dynamic"].lt(cert["file_bytes_fp32"]).all()
    for form in ("int8_dynamic", "int8_static"):
        assert cert[f"form_agreement_{form}"].gt(0.5).all()
        out = tmp_path / form
        assert main(["export", str(run), "--max-gap", "60", "--form", form, "--out", str(out)]) == 0
        card = (out / "MODEL_CARD.md").read_text()
        assert f"certified **{form}** form (onnxruntime" in card and "CPUExecutionProvider" in card
        assert (out / "student.onnx").stat().st_size == pytest.approx(
            cert[f"file_bytes_{form}"].max(), rel=0.5
        )  # that form, the standardisation in front of it


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [
        ["--max-gap", "60"],
        ["--max-gap", "80"],
        ["--max-gap", "60", "--max-params", "400"],
        ["--max-gap", "60", "--max-flops", "300"],
        ["--min-relative-acc", "0.3"],
    ],
)
def test_every_recommendation_exports_and_reloads_to_its_stated_accuracy(
    runs: dict[str, Path], tmp_path: Path, flags: list[str], capsys
) -> None:
    from kdcore import build_student

    run = runs["1"]
    code = main(["recommend", str(run), *flags, "--json"])
    rec = __import__("json").loads(capsys.readouterr().out)[0]
    if rec["chosen"] is None:
        assert (code == 1 and rec["suggest"]) or rec["notes"]
        return
    assert (
        main(["export", str(run), *flags, "--format", "torch", "--out", str(tmp_path / "x")]) == 0
    )
    blob = torch.load(tmp_path / "x" / "student.pt", weights_only=True)
    model = build_student(blob["family"], blob["input_shape"], blob["num_classes"], **blob["arch"])
    model.load_state_dict(blob["state_dict"])
    data = load_run(run)
    task = data.manifest.task("tiny")
    from bench.config.suite import suite_from_dict
    from bench.tasks import load_task

    loaded = load_task(suite_from_dict(data.manifest.suite).tasks[0])
    with torch.no_grad():
        right = int((model(loaded.x_test).argmax(-1) == loaded.y_test).sum())
    acc = right / len(loaded.y_test)
    assert acc == pytest.approx(rec["chosen"]["file_acc"], abs=1e-12)
    assert blob["provenance"]["seed"] == rec["chosen"]["file_seed"] and task.num_classes == 3


def test_a_confirm_table_is_refused_with_its_successor(tiny_suite, tmp_path: Path, capsys) -> None:
    suite = tiny_suite(replace={"[certify]\ncandidates = 0\n": "[confirm]\ntop_k = 2\n"})
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "[confirm] table was replaced by [certify]" in err and "top_k -> candidates" in err
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("line", ["alpha = 0.0", "alpha = 0.7", "seeds = 1", "max_gap_pp = -1"])
def test_a_bad_certify_key_names_the_key(tiny_suite, tmp_path: Path, capsys, line: str) -> None:
    suite = tiny_suite(replace={"[certify]\ncandidates = 0\n": f"[certify]\n{line}\n"})
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"'{line.split()[0]}' parameter of [certify]" in err and err.count("\n") == 1


@pytest.mark.slow
def test_certify_adds_a_round_on_fresh_seeds_and_resumes(
    runs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    import shutil

    run = tmp_path / runs["1"].name
    shutil.copytree(runs["1"], run)
    cache = runs["1"].parents[1] / "cache"
    args = ["certify", str(run), "--max-gap", "80", "--cache", str(cache)]
    code = main([*args, "--reports", str(tmp_path / "p")])
    assert code == 0
    out = capsys.readouterr().out
    assert "Certified at 80 pp" in out and "[2000001000, 2000001001]" in out
    before = _table(runs["1"])
    after = _table(run)
    in_second = (after["certify_round"] == 1).fillna(False).astype(bool)
    second = after[in_second]
    assert len(second) == (before["phase"] == "certify").sum()
    seeds = set(load_run(run).seeds.query("phase == 'certify'")["seed"])
    assert seeds == {2000000000, 2000000001, 2000001000, 2000001001}
    assert set(second["certify_alpha"]) == {0.0125 / 3} and set(
        after.loc[after["certify_round"] == 0, "certify_alpha"]
    ) == {0.025 / 3}  # alpha / 2, then alpha / 4: the rounds share one budget (3 forms each)
    pd.testing.assert_frame_equal(after[~in_second].reset_index(drop=True), before)
    assert main([*args, "--reports", str(tmp_path / "p")]) == 0  # again: nothing to redo
    pd.testing.assert_frame_equal(_table(run), after)


@pytest.mark.slow
def test_an_unmet_certified_decision_exits_1(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    import shutil

    run = tmp_path / runs["1"].name
    shutil.copytree(runs["1"], run)
    cache = runs["1"].parents[1] / "cache"
    reports = ["--reports", str(tmp_path / "p")]
    # No file's bound is <= 0 pp: nothing can be certified, and the command says so with 1.
    assert main(["certify", str(run), "--max-gap", "0", "--cache", str(cache), *reports]) == 1
    out = capsys.readouterr().out
    assert "No certified student meets" in out
    assert main(["report", str(run), "--max-gap", "60", *reports]) == 0  # the run's own: met


@pytest.mark.slow
def test_against_the_best_member_the_bounds_are_paired_and_recommend_uses_them(
    runs: dict[str, Path], capsys
) -> None:
    """The member's own test error counts: each certify row's bound to the best member lies
    above its point gap, and every row's paired interval contains its gap to the member."""
    t = load_run(runs["1"]).trials
    done = t[t["state"] == "complete"]
    cert = done[done["phase"] == "certify"]
    assert len(cert) and cert["certified_best_member"].notna().all()
    assert (cert["certify_bound_best_member"] > cert["best_member_acc"] - cert["file_acc"]).all()
    gap = done["gap_to_best_member"]
    assert (done["gap_to_best_member_ci_low"] < gap).all()
    assert (gap < done["gap_to_best_member_ci_high"]).all()
    code = main(["recommend", str(runs["1"]), "--max-gap", "60", "--against", "best-member"])
    out = capsys.readouterr().out
    assert code == 0 and "bound to the best member" in out, out
