"""`[teacher] kind = "specialists"`: validation, a run end to end on digits, its columns and
report section, and the cached system reused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.config.suite import load_suite
from bench.records import read_trials
from bench.tasks import load_task

ROOT = Path(__file__).resolve().parents[2]

TEACHER = """kind = "specialists"
family = "mlp"
arch = { width = 64, depth = 1 }
epochs = 4
batch_size = 128
specialists = 3
specialist_epochs = 2"""


def _suite(tmp: Path, teacher: str = TEACHER, task: str = 'kind = "digits"') -> Path:
    path = tmp / "suite.toml"
    path.write_text(
        f"""name = "spec_test"
[task]
{task}
[teacher]
{teacher}
[student]
epochs = 3
batch_size = 128
[search]
width = {{ low = 8, high = 32, log = true }}
depth = 1
[budget]
trials = 2
seeds = 2
[certify]
candidates = 1
seeds = 2
max_gap_pp = 100.0
[measure]
threads = 1
min_run_time = 0.01
runtimes = ["torch"]
"""
    )
    return path


def _run(tmp: Path, suite: Path, capsys) -> tuple[int, str, str]:
    code = main(
        [
            "run",
            str(suite),
            "--out",
            str(tmp / "results"),
            "--reports",
            str(tmp / "reports"),
            "--cache",
            str(tmp / "cache"),
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("teacher", "expected"),
    [
        (
            "members = 3\nspecialists = 2",
            "The 'specialists' parameter of [teacher] must be left out unless kind = 'specialists'. Got 2 instead.",
        ),
        (
            TEACHER + "\nmembers = 3",
            "The 'members' parameter of [teacher] must be 1 with kind = 'specialists' (the generalist). Got 3 instead.",
        ),
        (
            TEACHER + '\ncombine = "mean_logit"',
            "The 'combine' parameter of [teacher] must be left out with kind = 'specialists'",
        ),
        (
            TEACHER + "\ncluster_max = 1",
            "The 'cluster_max' parameter of [teacher] must be 0 (no limit) or >= max(cluster_min, 2) = 2. Got 1 instead.",
        ),
        (
            TEACHER.replace("specialists = 3", "specialists = 11"),
            "The 'specialists' parameter of [teacher] must be <= the number of classes of task 'digits' (digits) (10). Got 11 instead.",
        ),
        (
            'kind = "experts"',
            "The 'kind' parameter of [teacher] must be one of",
        ),
    ],
)
def test_bad_specialist_settings_exit_2_with_the_key_and_no_run_folder(
    teacher: str, expected: str, tmp_path: Path, capsys
) -> None:
    code, out, err = _run(tmp_path, _suite(tmp_path, teacher), capsys)
    assert code == 2, out + err
    assert expected in err
    assert "Traceback" not in err
    assert not list((tmp_path / "results").glob("*_spec_test"))


@pytest.mark.slow
def test_a_specialist_teacher_run_on_digits_reports_generalist_specialists_and_distil_back(
    tmp_path: Path, capsys
) -> None:
    code, out, err = _run(tmp_path, _suite(tmp_path), capsys)
    assert code == 0, out + err
    run_dir = next((tmp_path / "results").glob("*_spec_test"))
    trials = read_trials(run_dir)
    done = trials[trials["state"] == "complete"]
    assert len(done) >= 2
    for col in ("generalist_taught_acc", "specialist_gain", "specialist_gain_ci_low"):
        assert done[col].notna().all(), col
    gain = done["student_acc"] - done["generalist_taught_acc"]
    assert (gain - done["specialist_gain"]).abs().max() < 1e-9
    assert (done["specialist_gain_ci_low"] <= done["specialist_gain"] + 1e-12).all()
    seeds = pd.read_csv(run_dir / "seeds.csv")
    assert seeds["generalist_taught_acc"].between(0, 1).all()

    manifest = json.loads((run_dir / "manifest.json").read_text())
    teacher = manifest["tasks"]["digits"]["teacher"]
    spec = teacher["extra"]["specialists"]
    assert teacher["combine"] == "specialists" and teacher["members"] == 1 + len(spec["class_sets"])
    classes = [c for s in spec["class_sets"] for c in s]
    assert len(classes) == len(set(classes))  # disjoint clusters
    # generalist = the system's only member predicting every class; the ensemble = the system
    assert teacher["best_member_acc"] == pytest.approx(spec["generalist_acc"])
    assert teacher["ensemble_acc"] == pytest.approx(spec["system_acc"])
    covered = sum(r["n_test"] for r in spec["by_covering"])
    assert covered == spec["n_test"] == manifest["tasks"]["digits"]["sizes"]["test"]
    assert spec["system_params"] > spec["generalist_params"]

    report = next((tmp_path / "reports").glob("*_spec_test")) / "report.md"
    text = report.read_text()
    assert "Specialists: the generalist against generalist + specialists" in text
    assert "specialists covering the true class" in text
    assert "Distilled back: does the student keep the specialists' gain?" in text
    assert (report.parent / "capacity.png").is_file()

    # A second run reuses the cached system: same outputs, same clusters.
    code, out, err = _run(tmp_path, _suite(tmp_path), capsys)
    assert code == 0, out + err
    second = sorted((tmp_path / "results").glob("*_spec_test"))[-1]
    again = json.loads((second / "manifest.json").read_text())["tasks"]["digits"]["teacher"]
    assert again["reused"] is True
    assert again["outputs_sha256"] == teacher["outputs_sha256"]
    assert again["extra"]["specialists"]["class_sets"] == spec["class_sets"]


def test_the_shipped_specialists_suite_is_valid_with_at_least_50_classes() -> None:
    suite = load_suite(ROOT / "suites" / "specialists.toml")
    assert suite.teacher.kind == "specialists"
    task = load_task(suite.tasks[0])
    assert task.num_classes >= 50
    # classes come in coarse groups of confusable siblings
    assert task.class_names[:3] == ("g0.0", "g0.1", "g0.2")
