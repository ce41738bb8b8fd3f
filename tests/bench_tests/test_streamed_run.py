"""`kdbench run` on streamed tasks (`[task] kind = "images" | "hf" | "webdataset"`): each source
end to end, the streamed path recorded in the row, the split in the run folder, the export
checked on the raw test rows; a trial killed with SIGKILL mid-epoch resumes to the same table;
a file that vanishes mid-run stops the run like a signal and `--resume` continues; bad input is
one line and exit 2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.config.suite import load_suite
from bench.durable import faults
from bench.records import read_seeds, read_trials
from bench.run.options import RunOptions
from bench.run.sweep import RunInterrupted, run_suite
from tests.bench_tests.conftest import assert_refused

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
name = "streamed"

[task]
{task}
loader_workers = {workers}

[teacher]
family = "cnn"
arch = {{ channels = 8, blocks = 1 }}
members = 2
epochs = 3
batch_size = 32
{teacher}

[student]
family = "cnn"
epochs = {epochs}
batch_size = 32

[search]
channels = {{ low = 2, high = 8, log = true }}
blocks = 1
temperature = {{ low = 1.0, high = 8.0, log = true }}
alpha = {{ low = 0.5, high = 1.0 }}

[budget]
trials = 2
seeds = 2

[measure]
device = "cpu"
batch = 16
min_run_time = 0.005
warmup = 1
multi_thread = false
runtimes = ["torch"]

[certify]
candidates = 1
seeds = 2
"""

# what a resumed run must reproduce (timings, dates, workers and run ids aside)
COMPARED = [
    "task",
    "phase",
    "trial",
    "state",
    "arch",
    "temperature",
    "alpha",
    "student_acc",
    "scratch_acc",
    "student_val_acc",
    "best_epoch",
    "ensemble_acc",
    "file_seed",
    "certify_bound",
    "train_path",
]


