"""One study, many workers (issue #8): PostgreSQL with heartbeats, local --workers, pull.

The PostgreSQL tests start a throwaway server (``tests/bench_tests/postgres.py``); ``.ci/run``
installs the Debian package. Where no server can be installed they skip, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from bench.cli import main
from bench.durable import faults
from bench.records import load_run, read_trials
from kdcore import build_student, count_params
from tests.bench_tests.conftest import TINY_SUITE, with_certify
from tests.bench_tests.postgres import PASSWORD, throwaway_postgres

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

WORKER_SUITE = with_certify(
    TINY_SUITE.replace(
        "trials = 3\nseeds = 2", "trials = 12\nseeds = 1\nheartbeat_interval = 1\ngrace_period = 3"
    ),
    "candidates = 2\nseeds = 2\nmax_gap_pp = 100\n",
)


@pytest.fixture(scope="module")
def pg_url():
    try:
        server = throwaway_postgres()
        url = server.__enter__()
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(
            f"no PostgreSQL server here ({exc}); `.ci/run` installs the Debian package postgresql"
        )
    yield url
    server.__exit__(None, None, None)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(extra or {})})
    return env


def _worker(
    suite: Path, url: str, study: str, folder: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            str(suite),
            "--storage",
            url,
            "--study",
            study,
            "--out",
            str(folder / "results"),
            "--reports",
            str(folder / "reports"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
        cwd=ROOT,
    )


def _no_password_anywhere(*roots: Path, texts: list[str] = ()) -> None:
    for text in texts:
        assert PASSWORD not in text
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes(), f"password written into {path}"


def test_three_workers_one_killed_mid_trial_lose_nothing(
    pg_url: str, tmp_path: Path, capsys
) -> None:
    """The CI integration test of issue #8: 3 workers, 12 trials, one SIGKILLed mid-trial."""
    suite = tmp_path / "workers.toml"
    suite.write_text(WORKER_SUITE)
    study = "ci-three"
    # The first worker dies with SIGKILL mid-trial (after asking it and beating for it, before
    # any result): its trial stays RUNNING until its heartbeat goes stale. Started first, so
    # that it surely gets a trial; the two others then run the study to the end.
    doomed = _worker(
        suite,
        pg_url,
        study,
        tmp_path / "w0",
        "--cache",
        str(tmp_path / "cache0"),
        env={faults.ENV: "kill@group#1"},
    )
    outputs = [doomed.communicate(timeout=600)]
    assert doomed.returncode == -9, outputs[0][1]
    procs = [
        _worker(suite, pg_url, study, tmp_path / f"w{i}", "--cache", str(tmp_path / f"cache{i}"))
        for i in (1, 2)
    ]
    outputs += [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs[1:]]

    assert (
        main(["pull", "--storage", pg_url, "--study", study, "--out", str(tmp_path / "pulled")])
        == 0
    )
    capsys.readouterr()
    (pulled,) = (tmp_path / "pulled").iterdir()
    run = load_run(pulled)
    assert run.manifest.status == "complete" and run.manifest.mode == "shared"
    search = run.trials[run.trials["phase"] == "search"]
    assert sorted(search["trial"]) == list(range(len(search)))  # no number lost or duplicated
    complete = search[search["state"] == "complete"]
    assert len(complete) == 12
    lost = search[search["state"] == "fail"]
    assert len(lost) == 1, lost[["trial", "fail_reason"]]
    dead = int(lost["trial"].iloc[0])
    retried_as = int(lost["fail_reason"].iloc[0].rsplit(" ", 1)[-1])
    retry = search[search["trial"] == retried_as].iloc[0]
    assert retry["state"] == "complete" and int(retry["retry_of"]) == dead
    dead_params = (
        optuna.load_study(
            study_name=f"{study}:tiny",
            storage=pg_url.replace("postgresql://", "postgresql+psycopg://"),
        )
        .trials[dead]
        .params
    )
    assert (
        dead_params["temperature"] == retry["temperature"]
        and dead_params["alpha"] == retry["alpha"]
    )
    assert run.trials[run.trials["phase"] == "certify"].shape[0] == 2
    assert len(run.seeds) == 12 * 1 + 2 * 2
    # The lost row names the worker that died; that worker finished nothing.
    assert dead == 0 and lost["worker"].iloc[0] not in set(complete["worker"])

    storage = pg_url.replace("postgresql://", "postgresql+psycopg://")
    optuna_study = optuna.load_study(study_name=f"{study}:tiny", storage=storage)
    states = [t.state for t in optuna_study.trials]
    assert states.count(TrialState.COMPLETE) == 12 and states.count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert optuna_study.metric_names == ["val_acc", "flops"]  # optuna-dashboard shows them

    # Every worker pulled the same complete run; report, recommend and compare work on it.
    cols = ["phase", "trial", "state", "arch", "student_acc"]
    for i in (1, 2):
        (folder,) = (tmp_path / f"w{i}" / "results").glob(f"{study}*")
        pd.testing.assert_frame_equal(read_trials(folder)[cols], run.trials[cols])
    assert main(["report", str(pulled), "--reports", str(tmp_path / "rep")]) == 0
    assert main(["recommend", str(pulled), "--max-gap", "100"]) == 0
    assert (
        main(["compare", str(pulled), str(next((tmp_path / "w1" / "results").glob(f"{study}*")))])
        == 0
    )
    out, err = capsys.readouterr()
    _no_password_anywhere(tmp_path, texts=[out, err, *[o for pair in outputs for o in pair]])


