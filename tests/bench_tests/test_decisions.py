"""Decisions a user can trust at a glance, and a student they can ship (issue #10)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.config.suite import load_suite, parse_suite, suite_from_dict
from bench.records import load_run
from bench.report import plots
from bench.run.options import RunOptions
from bench.run.sweep import run_suite
from bench.tasks import load_task
from kdcore import build_student
from tests.bench_tests.conftest import TINY_SUITE, make_table, with_certify

ROOT = Path(__file__).resolve().parents[2]
SUITE = with_certify(TINY_SUITE, "candidates = 2\nseeds = 3\nmax_gap_pp = 100\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("decisions")
    suite = tmp / "tiny.toml"
    suite.write_text(SUITE)
    return run_suite(load_suite(suite), RunOptions(out_root=tmp / "results"))


def _refuse(name: str) -> None:
    raise ValueError(name)


@pytest.mark.slow
def test_no_row_of_a_small_task_has_a_zero_width_interval(run: Path) -> None:
    trials = load_run(run).trials.query("state == 'complete'")
    assert (trials["n_test"] == 240).all()
    for col in ("student_acc", "acc_gap", "kd_gain"):
        width = trials[f"{col}_ci_high"] - trials[f"{col}_ci_low"]
        # 240 examples: even with no discordant pair a paired interval is ±1.05 pp wide.
        assert (width > 0.02).all(), col
        assert (
            trials[f"{col}_ci_low"].between(-1, 1).all()
            and trials[f"{col}_ci_high"].between(-1, 1).all()
        )
    rel = trials["rel_acc_ci_low"] * trials["ensemble_acc"]
    np.testing.assert_allclose(rel, trials["ensemble_acc"] - trials["acc_gap_ci_high"], atol=1e-12)


@pytest.mark.slow
def test_export_ships_a_file_that_reproduces_its_test_accuracy_exactly(
    run: Path, tmp_path: Path, capsys
) -> None:
    assert main(["export", str(run), "--max-gap", "100", "--out", str(tmp_path / "ship")]) == 0
    capsys.readouterr()
    blob = torch.load(tmp_path / "ship" / "student.pt", weights_only=True)
    model = build_student(blob["family"], blob["input_shape"], blob["num_classes"], **blob["arch"])
    model.load_state_dict(blob["state_dict"])
    # Rebuild the raw test split from the run's own suite, and apply the exported preprocessing.
    manifest = load_run(run).manifest
    cfg = suite_from_dict(manifest.suite).tasks[0]
    raw = cfg.load()
    task = load_task(cfg)
    x = torch.as_tensor(raw.x[task.rows["test"]]).reshape(len(task.rows["test"]), -1)
    prep = blob["preprocessing"]
    x = ((x - prep["mean"]) / prep["scale"]).float().reshape(-1, *blob["input_shape"])
    with torch.no_grad():
        acc = float((model.eval()(x).argmax(-1) == task.y_test).float().mean())
    prov = blob["provenance"]
    assert acc == prov["test_acc"]  # exactly
    seeds = load_run(run).seeds
    mine = seeds.query(
        f"phase == 'certify' and trial == {prov['trial']} and seed == {prov['seed']}"
    )
    assert float(mine["student_acc"].iloc[0]) == acc
    card = (tmp_path / "ship" / "MODEL_CARD.md").read_text()
    for section in (
        "## Data",
        "## Teacher",
        "## Accuracy (test split)",
        "## Cost",
        "Latency protocol",
        "95 % interval",
    ):
        assert section in card
    assert f"**This file: {acc:.2%}".replace("%", " %") in card
    snippet = tomllib.loads((tmp_path / "ship" / "student.toml").read_text())
    assert snippet["search"]["width"] == blob["arch"]["width"]
    assert parse_suite({"task": {"kind": "synthetic"}, **snippet}).search.temperature.fixed


@pytest.mark.slow
def test_export_refuses_a_trial_whose_weights_were_not_kept(
    run: Path, tmp_path: Path, capsys
) -> None:
    trials = load_run(run).trials
    confirmed = set(trials.loc[trials["phase"] == "certify", "trial"])
    other = next(int(t) for t in trials["trial"] if t not in confirmed)
    code = main(["export", str(run), "--trial", str(other), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "must name a certification candidate" in err and err.count("\n") == 1


@pytest.mark.slow
def test_the_reports_first_screen_decides(run: Path, tmp_path: Path) -> None:
    from bench.decision.recommend import Constraints
    from bench.report import build_report

    out = build_report(run, tmp_path / "rep", constraints=Constraints(max_gap=1.0))
    md = (out / "report.md").read_text()
    first_screen = md[: md.index("![")]  # everything before the first plot
    assert first_screen.index("## Decision") < first_screen.index("Pareto set")
    for needle in (
        "Ship width",
        "parameters",
        "FLOPs per sample",
        "CPU latency",
        "faster than the faster ensemble form",
        "95 % interval",
        "test examples",
        "Student-t seed part",
        "Certified at 100 pp at level 0.025 (this round's share of the run's family-wise "
        "error 0.05)",
        "fresh seeds (2000000000, 2000000001, 2000000002)",
        "one more training run",
        "Distillation is",
        "◀ recommended",
        "WARNING:",
    ):
        assert needle in first_screen, needle
    assert "```toml" not in md and "[budget]" in md  # the suite shown as TOML to copy
    suite_text = md[md.index("Suite as run (TOML)") :]
    tomllib.loads(suite_text[suite_text.index("```") + 4 : suite_text.rindex("```")])


def test_the_recommended_student_is_on_the_plotted_front() -> None:
    # Trial 1 is recommended (cheapest within 0.5 pp on the upper bound) but its mean gap is
    # larger than trial 2's: on a mean-gap front it would be dominated, on the bound front it is not.
    table = make_table(
        {"trial": 0, "student_flops": 500, "student_acc": 0.90},
        {"trial": 1, "student_flops": 1000, "student_acc": 0.967, "half_ci": 0.001},
        {"trial": 2, "student_flops": 1000, "student_acc": 0.969, "half_ci": 0.009},
    )
    data = plots.pareto_data(table, "student_flops", recommended_trial=1)
    assert bool(data.loc[data["trial"] == 1, "on_front"].iloc[0])


def test_plot_frames_show_every_point_and_clip_only_wild_intervals() -> None:
    values = np.array([0.2, 0.5, 1.0, -0.3])
    low, high = values - 0.3, values + 0.3
    low[0], high[0] = -45.0, 45.0  # one ±45 pp interval
    lo, hi = plots.frame_limits(values, low, high, 0.0)
    assert lo < values.min() and hi > values.max()  # every point inside
    assert hi - lo < 10  # not flattened by the wild interval
    wide = plots.frame_limits(values, values - 0.3, values + 0.3, 0.0)
    assert wide[0] <= (values - 0.3).min() and wide[1] >= (values + 0.3).max()  # tame ones kept


@pytest.mark.slow
def test_recommend_json_is_strict(run: Path, capsys) -> None:
    code = main(["recommend", str(run), "--min-relative-acc", "0.5", "--json"])
    out = capsys.readouterr().out
    data = json.loads(out, parse_constant=_refuse)
    assert code in (0, 1) and isinstance(data, list) and "_gap_bound" not in out
    assert data[0]["constraints"]["min_relative_acc"] == 0.5


def test_cli_help_version_and_flags_anywhere(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("kdbench ")
    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text and "examples:" in text and "--min-relative-acc" in text
    parser_help = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bench.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'optuna' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert parser_help.stdout.strip().endswith("False False")  # lazy: --help loads neither


def _help(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def _entries(text: str) -> dict[str, str]:
    """``--help``'s argument entries (two-space indented) and their help text."""
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            name, _, rest = line.strip().partition("  ")
            out[name] = rest.strip()
        elif line.startswith("   ") and name is not None:
            out[name] = (out[name] + " " + line.strip()).strip()
        else:
            name = None
    return out


