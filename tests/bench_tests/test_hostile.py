"""Hostile and unlucky users: paths, crashes at every write, corrupted files, signals,
concurrent resume, credentials. This module grows with every bug found (issue #7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.config.suite import load_suite
from bench.durable import faults
from bench.durable.rundir import inside
from bench.errors import InputError
from bench.records import SCHEMA_VERSION, read_seeds, read_trials
from bench.run.options import RunOptions
from bench.run.sweep import RunInterrupted, run_suite
from bench.study import redact
from tests.bench_tests.conftest import TINY_SUITE, make_run_dir, with_certify

ROOT = Path(__file__).resolve().parents[2]
SMALL = TINY_SUITE
WITH_CERTIFY = with_certify(SMALL, "candidates = 1\nseeds = 2\nmax_gap_pp = 100\n")
COMPARED = [
    "task",
    "phase",
    "trial",
    "arch",
    "temperature",
    "alpha",
    "student_acc",
    "scratch_acc",
    "kd_gain",
    "student_val_acc",
]


@pytest.fixture(autouse=True)
def _fresh_fault_counts():
    faults.reset()
    yield
    faults.reset()


def _kdbench(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != faults.ENV}
    full.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
        cwd=ROOT,
    )


def _runs(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if p.name != "teachers") if results.exists() else []


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_exit_2(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err


# ---------------------------------------------------------------------- paths
@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "..", ".", "-dash", "x" * 65])
def test_names_that_would_become_paths_are_refused(name: str, tmp_path: Path, capsys) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(
        SMALL.replace(
            'kind = "synthetic"\nname = "tiny"', f'kind = "synthetic"\nname = {json.dumps(name)}'
        )
    )
    code, _, err = _cli(
        ["run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")], capsys
    )
    _one_line_exit_2(code, err, "The 'name' parameter of [task] must be 1 to 64 letters")
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists()
    suite.write_text(
        SMALL.replace('name = "tiny"\n\n[task]', f"name = {json.dumps(name)}\n\n[task]", 1)
    )
    code, _, err = _cli(["run", str(suite), "--out", str(tmp_path / "r")], capsys)
    _one_line_exit_2(code, err, "The 'name' parameter of [suite] must be 1 to 64 letters")


def test_inside_refuses_dotdot_absolute_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert inside(root, "a", "b.json") == (root / "a" / "b.json").resolve()
    for bad in ("../x.json", "/etc/passwd", "a/../../x"):
        with pytest.raises(InputError, match="must stay inside"):
            inside(root, bad)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(InputError, match="must stay inside"):
        inside(root, "link", "report.md")


def test_a_tampered_manifest_cannot_make_the_report_write_outside(tmp_path: Path, capsys) -> None:
    run = make_run_dir(tmp_path, "run", [{"trial": 0}])
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["run_id"] = "../../escaped"
    (run / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _cli(["report", str(run), "--reports", str(tmp_path / "reports")], capsys)
    _one_line_exit_2(code, err, "must stay inside")
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    # A reports folder that is a symlink to somewhere else is refused the same way.
    manifest["run_id"] = "run"
    (run / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "reports").mkdir(exist_ok=True)
    (tmp_path / "reports" / "run").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    code, _, err = _cli(["report", str(run), "--reports", str(tmp_path / "reports")], capsys)
    _one_line_exit_2(code, err, "must stay inside")


# ---------------------------------------------------------------------- crashes and resume
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every crashed-and-resumed run must reproduce (teacher cached)."""
    tmp = tmp_path_factory.mktemp("reference")
    suite = tmp / "tiny.toml"
    suite.write_text(WITH_CERTIFY)
    cache = tmp / "cache"
    run_suite(
        load_suite(suite), RunOptions(out_root=tmp / "warm", cache_dir=cache)
    )  # caches the teacher
    faults.reset()
    run = run_suite(load_suite(suite), RunOptions(out_root=tmp / "r", cache_dir=cache))
    writes = faults.count("write")
    assert writes <= WRITES, f"a run now makes {writes} writes: raise WRITES to test every one"
    return suite, cache, read_trials(run), read_seeds(run)