def test_the_same_command_in_two_terminals_shares_one_study(pg_url: str, tmp_path: Path) -> None:
    """Two identical commands: one study, no configuration trained twice, no live trial
    failed, and grouped trials train the architecture they record."""
    suite = tmp_path / "same.toml"
    suite.write_text(WORKER_SUITE.replace("seeds = 1\n", "seeds = 1\ngroup_size = 3\n"))
    procs = [
        _worker(suite, pg_url, "ci-same", tmp_path / "same", "--cache", str(tmp_path / "cache"))
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    (pulled,) = (tmp_path / "same" / "results").glob("ci-same*")
    trials = read_trials(pulled)
    search = trials[trials["phase"] == "search"]
    assert (search["state"] != "fail").all()  # nobody failed a live worker's trial
    complete = search[search["state"] == "complete"]
    assert len(search[search["state"].isin(["complete", "duplicate"])]) == 12
    assert not complete.duplicated(["arch", "temperature", "alpha"]).any()
    assert (complete["group_members"] >= 2).any()  # trials were grouped
    for _, r in complete.iterrows():  # the model trained is the one recorded
        arch = {"width": int(r["arch_width"]), "depth": int(r["arch_depth"])}
        assert count_params(build_student("mlp", (8,), 3, **arch)) == r["student_params"]


def test_a_study_of_another_suite_or_teacher_is_refused(
    pg_url: str, tmp_path: Path, capsys
) -> None:
    suite = tmp_path / "a.toml"
    suite.write_text(WORKER_SUITE.replace("trials = 12", "trials = 2"))
    args = ["--storage", pg_url, "--study", "ci-identity", "--reports", str(tmp_path / "p")]
    assert (
        main(
            ["run", str(suite), "--out", str(tmp_path / "a"), "--cache", str(tmp_path / "c"), *args]
        )
        == 0
    )
    other = tmp_path / "b.toml"
    other.write_text(suite.read_text().replace("members = 2", "members = 2\nseed = 7"))
    code = main(
        ["run", str(other), "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "c"), *args]
    )
    err = capsys.readouterr().err
    assert code == 2 and "must have been created by this suite" in err and "suite_sha256" in err
    assert PASSWORD not in err


def _two_local_workers(suite: Path, tmp_path: Path, capsys) -> Path:
    """``kdbench run SUITE --workers 2``; the run folder (exit 0 asserted)."""
    code = main(
        [
            "run",
            str(suite),
            "--workers",
            "2",
            "--out",
            str(tmp_path / "r"),
            "--reports",
            str(tmp_path / "p"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    (run,) = [p for p in (tmp_path / "r").iterdir() if p.name != "teachers"]
    return run


def test_local_workers_share_one_journal_study(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "local.toml"
    suite.write_text(WORKER_SUITE.replace("trials = 12", "trials = 8"))
    run = _two_local_workers(suite, tmp_path, capsys)
    trials = read_trials(run)
    search = trials[trials["phase"] == "search"]
    assert len(search) == 8 and sorted(search["trial"]) == list(range(8))
    assert (
        not search[search["state"] == "complete"].duplicated(["arch", "temperature", "alpha"]).any()
    )
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["workers"] == 2 and manifest["status"] == "complete"


def test_a_dead_local_worker_is_replaced_and_its_trial_retried(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    suite = tmp_path / "local.toml"
    suite.write_text(WORKER_SUITE.replace("trials = 12", "trials = 6"))
    # Both first workers die at their first group; their replacements (2, 3) do not. Which
    # worker reaches a group first depends on the machine's load (on a loaded one, one worker
    # can take the whole budget before the other has imported torch), so arming both is what
    # makes at least one death certain.
    monkeypatch.setenv(faults.ENV, "kill@group#1")
    monkeypatch.setenv(faults.WORKER_ENV, "0,1")
    run = _two_local_workers(suite, tmp_path, capsys)
    search = read_trials(run).query("phase == 'search'")
    assert len(search[search["state"] == "complete"]) == 6
    lost = search[search["state"] == "fail"]
    assert len(lost) >= 1
    # When the second worker took the first one's retry and died too, the retry is retried:
    # every lost trial, the original included, must name its own retry.
    retried_as = lost["fail_reason"].str.extract(r"retried as trial (\d+)")[0]
    assert retried_as.notna().all(), lost["fail_reason"].tolist()
    assert retried_as.astype(int).is_unique
    for _, row in lost.iterrows():
        (retry,) = search[search["trial"] == int(row["fail_reason"].rsplit(" ", 1)[1])].index
        assert search.loc[retry, "temperature"] == row["temperature"]
    assert sorted(search["trial"]) == list(range(len(search)))


def test_local_workers_are_pinned_one_per_gpu_round_robin() -> None:
    from bench.run.workers import Prestarted

    workers = Prestarted(3, gpus=["3", "5"])
    try:
        seen = [json.loads(p.stdout.readline()) for p in workers.procs]  # type: ignore[union-attr]
    finally:
        workers.release()
    assert [m["kind"] for m in seen] == ["imported"] * 3
    assert [m["gpu"] for m in seen] == ["3", "5", "3"]
    unpinned = Prestarted(1, gpus=[])
    try:
        (msg,) = [json.loads(p.stdout.readline()) for p in unpinned.procs]  # type: ignore[union-attr]
    finally:
        unpinned.release()
    assert msg["gpu"] == os.environ.get("CUDA_VISIBLE_DEVICES")


def test_the_gpus_to_pin_come_from_the_scheduler_or_the_devices() -> None:
    from bench.run.workers import pinned_env, worker_gpus

    allocated = {"CUDA_VISIBLE_DEVICES": "2, 7"}
    assert worker_gpus("auto", allocated) == ["2", "7"]
    assert worker_gpus("cuda", allocated) == ["2", "7"]
    assert worker_gpus("cpu", allocated) == []
    assert worker_gpus("cuda:1", allocated) == []  # one named card: every worker uses it
    assert worker_gpus("auto", {"CUDA_VISIBLE_DEVICES": ""}) == []
    import torch

    assert worker_gpus("auto", {}) == [str(i) for i in range(torch.cuda.device_count())]
    assert pinned_env(3, ["2", "7"]) == {"CUDA_VISIBLE_DEVICES": "7"}
    assert pinned_env(0, []) == {}