def test_every_option_has_help_text(capsys) -> None:
    top = _help([], capsys)
    commands = [
        line.split()[0]
        for line in top.splitlines()
        if line.startswith("    ") and line.split()[0].isalpha() and line[4] != " "
    ]
    assert {"run", "recommend", "export", "compare", "doctor"} <= set(commands)
    missing = [
        f"{cmd} {name}"
        for cmd in commands
        for name, help_text in _entries(_help([cmd], capsys)).items()
        if not help_text and not name.startswith("kdbench")
    ]
    assert not missing, missing
    assert _entries("options:\n  --flag X\n  --other Y   its help\n") == {
        "--flag X": "",
        "--other Y": "its help",
    }


@pytest.mark.slow
def test_progress_lines_when_not_a_terminal_and_quiet(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(TINY_SUITE.replace("trials = 3", "trials = 2"))
    args = ["--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    assert main(["run", str(suite), *args, "-v"]) == 0  # -v after the command
    out = capsys.readouterr().out
    assert "training the teacher ensemble (2 members): epoch 1/3" in out
    assert "[tiny] 1/2 trials, 00:" in out and "ETA" in out and "| #0 width" in out
    assert "\r" not in out  # no progress-bar redraws in a log
    assert main(["-q", "run", str(suite), *args]) == 0
    out = capsys.readouterr().out
    assert "trials," not in out and "run folder:" in out


def test_progress_for_a_student_larger_than_the_ensemble(capsys) -> None:
    from bench.progress import ProgressPrinter
    from bench.search import Progress

    row = (
        make_table({"trial": 3, "student_params": 650_000, "ensemble_params": 233_290})
        .iloc[0]
        .to_dict()
    )
    ProgressPrinter(quiet=False).trial(Progress("tiny", 1, 2, 1.0, row, None))
    line = capsys.readouterr().out  # not a terminal: one plain line per trial
    assert (
        "#3 " in line and "params 2.8 times the size of the ensemble" in line and "1/0" not in line
    )


def test_summary_table_shows_cost_and_uncertainty() -> None:
    from bench.decision.recommend import Constraints, recommend
    from bench.report.tables import summary_table

    rec = recommend(
        make_table({"trial": 0, "phase": "certify", "certify_max_gap": 0.05}),
        Constraints(max_gap=0.05),
    )
    row = summary_table({"t": rec}).iloc[0]
    assert row["FLOPs"] == 2000 and row["speed-up vs faster ensemble form"] == pytest.approx(4.0)
    assert row["recipe gap pp [95 %]"].startswith("2.00 [1.80, 2.20]")
    assert row["file gap pp [95 %]"].startswith("2.00 [1.80, 2.20]")
    assert row["certified at pp (alpha)"] == "5 (0.05)"
    assert row["certified bound pp"] == pytest.approx(2.2)
    assert isinstance(pd.DataFrame, type)


def test_the_eta_counts_search_trials_only_not_the_teacher(monkeypatch, capsys) -> None:
    import bench.progress as progress
    from bench.search import Progress

    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    show = progress.ProgressPrinter(quiet=False)
    row = make_table({"trial": 0}).iloc[0].to_dict()
    clock[0] = 600.0  # ten minutes of teacher training before the first trial ends
    show.trial(Progress("tiny", 1, 40, 1.0, row, None))
    clock[0] = 602.0  # then a trial every 2 s
    show.trial(Progress("tiny", 2, 40, 1.0, row, None))
    first, second = capsys.readouterr().out.splitlines()
    assert "ETA" not in first and "10:00 elapsed" in first
    assert "ETA 01:16" in second  # 38 trials left at 2 s each, not at 301 s each
