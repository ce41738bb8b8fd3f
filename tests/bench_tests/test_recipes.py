"""Training recipes in suites: [student] and [teacher] keys, their rules, and where a run
records them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from bench.cli import main
from bench.config.suite import load_suite
from bench.records import read_trials
from bench.tasks import load_task
from bench.teachers.cache import teacher_cache_key
from tests.bench_tests.conftest import TINY_SUITE, assert_refused, with_certify

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


SEARCHED = "alpha = { low = 0.5, high = 1.0 }"


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        (
            "lr = { low = 0.0, high = 0.1 }",
            "'lr.low' parameter of [search] must be a number in (0, 10]",
        ),
        ("label_smoothing = 1.5", "'label_smoothing' parameter of [search]"),
        ("momentum = { low = 0.5, high = 0.9 }", "unless [student] optimizer = 'sgd'"),
        (
            "schedule = 1",
            "width, depth, size, lr, weight_decay, momentum, label_smoothing, temperature",
        ),
    ],
)
def test_bad_searched_recipe_keys_exit_2_with_one_line(
    keys: str, fragment: str, tmp_path: Path, capsys
) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE.replace(SEARCHED, SEARCHED + "\n" + keys))
    code = main(["run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    out, err = capsys.readouterr()
    assert_refused(code, out, err, fragment, tmp_path / "r")


def test_a_searched_learning_rate_is_shared_by_a_group_and_its_scratch_twins(
    tmp_path: Path, capsys
) -> None:
    """lr and weight decay sampled per group: both trials of a group (and their scratch twins)
    train with the group's values, another group samples its own, and certification trains
    a candidate again with its trial's values."""
    space = (
        "\nlr = { low = 1e-3, high = 3e-2, log = true }\nweight_decay = { low = 0.0, high = 0.01 }"
    )
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        with_certify(
            TINY_SUITE.replace(SEARCHED, SEARCHED + space)
            .replace("trials = 3", "trials = 4\ngroup_size = 2")
            .replace(STUDENT, STUDENT + 'schedule = "cosine"\nwarmup_epochs = 1\n'),
            "candidates = 1\nseeds = 2\n",
        )
    )
    code = main(["run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    assert code in (0, 1), capsys.readouterr().err  # 1: the run certified no student
    (run,) = [p for p in (tmp_path / "r").iterdir() if p.name != "teachers"]
    trials = read_trials(run)
    search = trials[trials["phase"] == "search"].sort_values("trial")
    assert (search["state"] == "complete").all()
    groups = search.groupby(search["trial"] // 2)
    assert (groups["lr"].nunique() == 1).all() and (groups["scratch_acc"].nunique() == 1).all()
    assert search["lr"].nunique() == 2 and search["weight_decay"].nunique() == 2
    for _, r in search.iterrows():
        assert f"lr {r['lr']:g}, weight decay {r['weight_decay']:g}" in r["recipe"]
    certified = trials[trials["phase"] == "certify"]
    source = search.set_index("trial").loc[certified["trial"]]
    assert list(certified["lr"]) == list(source["lr"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["suite"]["search"]["lr"]["log"] is True
    # the exported snippet trains the candidate again: its own lr and the suite's recipe
    assert (
        main(
            [
                "export",
                str(run),
                "--out",
                str(tmp_path / "ship"),
                "--trial",
                str(int(certified["trial"].iloc[0])),
            ]
        )
        == 0
    )
    snippet = tomllib.loads((tmp_path / "ship" / "student.toml").read_text())
    row = certified.iloc[0]
    assert snippet["student"]["lr"] == pytest.approx(float(row["lr"]))
    assert snippet["student"]["weight_decay"] == pytest.approx(float(row["weight_decay"]))
    assert snippet["student"]["schedule"] == "cosine" and snippet["student"]["warmup_epochs"] == 1
    assert "optimizer" not in snippet["student"]  # adam: a default, left out as in the suite