def _same_as_reference(run: Path, reference) -> None:
    _, _, trials, seeds = reference
    got = read_trials(run)

    def done(f):
        return f[f["state"] == "complete"].sort_values(["phase", "trial"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(done(got)[COMPARED], done(trials)[COMPARED])
    assert not done(got).duplicated(["phase", "arch", "temperature", "alpha"]).any()
    assert len(got) == len(trials)  # no extra failed or duplicate rows either
    key = ["phase", "trial", "seed"]
    pd.testing.assert_frame_equal(
        read_seeds(run)
        .sort_values(key)
        .reset_index(drop=True)[[*key, "student_acc", "scratch_acc"]],
        seeds.sort_values(key).reset_index(drop=True)[[*key, "student_acc", "scratch_acc"]],
    )
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"


WRITES = 43  # an upper bound on the durable writes of one WITH_CERTIFY run (checked above)


@pytest.mark.slow
@pytest.mark.parametrize("k", list(range(1, WRITES + 1)))
def test_stopping_after_any_write_then_resume_equals_an_uninterrupted_run(
    k: int, reference, tmp_path: Path, monkeypatch
) -> None:
    """Every write boundary of a run: it stops right after its k-th durable write (a file
    renamed into place, a record committed, a trial told), then --resume must give the
    uninterrupted run's rows exactly: nothing lost, nothing twice, same configurations."""
    suite, cache, _, _ = reference
    monkeypatch.setenv(faults.ENV, f"interrupt@write#{k}")
    try:
        run_suite(load_suite(suite), RunOptions(out_root=tmp_path / "r", cache_dir=cache))
        stopped = False
    except RunInterrupted:
        stopped = True
    monkeypatch.delenv(faults.ENV)
    (run,) = _runs(tmp_path / "r")
    if stopped:
        run_suite(None, RunOptions(resume=run, cache_dir=cache))
    _same_as_reference(run, reference)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    [
        "kill@write#4",
        "kill@write#11",
        "kill@write#19",
        "kill@write#27",
        "kill@group#2",
        "kill@trial#3",
        "kill@param#2",
        "kill@param#9",
    ],
)
def test_kill_9_then_resume_equals_an_uninterrupted_run(
    fault: str, reference, tmp_path: Path
) -> None:
    """A real SIGKILL (nothing runs after it) at several points, then --resume."""
    suite, cache, _, _ = reference
    out = tmp_path / "r"
    crashed = _kdbench(
        "run",
        str(suite),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--reports",
        str(tmp_path / "p"),
        env={faults.ENV: fault},
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run,) = _runs(out)
    run_suite(None, RunOptions(resume=run, cache_dir=cache))
    _same_as_reference(run, reference)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "workers"),
    [("enospc@write#4", 1), ("enospc@write#13", 1), ("enospc@write#22", 1), ("enospc@write#3", 2)],
)
def test_a_full_disk_stops_the_run_in_one_line_and_resume_loses_nothing(
    fault: str, workers: int, reference, tmp_path: Path
) -> None:
    """ENOSPC at a durable write (what a full --out disk raises): exit 74, one line naming the
    folder, the cause and the resume command; then --resume equals an uninterrupted run."""
    suite, cache, _, _ = reference
    out = tmp_path / "r"
    stopped = _kdbench(
        "run", str(suite), "--out", str(out), "--cache", str(cache),
        "--reports", str(tmp_path / "p"), "--workers", str(workers), "-q",
        # either worker: which one commits a worker's third write depends on the trials each
        # claims (load), but with 2 workers and this run's commits one of them always does
        env={faults.ENV: fault, **({faults.WORKER_ENV: "0,1"} if workers > 1 else {})},
    )  # fmt: skip
    (run,) = _runs(out)
    err = stopped.stderr
    assert stopped.returncode == 74, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"a write to {run} failed (No space left on device" in err
    assert f"resume with `kdbench run --resume {run}`" in err
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    run_suite(None, RunOptions(resume=run, cache_dir=cache))
    _same_as_reference(run, reference)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill@write#1", "kill@write#2"])
def test_kill_9_while_caching_the_teacher_then_resume(
    fault: str, reference, tmp_path: Path
) -> None:
    suite = reference[0]
    out, cache = tmp_path / "r", tmp_path / "cache"
    crashed = _kdbench(
        "run", str(suite), "--out", str(out), "--cache", str(cache), env={faults.ENV: fault}
    )
    assert crashed.returncode == -signal.SIGKILL
    (run,) = _runs(out)
    run_suite(
        None, RunOptions(resume=run, cache_dir=cache)
    )  # the teacher is trained again, identically
    _same_as_reference(run, reference)