def _png_folder(root: Path, per_class: int = 40) -> Path:
    """Three classes of 8×8 grey PNGs told apart by brightness."""
    g = np.random.default_rng(0)
    for name, level in (("bright", 195), ("dark", 60), ("mid", 128)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = np.clip(level + g.normal(0, 40, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(a, "L").save(root / name / f"img{i:03d}.png")
    return root


def _suite(tmp: Path, task: str, *, epochs: int = 3, workers: int = 0, teacher: str = "") -> Path:
    path = tmp / "suite.toml"
    path.write_text(SUITE.format(task=task, epochs=epochs, workers=workers, teacher=teacher))
    return path


def _run(tmp: Path, suite: Path, capsys, *extra: str) -> Path:
    code = main(["run", str(suite), "--out", str(tmp / "r"), "--cache", str(tmp / "c"),
                 "--reports", str(tmp / "p"), "-q", *extra])  # fmt: skip
    out, err = capsys.readouterr()
    assert code in (0, 1), (out, err)  # 1: nothing certified (24 test examples)
    (run,) = [p for p in (tmp / "r").iterdir()]
    return run


def _check_streamed_run(run: Path, n_examples: int) -> pd.DataFrame:
    trials = read_trials(run)
    assert (trials["state"] == "complete").all(), trials[["state", "fail_reason"]]
    assert set(trials["train_path"]) == {"stream"}
    manifest = json.loads((run / "manifest.json").read_text())
    (entry,) = manifest["tasks"].values()
    sizes = entry["sizes"]
    assert sum(sizes.values()) == n_examples
    assert (trials["n_test"] == sizes["test"]).all()
    split = pd.read_csv(run / entry["splits"], dtype={"id": str}, keep_default_na=False)
    assert split["split"].value_counts().to_dict() == sizes
    assert split["id"].is_unique
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").rglob("*.pt"))
    return trials


@pytest.mark.slow
def test_an_image_folder_runs_end_to_end_and_its_int8_form_ships_checked(
    tmp_path: Path, capsys
) -> None:
    """A PNG folder (one broken file skipped) through `kdbench run` with int8 forms certified
    beside fp32 (calibrated on training images read from the stream), then `export --form
    int8_static`: rebuilt from the file on the same calibration images, checked on the raw
    test images."""
    _png_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "mid" / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    task = 'kind = "images"\npath = "imgs"\non_bad_example = "skip"'
    suite = _suite(tmp_path, task)
    suite.write_text(
        suite.read_text() + '\n[ship]\nforms = ["fp32", "int8_dynamic", "int8_static"]\n'
    )
    run = _run(tmp_path, suite, capsys, "--max-gap", "60")  # 24 test images: a wide bound
    trials = _check_streamed_run(run, 120)  # the broken file left out, counted, named
    source = json.loads((run / "manifest.json").read_text())["tasks"]["imgs"]["data_source"]
    assert source["skipped"] == 1 and list(source["skipped_files"]) == ["mid/zz-broken.png"]
    assert set(trials["phase"]) == {"search", "certify"}
    assert (trials["teacher_top_k"] == 0).all()
    cert = trials[trials["phase"] == "certify"]
    for form in ("int8_dynamic", "int8_static"):
        assert cert[f"file_acc_{form}"].between(0.3, 1.0).all(), form
        assert cert[f"certify_bound_{form}"].notna().all(), form
    # the split is stratified within each class by stable ids
    split = pd.read_csv(run / "splits-imgs.csv", dtype={"id": str})
    counts = split.groupby(["class", "split"]).size().unstack()
    assert (counts["test"] == counts["test"].iloc[0]).all()
    trial = str(int(cert["trial"].iloc[0]))
    for form, out in (("fp32", "x"), ("int8_static", "q")):
        code = main(["export", str(run), "--trial", trial, "--form", form, "--max-gap", "60",
                     "--out", str(tmp_path / out)])  # fmt: skip
        _, err = capsys.readouterr()
        assert code == 0, err
        card = (tmp_path / out / "MODEL_CARD.md").read_text()
        assert "Checked:" in card and f"{int(trials['n_test'].iloc[0])} " in card, card


@pytest.mark.slow
def test_a_saved_hf_image_dataset_with_top_k_targets_runs_end_to_end(
    tmp_path: Path, capsys
) -> None:
    import datasets

    g = np.random.default_rng(1)
    ims, labels = [], []
    for k in range(4):
        for _ in range(24):
            a = np.clip(40 + 55 * k + g.normal(0, 25, (8, 8, 3)), 0, 255).astype(np.uint8)
            ims.append(Image.fromarray(a, "RGB"))
            labels.append(k)
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c", "d"])}
    )
    datasets.Dataset.from_dict({"img": ims, "label": labels}, features=features).save_to_disk(
        str(tmp_path / "saved")
    )
    suite = _suite(tmp_path, 'kind = "hf"\npath = "saved"\nimage = "img"', teacher="top_k = 2")
    trials = _check_streamed_run(_run(tmp_path, suite, capsys), 96)
    assert (trials["teacher_top_k"] == 2).all()
    assert trials["teacher_targets"].str.startswith("top-2 of").all()


@pytest.mark.slow
def test_a_saved_hf_text_dataset_runs_end_to_end(tmp_path: Path, capsys) -> None:
    import datasets

    g = np.random.default_rng(2)
    words = [["good", "great", "fine"], ["bad", "awful", "poor"]]
    texts, labels = [], []
    for i in range(90):
        k = i % 2
        texts.append(" ".join(["the", "film", "was", str(g.choice(words[k])), "and", "long"]))
        labels.append(k)
    datasets.Dataset.from_dict({"review": texts, "label": labels}).save_to_disk(
        str(tmp_path / "texts")
    )
    suite = tmp_path / "suite.toml"
    text = SUITE.format(
        task='kind = "hf"\npath = "texts"\ntext = "review"\nmax_length = 12\nvocab_size = 64',
        workers=0,
        epochs=2,
        teacher="",
    )
    text = text.replace('family = "cnn"\narch = { channels = 8, blocks = 1 }',
                        'family = "hf:bert"\narch = { head_width = 4, heads = 2, layers = 1 }')  # fmt: skip
    text = text.replace('[student]\nfamily = "cnn"', '[student]\nfamily = "hf:bert"')
    text = text.replace("channels = { low = 2, high = 8, log = true }\nblocks = 1",
                        "head_width = { low = 2, high = 4 }\nheads = 2\nlayers = 1")  # fmt: skip
    suite.write_text(text)
    run = _run(tmp_path, suite, capsys)
    _check_streamed_run(run, 90)
    assert (run / "tokenizer-texts.json").is_file()


def _shards(folder: Path, shards: int = 3, per_shard: int = 30) -> Path:
    import io

    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    i = 0
    for s in range(shards):
        with wds.TarWriter(str(folder / f"train-{s:03d}.tar")) as sink:
            for _ in range(per_shard):
                k = i % 3
                a = np.clip(40 + 85 * k + g.normal(0, 30, (8, 8)), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(a, "L").save(buf, "PNG")
                sink.write({"__key__": f"{i:06d}", "png": buf.getvalue(), "cls": str(k)})
                i += 1
    return folder


@pytest.mark.slow
def test_webdataset_shards_run_end_to_end_alone_and_in_two_workers(tmp_path: Path, capsys) -> None:
    """Two local worker processes (each opens the shards itself, re-lists the source and checks
    the kept ids; the teacher file is shared) give the one-process table."""
    _shards(tmp_path / "shards")
    suite = _suite(tmp_path, 'kind = "webdataset"\nurls = "shards/train-{000..002}.tar"')
    one = _run(tmp_path, suite, capsys)
    _check_streamed_run(one, 90)
    code = main(["run", str(suite), "--out", str(tmp_path / "w"), "--cache", str(tmp_path / "c"),
                 "--reports", str(tmp_path / "p"), "-q", "--workers", "2"])  # fmt: skip
    assert code in (0, 1), capsys.readouterr()
    (two,) = list((tmp_path / "w").iterdir())
    assert read_trials(two)["worker"].notna().all()
    _same_table(two, one)


@pytest.mark.slow
def test_a_shard_that_vanishes_mid_run_stops_it_like_a_signal_and_resume_continues(
    tmp_path: Path, monkeypatch
) -> None:
    """The shard is renamed away as the first training group starts (after the check pass and
    the teacher): the run stops resumable (not a failed trial); back in place, --resume gives
    the uninterrupted run's table."""
    import bench.group.train as train

    _shards(tmp_path / "shards")
    suite = load_suite(
        _suite(tmp_path, 'kind = "webdataset"\nurls = "shards/train-{000..002}.tar"', workers=1)
    )
    cache = tmp_path / "c"
    reference = run_suite(suite, RunOptions(out_root=tmp_path / "ref", cache_dir=cache))
    shard, away = tmp_path / "shards" / "train-001.tar", tmp_path / "away.tar"
    real = train.fit_stream_group

    def vanish_first(*args, **kw):
        if shard.exists() and not away.exists():
            shard.rename(away)
        return real(*args, **kw)

    monkeypatch.setattr(train, "fit_stream_group", vanish_first)
    with pytest.raises(RunInterrupted) as stopped:
        run_suite(suite, RunOptions(out_root=tmp_path / "r", cache_dir=cache))
    assert "vanished" in stopped.value.how and "train-001.tar" in stopped.value.how
    (run,) = list((tmp_path / "r").iterdir())
    assert len(read_trials(run)) == 0 if (run / "trials.parquet").exists() else True
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    away.rename(shard)
    monkeypatch.setattr(train, "fit_stream_group", real)
    run_suite(None, RunOptions(resume=run, cache_dir=cache))
    _same_table(run, reference)


def _same_table(run: Path, reference: Path) -> None:
    def done(path: Path) -> pd.DataFrame:
        f = read_trials(path)
        return f.sort_values(["phase", "trial"]).reset_index(drop=True)[COMPARED]

    pd.testing.assert_frame_equal(done(run), done(reference))
    key = ["phase", "trial", "seed"]
    cols = [*key, "student_acc", "scratch_acc", "student_val_acc"]
    pd.testing.assert_frame_equal(
        read_seeds(run).sort_values(key).reset_index(drop=True)[cols],
        read_seeds(reference).sort_values(key).reset_index(drop=True)[cols],
    )


@pytest.mark.slow
def test_a_trial_killed_mid_epoch_resumes_from_its_last_epoch_to_the_same_table(
    tmp_path: Path,
) -> None:
    """A real SIGKILL while the first group's first member reads its third epoch (72 training
    images an epoch), then --resume: that member continues from its epoch-2 checkpoint
    (``resumed_epochs``) and the table equals an uninterrupted run's."""
    _png_folder(tmp_path / "imgs")
    path = _suite(tmp_path, 'kind = "images"\npath = "imgs"', epochs=4)
    cache = tmp_path / "c"
    reference = run_suite(load_suite(path), RunOptions(out_root=tmp_path / "ref", cache_dir=cache))
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env |= {"PYTHONPATH": str(ROOT), faults.ENV: f"kill@example#{72 * 2 + 40}"}
    crashed = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(path), "--out", str(tmp_path / "r"),
         "--cache", str(cache), "--reports", str(tmp_path / "p"), "-q"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run,) = list((tmp_path / "r").iterdir())
    kept = list((run / "checkpoints").rglob("*.pt"))
    assert len(kept) == 1, kept  # the first member, after its second epoch
    run_suite(None, RunOptions(resume=run, cache_dir=cache))
    _same_table(run, reference)
    resumed = read_trials(run)
    first = resumed[(resumed["phase"] == "search")].sort_values("trial").iloc[0]
    assert first["resumed_epochs"] == 2
    assert (resumed["resumed_epochs"].fillna(0).sum()) == 2
    assert not list((run / "checkpoints").rglob("*.pt"))


def test_bad_streamed_input_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    imgs = _png_folder(tmp_path / "imgs", per_class=6)
    (imgs / "dark" / "img000.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cases = [
        ('kind = "images"\npath = "imgs"', "", "img000.png: every image must decode"),
        ('kind = "images"\npath = "nowhere"', "", "The 'path' parameter of [task]"),
        ('kind = "images"\npath = "imgs"\non_bad_example = "skip"', "logits = \"x.npz\"",
         "'logits' parameter of [teacher] must be left out for a streamed task"),
        ('kind = "images"\npath = "imgs"\non_bad_example = "skip"', "top_k = 9",
         "'top_k' parameter of [teacher] must be at most the number of classes"),
        ('kind = "webdataset"\nurls = "shards/train-{000..001}.tar"', "", "train-000.tar"),
        ('kind = "images"\npath = "imgs"\nscale = false', "", "'scale' parameter of [task]"),
    ]  # fmt: skip
    for task, teacher, expected in cases:
        if "logits" in teacher:
            np.savez(tmp_path / "x.npz", logits=np.zeros((2, 18, 3)))
        suite = _suite(tmp_path, task, teacher=teacher)
        if "logits" in teacher:  # offline logits state their own members
            suite.write_text(suite.read_text().replace("members = 2\n", ""))
        results = tmp_path / "r"
        code = main(["run", str(suite), "--out", str(results), "--cache", str(tmp_path / "c")])
        out, err = capsys.readouterr()
        assert_refused(code, out, err, expected, results)
    # grouped training needs the inputs in memory
    suite = _suite(tmp_path, 'kind = "images"\npath = "imgs"\non_bad_example = "skip"')
    suite.write_text(suite.read_text().replace('batch_size = 32\n\n[search]',
                                               'batch_size = 32\npath = "grouped"\n\n[search]'))  # fmt: skip
    code = main(["run", str(suite), "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    assert_refused(code, out, err, "'path' parameter of [student] must be 'auto' or 'stream'",
                   tmp_path / "r")  # fmt: skip


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ({"members = 2\n": "members = 2\ntop_k = 2\n"}, "'top_k' parameter of [teacher]"),
        ({"[student]\n": '[student]\ncompile = "nope"\n'}, "'compile' parameter of [student]"),
        ({"[student]\n": '[student]\npath = "fast"\n'}, "'path' parameter of [student]"),
        ({"[student]\n": '[student]\namp = "fp8"\n'}, "'amp' parameter of [student]"),
    ],
)
def test_stream_keys_of_an_in_memory_task_are_checked(
    replace: dict[str, str], expected: str, tiny_suite, tmp_path: Path, capsys
) -> None:
    suite = tiny_suite(replace=replace)
    code = main(["run", str(suite), "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    assert_refused(code, out, err, expected, tmp_path / "r")


@pytest.mark.slow
def test_an_in_memory_task_on_the_stream_path_records_it(tiny_suite, tmp_path: Path) -> None:
    """``[student] path = "stream"`` for in-memory data: the same rows, trained one member at
    a time through a DataLoader (the choice is the row's ``train_path``)."""
    suite = tiny_suite(replace={"[student]\n": '[student]\npath = "stream"\n'})
    run = run_suite(
        load_suite(suite), RunOptions(out_root=tmp_path / "r", cache_dir=tmp_path / "c")
    )
    trials = read_trials(run)
    assert (trials["state"] == "complete").all() and set(trials["train_path"]) == {"stream"}
    assert trials["student_acc"].between(0.4, 1.0).all()
    grouped = run_suite(
        load_suite(tiny_suite(name="g.toml")),
        RunOptions(out_root=tmp_path / "g", cache_dir=tmp_path / "c"),
    )
    assert set(read_trials(grouped)["train_path"]) == {"grouped"}
    shutil.rmtree(tmp_path / "g")


def test_kdbench_data_writes_a_streamed_split_normalised_as_the_teacher_states(
    tmp_path: Path, capsys
) -> None:
    """`kdbench data` on an image folder: the split by ids (every kept example once), the
    training split's per-channel statistics, or with `[teacher] mean`/`std` the teacher's
    (`(pixel / pixel_range − mean) / std`, here as `pixel / 255`)."""
    _png_folder(tmp_path / "imgs", per_class=12)
    suite = _suite(tmp_path, 'kind = "images"\npath = "imgs"')
    assert main(["data", str(suite), "--out", str(tmp_path / "d")]) == 0
    rows = pd.read_csv(tmp_path / "d" / "imgs" / "rows.csv", dtype={"id": str})
    assert len(rows) == 36 and rows["id"].is_unique
    assert rows.groupby("class")["split"].value_counts().unstack().min().min() >= 1
    own = json.loads((tmp_path / "d" / "imgs" / "scaler.json").read_text())
    pixels = np.concatenate(
        [
            np.asarray(Image.open(tmp_path / "imgs" / i), dtype=np.float64).ravel() / 255
            for i in rows.loc[rows["split"] == "train", "id"]
        ]
    )
    assert own["mean"][0] == pytest.approx(pixels.mean(), rel=1e-9)
    assert own["std"][0] == pytest.approx(pixels.std(), rel=1e-6)
    suite = _suite(tmp_path, 'kind = "images"\npath = "imgs"', teacher="mean = [0.5]\nstd = [0.25]")
    assert main(["data", str(suite), "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    stated = json.loads((tmp_path / "t" / "imgs" / "scaler.json").read_text())
    assert stated["mean"] == [0.5] and stated["std"] == [0.25]
    assert "[teacher] mean and std" in (tmp_path / "t" / "imgs" / "README.md").read_text()
