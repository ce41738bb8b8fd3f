"""[augment] in suites: its rules, the per-channel scaler it needs, and runs with stored views
and with an online teacher (their rows record the recipe and the views; two workers give the
same table)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.config.suite import load_suite
from bench.group.augment import channel_scaled
from bench.records import read_trials
from bench.tasks import load_task
from tests.bench_tests.conftest import TINY_SUITE, assert_refused

DIGITS = """
name = "tinyaug"

[task]
kind = "digits"
name = "digits"

[teacher]
family = "cnn"
arch = { channels = 8, blocks = 1 }
members = 2
epochs = 3
batch_size = 128

[student]
family = "cnn"
epochs = 3
batch_size = 128
optimizer = "sgd"
nesterov = true
lr = 0.05
schedule = "cosine"
warmup_epochs = 1

[augment]
random_crop = 1
teacher = "views"
views = 2

[search]
channels = { low = 2, high = 6 }
blocks = 1
temperature = { low = 1.0, high = 4.0 }
alpha = { low = 0.5, high = 1.0 }

[budget]
trials = 2
seeds = 2

[certify]
candidates = 0

[measure]
device = "cpu"
batch = 16
min_run_time = 0.005
warmup = 1
multi_thread = false
runtimes = ["torch"]
"""


def _run(suite: Path, out: Path, capsys, *extra: str) -> Path:
    code = main(["run", str(suite), "--out", str(out), "--reports", str(out / "rep"), *extra])
    assert code in (0, 1), capsys.readouterr().err  # 1: the run certified no student
    return next(p for p in out.iterdir() if p.name.endswith(f"_{load_suite(suite).name}"))


TABULAR = TINY_SUITE + "\n[augment]\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (TABULAR + "random_crop = 1", "'random_crop' parameter of [augment] must be off for"),
        (TABULAR + "hflip = true", "views need image inputs [C, H, W] or [H, W]"),
        (TABULAR + "random_crop = -1", "'random_crop' parameter of [augment]"),
        (TABULAR + 'teacher = "cached"', "'teacher' parameter of [augment]"),
        (TABULAR + "views = 0", "'views' parameter of [augment]"),
        (TABULAR + "mixup = -0.5", "'mixup' parameter of [augment]"),
        (TABULAR + "crop = 1", "Unknown key 'crop' in [augment]"),
        (
            DIGITS.replace("random_crop = 1", "random_crop = 8"),
            "must be smaller than task 'digits''s images (8×8 pixels)",
        ),
    ],
)
def test_bad_augmentation_exits_2_with_one_line_naming_the_key(
    text: str, fragment: str, tmp_path: Path, capsys
) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(text)
    code = main(["run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    out, err = capsys.readouterr()
    assert_refused(code, out, err, fragment, tmp_path / "r")


def test_an_augment_table_with_every_transform_off_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(TINY_SUITE)
    (tmp_path / "b.toml").write_text(TINY_SUITE + '\n[augment]\nteacher = "online"\nviews = 3\n')
    (tmp_path / "c.toml").write_text(DIGITS)
    a, b = load_suite(tmp_path / "a.toml"), load_suite(tmp_path / "b.toml")
    assert a.digest() == b.digest()
    assert b.augment.describe() == "none"
    assert load_suite(tmp_path / "c.toml").augment.describe() == "crop 1; teacher: 2 views"


def test_augmentation_scales_images_per_channel_not_per_pixel(tmp_path: Path) -> None:
    """A crop shifts pixels; under a per-pixel scaler a stroke shifted onto a blank border
    pixel would be divided by that pixel's tiny deviation."""
    (tmp_path / "c.toml").write_text(DIGITS)
    suite = load_suite(tmp_path / "c.toml")
    plain = load_task(suite.tasks[0])
    task = channel_scaled(plain, suite)
    assert task.scaler_mean is not None and task.scaler_scale is not None
    assert len(set(task.scaler_mean.tolist())) == 1 and len(set(task.scaler_scale.tolist())) == 1
    assert abs(float(task.x_train.mean())) < 1e-4 and abs(float(task.x_train.std()) - 1) < 1e-3
    # the same pixels: undoing either scaler gives the same images
    assert plain.scaler_mean is not None and plain.scaler_scale is not None
    raw_a = (
        plain.x_test.reshape(len(plain.x_test), -1) * torch.from_numpy(plain.scaler_scale).float()
        + torch.from_numpy(plain.scaler_mean).float()
    )
    raw_b = (
        task.x_test.reshape(len(task.x_test), -1) * torch.from_numpy(task.scaler_scale).float()
        + torch.from_numpy(task.scaler_mean).float()
    )
    assert torch.allclose(raw_a, raw_b, atol=1e-4)
    assert float(task.x_train.abs().max()) < 10 < float(plain.x_train.abs().max())