@pytest.mark.slow
def test_extending_a_finished_run_continues_the_search(reference, tmp_path: Path) -> None:
    """--resume --trials 5 of a 3-trial run samples what a 5-trial run samples."""
    suite, cache, _, _ = reference
    plain = load_suite(suite).with_budget(trials=5)
    full = run_suite(plain, RunOptions(out_root=tmp_path / "full", cache_dir=cache))
    three = run_suite(plain, RunOptions(out_root=tmp_path / "ext", cache_dir=cache, trials=3))
    run_suite(None, RunOptions(resume=three, cache_dir=cache, trials=5))
    cols = ["trial", "arch", "temperature", "alpha", "student_acc"]

    def search(f):
        return f[f["phase"] == "search"].sort_values("trial").reset_index(drop=True)[cols]

    assert len(search(read_trials(three))) == 5
    pd.testing.assert_frame_equal(search(read_trials(three)), search(read_trials(full)))


# ---------------------------------------------------------------------- damaged folders
@pytest.fixture
def finished(tmp_path: Path, capsys) -> Path:
    suite = tmp_path / "s.toml"
    suite.write_text(SMALL)
    assert (
        main(["run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
        == 0
    )
    capsys.readouterr()
    (run,) = _runs(tmp_path / "r")
    return run


def test_a_truncated_csv_is_not_read_as_valid(finished: Path, capsys) -> None:
    (finished / "trials.parquet").unlink()
    data = (finished / "trials.csv").read_bytes()
    (finished / "trials.csv").write_bytes(data[: len(data) - 40])
    code, _, err = _cli(["recommend", str(finished), "--max-gap", "1"], capsys)
    _one_line_exit_2(code, err, "trials.csv is truncated (its last line is incomplete)")


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("parquet", "trials.parquet cannot be read"),
        ("manifest", "must be valid JSON"),
        ("only_manifest", "holds no trials table"),
        ("seeds", "seeds has 0 row(s) for trial"),
        (
            "schema",
            f"must have schema_version {SCHEMA_VERSION} (this kdbench). Got [1] instead: it was "
            "written by an older kdbench",
        ),
    ],
)
def test_damaged_run_folders_exit_2_naming_the_file(
    damage: str, fragment: str, finished: Path, capsys
) -> None:
    if damage == "parquet":
        data = (finished / "trials.parquet").read_bytes()
        (finished / "trials.parquet").write_bytes(data[: len(data) // 2])
    elif damage == "manifest":
        text = (finished / "manifest.json").read_text()
        (finished / "manifest.json").write_text(text[: len(text) // 2])
    elif damage == "only_manifest":
        for p in finished.iterdir():
            if p.name != "manifest.json":
                p.unlink()
    elif damage == "seeds":
        seeds = read_seeds(finished)
        seeds = seeds[seeds["trial"] != seeds["trial"].iloc[0]]
        from bench.records import write_trials

        write_trials(seeds, finished, "seeds")
    elif damage == "schema":
        from bench.records import write_trials

        write_trials(read_trials(finished).assign(schema_version=1), finished)
    for cmd in (
        ["report", str(finished), "--reports", str(finished.parent / "rep")],
        ["recommend", str(finished), "--max-gap", "1"],
    ):
        code, _, err = _cli(cmd, capsys)
        _one_line_exit_2(code, err, fragment)


def test_doctor_says_what_is_damaged_and_repairs_it_from_the_study(finished: Path, capsys) -> None:
    before = read_trials(finished)
    (finished / "trials.parquet").write_bytes(b"garbage")
    (finished / "seeds.csv").write_text("half a li")
    code, out, _ = _cli(["doctor", str(finished)], capsys)
    assert code == 2 and "damaged:" in out and "trials.parquet cannot be read" in out
    assert "recoverable: trials/seeds: rebuilt from the study's 3 records" in out
    code, out, _ = _cli(["list", "runs", "--out", str(finished.parent)], capsys)
    assert out.startswith("damaged")
    code, out, _ = _cli(["doctor", "--repair", str(finished)], capsys)
    assert code == 0 and "after repair: no damage found" in out, out
    cols = ["trial", "arch", "student_acc"]
    pd.testing.assert_frame_equal(read_trials(finished)[cols], before[cols])
    code, out, _ = _cli(["list", "runs", "--out", str(finished.parent)], capsys)
    assert out.startswith("complete")


def _certified_run(tmp_path: Path) -> tuple[Path, list[str]]:
    """A finished run of WITH_CERTIFY (one certified student kept) and its --reports option."""
    suite = tmp_path / "s.toml"
    suite.write_text(WITH_CERTIFY)
    reports = ["--reports", str(tmp_path / "p")]
    assert main(["run", str(suite), "--out", str(tmp_path / "r"), *reports, "-q"]) == 0
    (run,) = _runs(tmp_path / "r")
    return run, reports


@pytest.mark.slow
def test_damaged_weights_and_a_deleted_table_are_found_by_doctor_and_repaired(
    tmp_path: Path, capsys
) -> None:
    run, reports = _certified_run(tmp_path)
    (weights,) = (run / "students" / "tiny").glob("trial-*-seed-*.pt")
    trial = weights.name.split("-")[1]
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # a torn copy
    capsys.readouterr()
    code, out, _ = _cli(["doctor", str(run)], capsys)
    assert code == 2 and f"damaged:     students/tiny/{weights.name} cannot be read" in out, out
    assert "rewritten from the artifact store" in out
    code, _, err = _cli(
        ["export", str(run), "--trial", trial, "--out", str(tmp_path / "x")], capsys
    )
    _one_line_exit_2(code, err, f"students/tiny/{weights.name} cannot be read")
    assert f"kdbench doctor {run}" in err
    (run / "trials.csv").unlink()
    code, out, _ = _cli(["doctor", str(run)], capsys)
    assert code == 2 and "trials.csv is missing (trials.parquet is there)" in out
    code, _, err = _cli(["report", str(run), *reports], capsys)
    _one_line_exit_2(code, err, "trials.csv is missing (trials.parquet is there)")
    code, out, _ = _cli(["doctor", "--repair", str(run)], capsys)
    assert code == 0 and "after repair: no damage found" in out, out
    assert weights.read_bytes() == good and (run / "trials.csv").is_file()
    assert main(["export", str(run), "--trial", trial, "--out", str(tmp_path / "x")]) == 0


@pytest.mark.slow
def test_kept_weights_live_in_the_artifact_store_and_doctor_reports_a_missing_one(
    tmp_path: Path, capsys
) -> None:
    import optuna

    run, _ = _certified_run(tmp_path)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "study.journal"))
    )
    studies = storage.get_all_studies()
    refs = []
    for summary in studies:
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert study.metric_names is not None and "Objective" not in " ".join(study.metric_names)
        manifest = json.loads(summary.user_attrs.get("kdbench_manifest", "{}") or "{}")
        assert manifest.get("status", "complete") == "complete"  # final once the run is
        for t in study.trials:
            # no attribute holds weights: every value is small, the weights are artifacts
            assert all(len(json.dumps(v)) < 8_000 for v in t.user_attrs.values()), t.number
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert {"phase", "test_acc_pct", "gap_pp", "params", "flops"} <= set(t.user_attrs)
            if "kdbench_weights" in t.user_attrs:
                refs.append(json.loads(t.user_attrs["kdbench_weights"]))
    assert refs and all(r["store"] == str((run / "artifacts").resolve()) for r in refs)
    (weights,) = (run / "students" / "tiny").glob("trial-*-seed-*.pt")
    trial = weights.name.split("-")[1]
    good = weights.read_bytes()
    weights.unlink()  # export fetches it again from the store, checked against its sha256
    assert main(["export", str(run), "--trial", trial, "--out", str(tmp_path / "x")]) == 0
    assert weights.read_bytes() == good
    pulled, missing = _pull(run, tmp_path / "pulled")
    assert missing == [] and (pulled / "students" / "tiny" / weights.name).read_bytes() == good
    artifact = run / "artifacts" / refs[0]["artifact_id"]
    artifact.rename(tmp_path / "elsewhere")
    capsys.readouterr()
    code, out, _ = _cli(["doctor", str(run)], capsys)
    assert code == 2 and f"artifact {refs[0]['artifact_id']} is missing from the store" in out, out
    _, missing = _pull(run, tmp_path / "pulled-again")
    assert len(missing) == 1 and "is missing from the store" in missing[0]
    (tmp_path / "moved").mkdir()
    (tmp_path / "elsewhere").rename(tmp_path / "moved" / refs[0]["artifact_id"])
    code, _, err = _cli(
        ["pull", "--storage", str(run / "study.journal"), "--study", run.name,
         "--out", str(tmp_path / "third"), "--artifacts", str(tmp_path / "moved")],
        capsys,
    )  # fmt: skip
    assert code == 0 and "warning" not in err
    assert (tmp_path / "third" / run.name / "students" / "tiny" / weights.name).read_bytes() == good


def _pull(run: Path, out: Path) -> tuple[Path, list[str]]:
    from bench.run.pull import pull
    from bench.study import StorageSpec

    return pull(StorageSpec(path=str(run / "study.journal")), run.name, out)


# ---------------------------------------------------------------------- bad options
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "abc"])
def test_non_finite_numbers_are_usage_errors(value: str, finished: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["recommend", str(finished), f"--max-gap={value}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --max-gap: must be a" in err and "Traceback" not in err


def test_an_unwritable_reports_folder_fails_before_the_sweep(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    suite = tmp_path / "s.toml"
    suite.write_text(SMALL)
    code, _, err = _cli(
        [
            "run",
            str(suite),
            "--out",
            str(tmp_path / "r"),
            "--reports",
            str(tmp_path / "file" / "rep"),
        ],
        capsys,
    )
    _one_line_exit_2(
        code, err, "The reports folder (--reports) must be a folder kdbench can create and write"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql://kd:s3cretpw@127.0.0.1:1/none", "must be a reachable database"),
        ("mysql+nosuchdriver://kd:s3cretpw@host/db", "must be a database URL"),
        ("sqlite:///x.db", "SQLite breaks under concurrent workers"),
        ("not a url://kd:s3cretpw@", "must be a database URL"),
    ],
)
def test_invalid_storage_urls_exit_2_without_the_password(
    url: str, fragment: str, tmp_path: Path, capsys
) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(SMALL)
    code, out, err = _cli(
        ["run", str(suite), "--out", str(tmp_path / "r"), "--storage", url], capsys
    )
    _one_line_exit_2(code, err, fragment)
    assert "s3cretpw" not in out + err
    assert not _runs(tmp_path / "r")


def test_redact() -> None:
    assert (
        redact("postgresql://kd:s3cret@db.host:5432/studies")
        == "postgresql://kd:***@db.host:5432/studies"
    )
    assert redact("postgresql://kd@db.host/studies") == "postgresql://kd@db.host/studies"
    assert "s3cret" not in redact("weird://kd:s3cret@")


# ---------------------------------------------------------------------- data changed, compare
def test_resume_refuses_a_run_whose_data_file_changed(tmp_path: Path, capsys, monkeypatch) -> None:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=400, n_features=5, n_informative=3, n_redundant=0, random_state=0
    )
    frame = pd.DataFrame(x, columns=list("abcde")).assign(target=y)
    frame.to_csv(tmp_path / "d.csv", index=False)
    suite = tmp_path / "s.toml"
    task = 'kind = "file"\npath = "d.csv"\nname = "d"'
    suite.write_text(
        SMALL[: SMALL.index("[task]")]
        + "[task]\n"
        + task
        + "\n\n"
        + SMALL[SMALL.index("[teacher]") :]
    )
    monkeypatch.setenv(faults.ENV, "interrupt@group#2")
    code, _, err = _cli(["run", str(suite), "--out", str(tmp_path / "r")], capsys)
    (run,) = _runs(tmp_path / "r")
    assert code == 130 and f"the run folder {run} is resumable: kdbench run --resume {run}" in err
    monkeypatch.delenv(faults.ENV)
    frame.iloc[:-1].to_csv(tmp_path / "d.csv", index=False)  # one row fewer
    code, _, err = _cli(["run", "--resume", str(run)], capsys)
    _one_line_exit_2(code, err, "The data of task 'd' must be unchanged to resume")


def test_compare_refuses_runs_with_nothing_in_common(tmp_path: Path, capsys) -> None:
    a = make_run_dir(tmp_path, "a", [{"trial": 0, "task": "seed"}], ("seed",))
    b = make_run_dir(tmp_path, "b", [{"trial": 0, "task": "digits"}], ("digits",))
    code, _, err = _cli(["compare", str(a), str(b)], capsys)
    _one_line_exit_2(code, err, "0 configurations match")
    c = make_run_dir(tmp_path, "c", [{"trial": 0, "task": "seed", "temperature": 9.9}], ("seed",))
    code, _, err = _cli(["compare", str(a), str(c), "--fail", "acc_gap:1pp"], capsys)
    _one_line_exit_2(code, err, "Got 0 matched configurations")
    code, out, _ = _cli(["compare", str(a), str(c)], capsys)
    assert code == 0 and "0 matched configurations" in out


# ---------------------------------------------------------------------- signals, concurrency
def _start(tmp_path: Path, suite_text: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    suite = tmp_path / "slow.toml"
    suite.write_text(suite_text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop(faults.ENV, None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            str(suite),
            "--out",
            str(tmp_path / "r"),
            "--reports",
            str(tmp_path / "p"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        # A test runner started in the background by a non-interactive shell ignores SIGINT,
        # and children inherit that; a user's foreground kdbench has the default handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in proc.stdout:  # wait for the first finished trial ("[tiny] 1/40 trials, …")
        if " 1/" in line and " trials," in line:
            break
    (run,) = _runs(tmp_path / "r")
    return proc, run


SLOW = SMALL.replace("trials = 3", "trials = 40")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")]
)
def test_signals_leave_a_clean_message_naming_the_real_run_folder(
    sig, code: int, name: str, tmp_path: Path
) -> None:
    proc, run = _start(tmp_path, SLOW)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert (
        f"kdbench: interrupted ({name}); the run folder {run} is resumable: kdbench run --resume {run}"
        in err
    )
    assert "RUN_DIR" not in err and "Traceback" not in err
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    run_suite(None, RunOptions(resume=run, trials=3))


@pytest.mark.slow
def test_a_second_process_on_the_same_run_folder_is_refused_until_the_first_dies(
    tmp_path: Path,
) -> None:
    proc, run = _start(tmp_path, SLOW)
    try:
        second = _kdbench("run", "--resume", str(run))
        assert second.returncode == 2
        assert f"is used by process {proc.pid}" in second.stderr and second.stderr.count("\n") == 1
        trials = read_trials(run)
        assert (trials["state"] == "complete").all()  # the live run's trials were not failed
    finally:
        proc.kill()  # kill -9: its lock is now stale
        proc.wait()
    run_suite(
        None, RunOptions(resume=run, trials=3)
    )  # the dead process's lock is stale: taken over
    assert len(read_trials(run)) >= 3


def test_list_runs_shows_each_runs_status(
    finished: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    suite = tmp_path / "s2.toml"
    suite.write_text(SMALL)
    monkeypatch.setenv(faults.ENV, "interrupt@group#2")
    faults.reset()
    assert (
        main(["run", str(suite), "--out", str(finished.parent), "--reports", str(tmp_path / "p")])
        == 130
    )
    monkeypatch.delenv(faults.ENV)
    capsys.readouterr()
    code, out, _ = _cli(["list", "runs", "--out", str(finished.parent)], capsys)
    statuses = sorted(line.split()[0] for line in out.splitlines())
    assert code == 0 and statuses == ["complete", "interrupted"]


def test_certification_never_picks_an_architecture_twice() -> None:
    from bench.decision.protocol import certify_order
    from tests.bench_tests.conftest import make_table

    table = make_table(
        {"trial": 0, "width": 8, "student_params": 100, "temperature": 2.0},
        {"trial": 1, "width": 8, "student_params": 100, "student_val_acc": 0.96},  # its best
        {"trial": 2, "width": 16, "student_params": 300, "student_val_acc": 0.965},
    )
    chosen = certify_order(table, 3, 100.0)
    assert list(chosen["trial"]) == [2, 1]  # one per architecture, the largest first


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("s3://", "must be a folder or s3://bucket"),
        ("s3://bucket/prefix", "must be a folder or s3://bucket"),
        ("s3://bucket", "needs boto3 (pip install boto3)"),
    ],
)
def test_a_bad_artifact_store_fails_before_anything_is_written(
    value: str, fragment: str, tmp_path: Path, capsys
) -> None:
    import importlib.util

    if fragment.startswith("needs boto3") and importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed here")
    suite = tmp_path / "s.toml"
    suite.write_text(SMALL.replace("[budget]\n", f'[budget]\nartifacts = "{value}"\n'))
    code, _, err = _cli(["run", str(suite), "--out", str(tmp_path / "r"), "-q"], capsys)
    _one_line_exit_2(code, err, fragment)
    assert _runs(tmp_path / "r") == []
