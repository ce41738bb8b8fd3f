"""Training recipes in suites: [student] and [teacher] keys, their rules, and where a run
records them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.records import read_trials
from bench.suite import load_suite
from bench.tasks import load_task
from bench.teachers.cache import teacher_cache_key
from tests.bench_tests.conftest import TINY_SUITE, assert_refused

STUDENT = "[student]\nepochs = 3\nbatch_size = 128\n"
TEACHER = "[teacher]\nmembers = 2\nepochs = 3\nbatch_size = 128\n"


@pytest.mark.parametrize(
    ("table", "keys", "fragment"),
    [
        ("student", 'optimizer = "rmsprop"', "'optimizer' parameter of [student]"),
        ("student", "nesterov = true", "'nesterov' parameter of [student] must be false unless"),
        ("student", 'schedule = "onecycle"\nwarmup_epochs = 1', "it warms up by itself"),
        ("student", "warmup_epochs = 3", "less than epochs (3)"),
        ("student", 'schedule = "step"', "'milestones' parameter of [student] must be given"),
        ("student", 'schedule = "step"\nmilestones = [2, 1]', "increasing epochs in [1, 2]"),
        ("student", "milestones = [1]", "left out unless schedule = 'step'"),
        ("student", "label_smoothing = 1.0", "'label_smoothing' parameter of [student]"),
        ("student", "momentum = 1.0", "'momentum' parameter of [student]"),
        (
            "teacher",
            'optimizer = "sgd"\nmomentum = 0.0\nnesterov = true',
            "[teacher] must be false",
        ),
        ("teacher", "gamma = 0", "'gamma' parameter of [teacher]"),
    ],
)
def test_bad_recipes_exit_2_with_one_line_naming_the_key(
    table: str, keys: str, fragment: str, tmp_path: Path, capsys
) -> None:
    head = STUDENT if table == "student" else TEACHER
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE.replace(head, head + keys + "\n"))
    code = main(["run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    out, err = capsys.readouterr()
    assert_refused(code, out, err, fragment, tmp_path / "r")


def test_recipe_keys_at_their_defaults_change_neither_digest_nor_teacher_cache(
    tmp_path: Path,
) -> None:
    """A suite written before recipes existed keeps its digest (resume, join) and its cached
    teacher; spelling the defaults out changes nothing, another recipe changes both."""
    defaults = 'optimizer = "adam"\nschedule = "constant"\nmomentum = 0.9\nlabel_smoothing = 0.0\n'
    (tmp_path / "a.toml").write_text(TINY_SUITE)
    (tmp_path / "b.toml").write_text(
        TINY_SUITE.replace(STUDENT, STUDENT + defaults).replace(TEACHER, TEACHER + defaults)
    )
    (tmp_path / "c.toml").write_text(
        TINY_SUITE.replace(TEACHER, TEACHER + 'optimizer = "sgd"\nlr = 0.05\n')
    )
    a, b, c = (load_suite(tmp_path / f"{n}.toml") for n in "abc")
    assert a.digest() == b.digest() != c.digest()
    task = load_task(a.tasks[0])
    assert teacher_cache_key(task, a.teacher) == teacher_cache_key(task, b.teacher)
    assert teacher_cache_key(task, a.teacher) != teacher_cache_key(task, c.teacher)


@pytest.mark.slow
def test_a_run_records_its_recipe_in_every_row_and_in_the_manifest(tmp_path: Path, capsys) -> None:
    recipe = (
        'optimizer = "sgd"\nnesterov = true\nlr = 0.05\nweight_decay = 0.0005\n'
        'schedule = "cosine"\nwarmup_epochs = 1\nlabel_smoothing = 0.1\n'
    )
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        TINY_SUITE.replace(STUDENT, STUDENT + recipe).replace(
            TEACHER, TEACHER + 'optimizer = "adamw"\nschedule = "onecycle"\n'
        )
    )
    code = main(["run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    assert code == 0, capsys.readouterr().err
    (run,) = [p for p in (tmp_path / "r").iterdir() if p.name != "teachers"]
    trials = read_trials(run)
    want = (
        "sgd (momentum 0.9, nesterov), cosine, warm-up 1 epoch(s), label smoothing 0.1, "
        "lr 0.05, weight decay 0.0005"
    )
    assert (trials["recipe"] == want).all()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["suite"]["student"]["optimizer"] == "sgd"
    assert manifest["suite"]["teacher"]["schedule"] == "onecycle"
