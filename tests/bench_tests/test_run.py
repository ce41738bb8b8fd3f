"""End-to-end: the CLI turns a suite into a run folder and a report; resume; failures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from bench.cli import main
from bench.config.suite import load_suite
from bench.durable import faults
from bench.records import COLUMNS, SEED_COLUMNS, read_trials
from bench.run.options import RunHooks, RunOptions
from bench.run.sweep import run_suite
from bench.ship.serialize import available

pytestmark = pytest.mark.slow


def _run(suite: Path, tmp: Path, *extra: str) -> int:
    return main(
        [
            "run",
            str(suite),
            "--out",
            str(tmp / "results"),
            "--reports",
            str(tmp / "reports"),
            *extra,
        ]
    )


def _only_run(tmp: Path) -> Path:
    runs = [p for p in (tmp / "results").iterdir() if p.name != "teachers"]
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(autouse=True)
def _fresh_fault_counts():
    faults.reset()
    yield
    faults.reset()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    suite = tmp / "tiny.toml"
    from tests.bench_tests.conftest import TINY_SUITE, with_certify

    text = with_certify(TINY_SUITE, "candidates = 1\nseeds = 3\nmax_gap_pp = 100\n")
    ort = 'runtimes = ["torch", "onnxruntime"]' if available()["onnx"] is None else ""
    suite.write_text(re.sub(r"runtimes = .*", ort, text))
    code = _run(suite, tmp)
    return tmp, code, _only_run(tmp)


def test_run_exits_0_and_writes_every_documented_column(finished_run) -> None:
    _tmp, code, run_dir = finished_run
    assert code == 0
    assert re.fullmatch(r"\d{8}T\d{6}Z_tiny", run_dir.name)
    for name in (
        "manifest.json",
        "trials.csv",
        "trials.parquet",
        "seeds.csv",
        "seeds.parquet",
        "study.journal",
    ):
        assert (run_dir / name).is_file(), name
    parquet = pd.read_parquet(run_dir / "trials.parquet")
    csv = pd.read_csv(run_dir / "trials.csv")

    def with_arch(columns) -> list[str]:  # the family's arch_<name> columns follow 'arch'
        names = [c.name for c in columns]
        at = names.index("arch") + 1
        return [*names[:at], "arch_width", "arch_depth", *names[at:]]

    assert list(parquet.columns) == with_arch(COLUMNS) == list(csv.columns)
    assert list(pd.read_csv(run_dir / "seeds.csv").columns) == with_arch(SEED_COLUMNS)
    assert (
        parquet["arch"]
        == [
            f"width {w} × depth {d}"
            for w, d in zip(parquet["arch_width"], parquet["arch_depth"], strict=True)
        ]
    ).all()
    assert "width" not in parquet.columns and "depth" not in parquet.columns  # schema 3
    search = parquet[parquet["phase"] == "search"]
    assert len(search) == 3 and sorted(search["trial"]) == [0, 1, 2]
    assert len(parquet[parquet["phase"] == "certify"]) == 1
    done = parquet[parquet["state"] == "complete"]
    assert len(done) == 4
    for col in ("student_acc", "ensemble_acc", "scratch_acc", "agreement", "student_val_acc"):
        assert done[col].between(0, 1).all(), col
    assert (done["acc_gap"] - (done["ensemble_acc"] - done["student_acc"])).abs().max() < 1e-9
    # Every measured CPU column is filled; the GPU columns exist and are NaN on this machine.
    cpu_cols = [
        c
        for c in parquet.columns
        if c.startswith(
            ("latency_cpu_b", "ensemble_loop_latency_cpu", "ensemble_fused_latency_cpu")
        )
    ]
    assert done[cpu_cols].notna().all().all()
    gpu_cols = [c for c in parquet.columns if "gpu" in c]
    assert gpu_cols and done[gpu_cols].isna().all().all()
    fill = [
        "student_params",
        "ensemble_params",
        "param_ratio",
        "student_flops",
        "student_macs",
        "ensemble_flops",
        "flops_ratio",
        "kd_gain",
        "kl_to_teacher",
        "student_ece",
        "ensemble_ece",
        "teacher_mean_max_prob",
        "train_time_s",
        "speedup_cpu_b1",
        "acc_gap_ci_high",
        "kd_gain_ci_low",
        "student_acc_std",
    ]
    assert done[fill].notna().all().all()
    assert (done["student_macs"] * 2 == done["student_flops"]).all()
    assert (done["n_seeds"] == done["phase"].map({"search": 2, "certify": 3})).all()


def test_teacher_runs_once_per_split_and_never_inside_a_trial(tiny_suite, tmp_path) -> None:
    from tests.bench_tests import families

    suite = load_suite(
        tiny_suite(
            '\n[plugins]\nmodules = ["tests.bench_tests.families"]\n',
            replace={"members = 2": 'family = "counting_teacher"\nmembers = 2'},
        )
    )
    seen: list[int] = []
    run_dir = run_suite(
        suite,
        RunOptions(out_root=tmp_path / "results"),
        RunHooks(on_progress=lambda p: seen.append(families.FORWARD_CALLS["n"])),
    )
    assert len(seen) == 3  # one progress event per trial
    assert seen[0] > 0 and len(set(seen)) == 1  # the teacher ran before the trials, never in them
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["tasks"]["tiny"]["teacher"]["reused"] is False
    assert manifest["tasks"]["tiny"]["teacher"]["arch"] == "counting_teacher"


def test_manifest_holds_provenance_and_conventions(finished_run) -> None:
    _, _, run_dir = finished_run
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "complete"
    assert m["suite"]["name"] == "tiny" and len(m["suite_sha256"]) == 64
    assert {"torch", "optuna", "pandas"} <= set(m["packages"])
    assert m["machine"]["cpu_cores"] >= 1 and m["machine"]["latency_threads"] == 1
    assert "2 FLOPs per multiply-add" in m["conventions"]["flops"]
    assert "commit" in m["git"] and "dirty" in m["git"]
    teacher = m["tasks"]["tiny"]["teacher"]
    assert len(teacher["member_test_acc"]) == 2
    assert teacher["combine"] == "mean_prob" and teacher["source"]
    assert m["suite"]["teacher"]["combine"] == "mean_prob"


def test_report_is_self_contained(finished_run) -> None:
    tmp, _, run_dir = finished_run
    out = tmp / "reports" / run_dir.name
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert not re.search(r"(?:src|href)\s*=\s*[\"'](?!data:|#)", html), (
        "external reference in report.html"
    )
    assert "http://" not in html and "https://" not in html
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {
        "pareto_flops.png",
        "pareto_latency_cpu.png",
        "capacity.png",
        "pareto_params.png",
    } <= set(pngs)
    assert html.count("data:image/png;base64,") == len(pngs)
    for name in pngs:
        assert f"]({name})" in md


def test_second_run_reuses_the_teacher_and_never_overwrites(
    finished_run, tiny_suite, capsys
) -> None:
    tmp, _, first = finished_run
    suite = tmp / "tiny.toml"
    capsys.readouterr()
    assert _run(suite, tmp, "--trials", "1") == 0
    out = capsys.readouterr().out  # the user is told, not left waiting in silence
    assert "[tiny] reusing the cached teacher" in out and "ensemble.pt" in out
    runs = sorted(p for p in (tmp / "results").iterdir() if p.name != "teachers")
    assert len(runs) == 2 and first in runs
    second = next(p for p in runs if p != first)
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["tasks"]["tiny"]["teacher"]["reused"] is True
    # same teacher, same data: identical ensemble accuracy
    assert read_trials(second)["ensemble_acc"].iloc[0] == read_trials(first)["ensemble_acc"].iloc[0]


def test_same_suite_twice_gives_identical_accuracies(tiny_suite, tmp_path: Path) -> None:
    suite = tiny_suite()
    accs = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        assert (
            main(
                [
                    "run",
                    str(suite),
                    "--out",
                    str(out),
                    "--reports",
                    str(tmp_path / "p"),
                    "--trials",
                    "2",
                ]
            )
            == 0
        )
        run = next(p for p in out.iterdir() if p.name != "teachers")
        accs.append(read_trials(run)[["arch", "temperature", "student_acc", "scratch_acc"]])
    pd.testing.assert_frame_equal(accs[0], accs[1])


def test_resume_completes_the_remaining_trials(tiny_suite, tmp_path: Path, monkeypatch) -> None:
    suite = tiny_suite(replace={"trials = 3": "trials = 4"})
    monkeypatch.setenv(faults.ENV, "interrupt@group#3")  # Ctrl-C as the third trial starts
    assert _run(suite, tmp_path) == 130
    run_dir = _only_run(tmp_path)
    assert len(read_trials(run_dir)) == 2
    monkeypatch.delenv(faults.ENV)
    assert main(["run", "--resume", str(run_dir), "--reports", str(tmp_path / "reports")]) == 0
    trials = read_trials(run_dir)
    assert len(trials) == 4 and (trials["state"] == "complete").all()
    assert trials["trial"].is_unique
    storage = optuna.storages.journal.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal"))
    )
    study = optuna.load_study(study_name=f"{run_dir.name}:tiny", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    assert optuna.trial.TrialState.RUNNING not in states
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def test_diverging_and_crashing_trials_are_recorded_and_the_sweep_goes_on(
    tiny_suite, tmp_path: Path, monkeypatch
) -> None:
    suite = tiny_suite(
        replace={"batch_size = 128\n\n[search]": "batch_size = 128\nlr = 1e30\n\n[search]"}
    )
    assert _run(suite, tmp_path) == 0
    trials = read_trials(_only_run(tmp_path))
    assert len(trials) == 3
    assert (trials["state"] == "fail").all()
    assert trials["fail_reason"].str.contains("diverged: non-finite training loss").all()

    monkeypatch.setenv(faults.ENV, "raise@group#1")
    faults.reset()
    out = tmp_path / "second"
    assert (
        main(["run", str(tiny_suite()), "--out", str(out), "--reports", str(tmp_path / "p")]) == 0
    )
    trials = read_trials(next(p for p in out.iterdir() if p.name != "teachers"))
    assert list(trials["state"]) == ["fail", "complete", "complete"]
    assert trials["fail_reason"].iloc[0] == "RuntimeError: injected fault at group #1"


def test_recommend_cli_text_json_and_exit_codes(finished_run, capsys) -> None:
    _, _, run_dir = finished_run
    assert main(["recommend", str(run_dir), "--max-gap", "100"]) == 0
    out = capsys.readouterr().out
    assert "Recommended student" in out and "fixed-sequence testing" in out
    assert "WARNING: it rests on 240 test examples, fewer than about 1,000" in out
    assert main(["recommend", str(run_dir), "--max-gap", "100", "--max-flops", "1", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data[0]["met"] is False and data[0]["closest"] is not None


def test_shipped_seed_suite_loads_for_the_demo() -> None:
    suite = load_suite(Path(__file__).resolve().parents[2] / "suites" / "seed.toml")
    assert suite.certify.candidates >= 1 and suite.certify.seeds >= 3


def test_replay_evaluates_the_same_configurations_with_grouping_off(
    finished_run, tmp_path: Path
) -> None:
    _tmp, _, run_dir = finished_run
    separate = tmp_path / "separate.toml"
    from tests.bench_tests.conftest import TINY_SUITE

    separate.write_text(
        TINY_SUITE.replace(
            "batch_size = 128\n\n[search]", "batch_size = 128\ngrouped = false\n\n[search]"
        )
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                str(separate),
                "--out",
                str(out),
                "--reports",
                str(tmp_path / "p"),
                "--replay",
                str(run_dir),
            ]
        )
        == 0
    )
    replayed = read_trials(next(p for p in out.iterdir() if p.name != "teachers"))
    original = read_trials(run_dir)
    original = original[original["phase"] == "search"]
    cols = ["arch", "arch_width", "arch_depth", "temperature", "alpha"]
    pd.testing.assert_frame_equal(
        replayed[cols].reset_index(drop=True), original[cols].reset_index(drop=True)
    )
    # grouping changes the cost, not the result (teacher reused, same seeds)
    assert (replayed["student_acc"].to_numpy() - original["student_acc"].to_numpy()).max() < 0.01
    assert main(["run", str(separate), "--replay", str(tmp_path), "--out", str(out)]) == 2


def test_multi_task_suite_gives_one_report_with_a_section_per_task(tmp_path: Path) -> None:
    from tests.bench_tests.conftest import TINY_SUITE

    task_block = TINY_SUITE[TINY_SUITE.index("[task]") : TINY_SUITE.index("[teacher]")]
    two = TINY_SUITE.replace(
        task_block,
        task_block.replace("[task]", "[[tasks]]")
        + task_block.replace("[task]", "[[tasks]]")
        .replace('name = "tiny"', 'name = "other"')
        .replace("seed = 0", "seed = 1"),
    )
    two = two.replace("trials = 3", "trials = 2")
    suite = tmp_path / "two.toml"
    suite.write_text(two)
    assert _run(suite, tmp_path) == 0
    run_dir = _only_run(tmp_path)
    trials = read_trials(run_dir)
    assert sorted(set(trials["task"])) == ["other", "tiny"] and len(trials) == 4
    html = (tmp_path / "reports" / run_dir.name / "report.html").read_text()
    assert "Task &#x27;tiny&#x27;" in html and "Task &#x27;other&#x27;" in html
    assert (tmp_path / "reports" / run_dir.name / "other_pareto_flops.png").is_file()


def test_ensemble_and_students_are_timed_in_one_interleaved_pass_on_one_host(
    finished_run, tmp_path: Path
) -> None:
    """Latency is one interleaved pass on one host after the search (so drift cannot enter a
    speed-up): every student's record keeps the ensemble timed in its own pass, and a row's
    speed-up divides two numbers from that pass; a speed-up is never a ratio across hosts."""
    import shutil
    import socket

    from bench.study import Key

    _, _, run = finished_run
    copy = tmp_path / "journal"
    shutil.copy(run / "study.journal", copy)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(copy)))
    manifest = json.loads((run / "manifest.json").read_text())
    (search,) = [
        s for s in storage.get_all_studies() if s.study_name == f"{manifest['study']}:tiny"
    ]
    attrs = search.user_attrs
    ensemble = json.loads(attrs[Key.ENSEMBLE_LATENCY])
    students = {k: json.loads(v) for k, v in attrs.items() if k.startswith(Key.LATENCY)}
    assert students and ensemble["host"] == socket.gethostname()
    assert {s["host"] for s in students.values()} == {ensemble["host"]}
    assert {s["pass"] for s in students.values()} == {ensemble["pass"]}  # one pass
    assert all(s["ensemble"] == ensemble["columns"] for s in students.values())
    assert manifest["tasks"]["tiny"]["ensemble_latency"]  # the manifest has the full statistics
    trials = read_trials(run)
    done = trials[trials["state"] == "complete"]
    assert done["speedup_cpu_b1"].notna().all()
    assert (done["latency_host"] == socket.gethostname()).all()
    runtimes = manifest["tasks"]["tiny"]["runtimes"]
    if available()["onnx"] is None:  # timed in onnxruntime in the same interleaved pass
        assert runtimes["onnxruntime"].startswith("measured: onnxruntime")
        for col in ("latency_ort_cpu_b1_p50_ms", "latency_ort_cpu_bN_p99_ms", "speedup_ort_cpu_b1"):
            assert (done[col] > 0).all(), col
        assert all(
            s["ensemble"]["ensemble_fused_latency_ort_cpu_b1_p50_ms"] > 0 for s in students.values()
        )
    else:
        assert (
            runtimes["onnxruntime"].startswith("not measured")
            and done["speedup_ort_cpu_b1"].isna().all()
        )
    study = optuna.load_study(study_name=search.study_name, storage=storage)
    (key, data), (key2, data2) = list(students.items())[:2]
    # A student timed in a pass on another host (a study shared by several machines): its row
    # carries that pass's ensemble, so the speed-up is still a same-host, same-pass ratio.
    faster = {k: v / 2 for k, v in data2["ensemble"].items()}
    study.set_user_attr(key2, json.dumps({**data2, "host": "another-host", "ensemble": faster}))
    # A record with no pass ensemble, timed on another host: its own latency stays, its
    # speed-ups are NaN.
    legacy = {k: v for k, v in data.items() if k != "ensemble"}
    study.set_user_attr(key, json.dumps({**legacy, "host": "another-host"}))
    out = tmp_path / "pulled"
    assert (
        main(["pull", "--storage", str(copy), "--study", manifest["study"], "--out", str(out)]) == 0
    )
    (pulled,) = [p for p in out.iterdir() if p.is_dir()]
    rows = read_trials(pulled)
    rows = rows[rows["state"] == "complete"]

    def of(k: str) -> pd.DataFrame:
        return rows[rows["arch"] == k.removeprefix(Key.LATENCY).split(":", 1)[1]]

    moved = of(key)
    assert len(moved) and moved["speedup_cpu_b1"].isna().all()
    assert moved["latency_cpu_b1_p50_ms"].notna().all()
    other = of(key2)
    assert len(other) and (other["latency_host"] == "another-host").all()
    loop = other["ensemble_loop_latency_cpu_b1_p50_ms"]
    assert (loop == faster["ensemble_loop_latency_cpu_b1_p50_ms"]).all()
    assert np.allclose(
        other["speedup_cpu_b1_vs_loop"], loop / other["latency_cpu_b1_p50_ms"], rtol=1e-12
    )
    rest = rows[~rows.index.isin(moved.index) & ~rows.index.isin(other.index)]
    assert rest["speedup_cpu_b1"].notna().all()