@pytest.mark.slow
def test_a_views_run_records_its_recipe_and_views_and_is_the_same_with_two_workers(
    tmp_path: Path, capsys
) -> None:
    suite = tmp_path / "tinyaug.toml"
    suite.write_text(DIGITS)
    tables = []
    for workers in ("1", "2"):
        run = _run(suite, tmp_path / f"r{workers}", capsys, "--workers", workers)
        tables.append(read_trials(run).sort_values("trial").reset_index(drop=True))
    trials = tables[0]
    assert (trials["state"] == "complete").all()
    assert (trials["augment"] == "crop 1; teacher: 2 views").all()
    assert trials["recipe"].str.startswith("sgd (momentum 0.9, nesterov), cosine, warm-up 1").all()
    assert trials["scratch_acc"].notna().all() and (trials["student_acc"] > 0.15).all()
    same = [
        c
        for c in trials.columns
        if not any(k in c for k in ("time", "latency", "throughput", "speedup", "datetime"))
        and c not in ("run_id", "worker", "train_threads")
    ]
    pd.testing.assert_frame_equal(tables[0][same], tables[1][same])


@pytest.mark.slow
def test_an_online_teacher_run_completes_and_differs_from_stored_views(
    tmp_path: Path, capsys
) -> None:
    views = tmp_path / "tinyaug.toml"
    views.write_text(DIGITS)
    online = tmp_path / "tinyon.toml"
    online.write_text(
        DIGITS.replace('teacher = "views"\nviews = 2', 'teacher = "online"')
        .replace('name = "tinyaug"', 'name = "tinyon"')
        .replace("[certify]\ncandidates = 0", "[certify]\ncandidates = 1\nseeds = 2")
    )
    a = read_trials(_run(views, tmp_path / "v", capsys, "--cache", str(tmp_path / "c")))
    run = _run(online, tmp_path / "o", capsys, "--cache", str(tmp_path / "c"))
    b = read_trials(run)
    assert (b["augment"] == "crop 1; teacher: online").all()
    assert (b["state"] == "complete").all() and (b["student_acc"] > 0.15).all()
    # the same cached teacher and seeds; the targets (and views) differ
    assert not a["student_acc"].equals(b["student_acc"])
    # the shipped student's snippet and card say how it was trained: recipe and views
    trial = int(b.loc[b["phase"] == "certify", "trial"].iloc[0])
    assert main(["export", str(run), "--out", str(tmp_path / "ship"), "--trial", str(trial)]) == 0
    snippet = tomllib.loads((tmp_path / "ship" / "student.toml").read_text())
    assert snippet["student"]["optimizer"] == "sgd" and snippet["student"]["nesterov"] is True
    assert snippet["augment"] == {
        "random_crop": 1,
        "hflip": False,
        "mixup": 0.0,
        "teacher": "online",
        "views": 8,
    }
    card = (tmp_path / "ship" / "MODEL_CARD.md").read_text()
    assert "views: crop 1; teacher: online (the teacher saw the same views)" in card
