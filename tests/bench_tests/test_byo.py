"""Bring your own: data files, teachers from files, the CNN family, plug-ins.

Every validation rule of issue #6 has a case here: exit 2, one line on stderr, no traceback,
and no run folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification

from bench.cli import main
from bench.config.suite import load_suite
from bench.records import read_trials
from bench.run.options import RunOptions
from bench.run.sweep import run_suite
from bench.tasks import FileTask, load_task
from kdcore import build_student
from tests.bench_tests.conftest import assert_refused

ROOT = Path(__file__).resolve().parents[2]
NAMES = np.array(["cat", "dog", "emu"])


def _frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    x, y = make_classification(
        n_samples=n,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        random_state=seed,
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    frame["label"] = NAMES[y]
    return frame


def _write_all(folder: Path, frame: pd.DataFrame) -> dict[str, Path]:
    paths = {fmt: folder / f"data.{fmt}" for fmt in ("csv", "parquet", "npz")}
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    np.savez(
        paths["npz"],
        X=frame.drop(columns="label").to_numpy(),
        y=frame["label"].to_numpy().astype(str),
    )
    return paths


DEFAULT_TEACHER = "members = 2\nepochs = 3\nbatch_size = 128"
DEFAULT_STUDENT = "epochs = 3\nbatch_size = 128"
DEFAULT_SEARCH = "width = { low = 4, high = 16, log = true }\ndepth = 1"
MEASURE = """
[budget]
trials = 2
seeds = 2
[measure]
device = "cpu"
batch = 8
min_run_time = 0.005
warmup = 1
multi_thread = false
runtimes = ["torch"]
"""


def _suite_text(task: str, teacher: str = "", student: str = "", search: str = "") -> str:
    parts = [
        'name = "byo"',
        "[task]",
        task,
        "[teacher]",
        teacher or DEFAULT_TEACHER,
        "[student]",
        student or DEFAULT_STUDENT,
        "[search]",
        search or DEFAULT_SEARCH,
        MEASURE,
    ]
    return "\n".join(parts)


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------- data files
def test_csv_parquet_and_npz_of_the_same_data_give_identical_splits(tmp_path: Path) -> None:
    paths = _write_all(tmp_path, _frame())
    tasks = [load_task(FileTask(name="d", path=str(p), target="label")) for p in paths.values()]
    first = tasks[0]
    assert first.class_names == ("cat", "dog", "emu") and first.input_shape == (6,)
    for other in tasks[1:]:
        for split in ("train", "val", "test"):
            x0, y0 = first.split(split)
            x1, y1 = other.split(split)
            assert torch.equal(x0, x1) and torch.equal(y0, y1)
        assert other.class_names == first.class_names
        assert other.fingerprint() == first.fingerprint()


@pytest.mark.slow
def test_csv_parquet_and_npz_give_the_same_ensemble_and_students(tmp_path: Path) -> None:
    paths = _write_all(tmp_path, _frame())
    tables = []
    for fmt, path in paths.items():
        suite_file = tmp_path / f"{fmt}.toml"
        suite_file.write_text(_suite_text(f'kind = "file"\npath = "{path.name}"\ntarget = "label"'))
        run = run_suite(
            load_suite(suite_file),
            RunOptions(out_root=tmp_path / f"out_{fmt}", cache_dir=tmp_path / f"cache_{fmt}"),
        )
        tables.append(read_trials(run))
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["tasks"]["data"]["class_names"] == ["cat", "dog", "emu"]
        assert manifest["tasks"]["data"]["data_source"]["path"] == str(path.resolve())
    cols = ["arch", "temperature", "ensemble_acc", "student_acc", "scratch_acc"]
    for other in tables[1:]:
        pd.testing.assert_frame_equal(tables[0][cols], other[cols])


# ---------------------------------------------------------------------- validation rules
def _bad_files(tmp: Path) -> dict[str, tuple[str, str]]:
    """case -> (suite [task]/[teacher] text, expected message fragment)."""
    good = _frame(90)
    good.to_csv(tmp / "good.csv", index=False)
    (tmp / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage\x00" * 50)
    (tmp / "broken.parquet").write_bytes(b"PAR1 not really")
    (tmp / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    np.savez(tmp / "keys.npz", features=good.iloc[:, :6].to_numpy(), y=np.zeros(90))
    one = good.assign(label="cat")
    one.to_csv(tmp / "one_class.csv", index=False)
    thin = pd.concat([good[good["label"] != "emu"], good[good["label"] == "emu"].head(2)])
    thin.to_csv(tmp / "thin.csv", index=False)
    nan = good.copy()
    nan.loc[5, "f2"] = np.nan
    nan.to_csv(tmp / "nan.csv", index=False)
    inf = good.copy()
    inf.loc[7, "f0"] = np.inf
    inf.to_parquet(tmp / "inf.parquet", index=False)
    nolabel = good.copy()
    nolabel.loc[3, "label"] = None
    nolabel.to_csv(tmp / "nolabel.csv", index=False)
    text = good.assign(f1="word")
    text.to_csv(tmp / "text.csv", index=False)
    (tmp / "data.xlsx").write_text("x")
    header, *rows = (tmp / "good.csv").read_text().splitlines()
    (tmp / "twice.csv").write_text(  # the label named twice: pandas would make it a feature
        "\n".join([header + ",label", *(r + "," + r.rsplit(",", 1)[1] for r in rows)]) + "\n"
    )
    (tmp / "unnamed.csv").write_text("\n".join(["," + header.split(",", 1)[1], *rows]) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(good, preserve_index=False)
    pq.write_table(table.append_column("label", table.column("label")), tmp / "twice.parquet")
    task = 'kind = "file"\ntarget = "label"\npath = '
    return {
        "label twice (CSV)": (
            task + '"twice.csv"',
            "must name each column once in its header. Got 'label' twice",
        ),
        "label twice (Parquet)": (
            task + '"twice.parquet"',
            "must name each column once in its header. Got 'label' twice",
        ),
        "unnamed column": (
            task + '"unnamed.csv"',
            "must name every column of its header. Column 1 has no name",
        ),
        "missing file": (task + '"absent.csv"', "absent.csv of task 'byo_data' must exist"),
        "not UTF-8": (task + '"binary.csv"', "binary.csv of task 'byo_data' must be UTF-8 text"),
        "bad parquet": (task + '"broken.parquet"', "must be a valid Parquet file"),
        "bad npz": (task + '"broken.npz"', "must be a valid NPZ archive"),
        "npz key": (
            task + '"keys.npz"',
            "must hold an array named 'X'. Its arrays are: features, y",
        ),
        "one class": (task + '"one_class.csv"', "must have at least 2 classes. Got 1"),
        "thin class": (task + '"thin.csv"', "rows per class for a stratified train/val/test split"),
        "NaN feature": (
            task + '"nan.csv"',
            "must have finite features (no NaN or inf). Got 1 row(s)",
        ),
        "inf feature": (task + '"inf.parquet"', "first in column 'f0'"),
        "missing label": (task + '"nolabel.csv"', "must have a label in every row. Got 1 row(s)"),
        "no target": (
            'kind = "file"\npath = "good.csv"\ntarget = "y"',
            "must have the label column 'target' = 'y'",
        ),
        "target is a feature": (
            task + '"good.csv"\nfeatures = ["f0", "label"]',
            "The 'features' parameter of [task] must be a list of feature columns without the target 'label'",
        ),
        "non-numeric feature": (task + '"text.csv"', "Got non-numeric column 'f1'"),
        "extension": (
            task + '"data.xlsx"',
            "The 'path' parameter of [task] must be a file ending in .csv, .parquet or .npz",
        ),
        "shape": (
            task + '"good.csv"\nshape = [1, 2, 2]',
            "The 'shape' parameter of task 'byo_data' must have as many values as a row",
        ),
    }


def _teacher_cases(tmp: Path) -> dict[str, tuple[str, str]]:
    good = _frame(90)
    good.to_csv(tmp / "t.csv", index=False)
    arch = 'family = "mlp"\narch = { width = 8, depth = 1 }\n'
    torch.manual_seed(0)
    ok_member = build_student("mlp", (6,), 3, width=8, depth=1).state_dict()
    torch.save(ok_member, tmp / "ok.pt")
    wrong = build_student("mlp", (6,), 3, width=9, depth=1).state_dict()
    torch.save(wrong, tmp / "wrong.pt")
    nan_member = {k: v.clone() for k, v in ok_member.items()}
    nan_member["0.weight"][0, 0] = float("nan")
    torch.save(nan_member, tmp / "nan.pt")
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"0.weight": Evil()}, tmp / "evil.pt")
    np.savez(tmp / "short.npz", logits=np.zeros((2, 50, 3), np.float32))
    np.savez(tmp / "nonfinite.npz", logits=np.full((90, 3), np.nan, np.float32))
    np.savez(tmp / "named.npz", scores=np.zeros((90, 3), np.float32))
    return {
        "checkpoint missing": (
            arch + 'checkpoints = ["ok.pt", "absent.pt"]',
            "Teacher checkpoint 1 must be an existing file",
        ),
        "checkpoint garbage": (
            arch + 'checkpoints = ["garbage.pt"]',
            "Teacher checkpoint 0 must be loadable with torch.load(weights_only=True)",
        ),
        "unsafe pickle": (
            arch + 'checkpoints = ["evil.pt"]',
            "Teacher checkpoint 0 must be loadable with torch.load(weights_only=True)",
        ),
        "shape mismatch": (
            arch + 'checkpoints = ["ok.pt", "wrong.pt"]',
            "Teacher checkpoint 1 ("
            + str(tmp / "wrong.pt")
            + ") must match family 'mlp' (width 8 × depth 1): layer '0.weight' has shape [9, 6], expected [8, 6].",
        ),
        "non-finite weights": (
            arch + 'checkpoints = ["nan.pt"]',
            "must have finite weights: layer '0.weight' does not",
        ),
        "logits rows": (
            'logits = "short.npz"',
            "must have one row per example of task 'byo_t' (90)",
        ),
        "logits NaN": ('logits = "nonfinite.npz"', "must hold finite logits"),
        "logits key": (
            'logits = "named.npz"',
            "must hold an array named 'logits' ('logits_key'). Its arrays are: scores",
        ),
        "members with logits": (
            'logits = "named.npz"\nmembers = 3',
            "The 'members' parameter of [teacher] must be left out with 'logits'",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "not UTF-8",
        "bad parquet",
        "bad npz",
        "npz key",
        "one class",
        "thin class",
        "NaN feature",
        "inf feature",
        "missing label",
        "no target",
        "target is a feature",
        "non-numeric feature",
        "extension",
        "shape",
        "label twice (CSV)",
        "label twice (Parquet)",
        "unnamed column",
    ],
)
def test_bad_data_files_exit_2_with_one_line_and_no_run_folder(
    case: str, tmp_path: Path, capsys
) -> None:
    task_text, expected = _bad_files(tmp_path)[case]
    task_text += '\nname = "byo_data"'
    suite = tmp_path / "suite.toml"
    suite.write_text(_suite_text(task_text))
    code, out, err = _cli(
        ["run", str(suite), "--out", str(tmp_path / "results"), "--reports", str(tmp_path / "rep")],
        capsys,
    )
    assert_refused(code, out, err, expected, tmp_path / "results")


@pytest.mark.parametrize(
    "case",
    [
        "checkpoint missing",
        "checkpoint garbage",
        "unsafe pickle",
        "shape mismatch",
        "non-finite weights",
        "logits rows",
        "logits NaN",
        "logits key",
        "members with logits",
    ],
)
def test_bad_teacher_files_exit_2_with_one_line_and_no_run_folder(
    case: str, tmp_path: Path, capsys
) -> None:
    teacher_text, expected = _teacher_cases(tmp_path)[case]
    suite = tmp_path / "suite.toml"
    suite.write_text(
        _suite_text('kind = "file"\npath = "t.csv"\ntarget = "label"\nname = "byo_t"', teacher_text)
    )
    code, out, err = _cli(
        ["run", str(suite), "--out", str(tmp_path / "results"), "--reports", str(tmp_path / "rep")],
        capsys,
    )
    assert_refused(code, out, err, expected, tmp_path / "results")
    assert "pwned" not in out + err  # weights_only=True never ran the pickle's code


@pytest.mark.parametrize("which", ["--out", "--reports", "--cache"])
def test_unwritable_output_folders_exit_2_before_anything_runs(
    which: str, tmp_path: Path, capsys
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    args = {
        "--out": str(tmp_path / "results"),
        "--reports": str(tmp_path / "rep"),
        "--cache": str(tmp_path / "cache"),
    }
    args[which] = str(blocker / "sub")
    suite = tmp_path / "suite.toml"
    suite.write_text(
        _suite_text(
            'kind = "synthetic"\nn_samples = 300\nn_features = 6\nn_informative = 4\nn_redundant = 0'
        )
    )
    code, out, err = _cli(["run", str(suite), *[x for kv in args.items() for x in kv]], capsys)
    expected = {
        "--out": "The results folder (--out)",
        "--reports": "The reports folder (--reports)",
        "--cache": "The teacher cache (--cache)",
    }[which]
    assert_refused(
        code,
        out,
        err,
        expected + " must be a folder kdbench can create and write",
        tmp_path / "results",
    )
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------- teachers from files
@pytest.mark.slow
def test_the_same_teacher_as_checkpoints_and_as_offline_logits(tmp_path: Path, capsys) -> None:
    _frame(600).to_csv(tmp_path / "data.csv", index=False)
    task_text = 'kind = "file"\npath = "data.csv"\ntarget = "label"'
    arch = 'family = "mlp"\narch = { width = 32, depth = 2 }\n'
    trained = arch + "members = 3\nepochs = 4\nbatch_size = 128"

    def run(name: str, teacher: str) -> pd.DataFrame:
        suite = tmp_path / f"{name}.toml"
        suite.write_text(_suite_text(task_text, teacher))
        out = run_suite(
            load_suite(suite), RunOptions(out_root=tmp_path / name, cache_dir=tmp_path / "cache")
        )
        return read_trials(out), json.loads((out / "manifest.json").read_text())

    base, _ = run("trained", trained)
    # Export the trained teacher as a user would have it: one state_dict per member ...
    (cache_file,) = (tmp_path / "cache").glob("*/ensemble.pt")
    states = torch.load(cache_file, weights_only=True)["members"]
    for k, state in enumerate(states):
        torch.save(state, tmp_path / f"member{k}.pt")
    # ... and as offline logits over every row of the file, in file order.
    task = load_task(FileTask(name="data", path=str(tmp_path / "data.csv"), target="label"))
    logits = np.zeros((3, task.n_rows, 3), np.float32)
    for k, state in enumerate(states):
        model = build_student("mlp", task.input_shape, 3, width=32, depth=2)
        model.load_state_dict(state)
        with torch.inference_mode():
            for split in ("train", "val", "test"):
                logits[k, task.rows[split]] = model.eval()(task.split(split)[0]).numpy()
    np.savez(tmp_path / "teacher_logits.npz", logits=logits)

    ckpt, ckpt_manifest = run(
        "checkpoints", arch + 'checkpoints = ["member0.pt", "member1.pt", "member2.pt"]'
    )
    offline, offline_manifest = run("logits", arch + 'logits = "teacher_logits.npz"')
    anonymous, anon_manifest = run("anonymous", 'logits = "teacher_logits.npz"')
    cols = ["arch", "temperature", "alpha", "ensemble_acc", "student_acc", "scratch_acc", "kd_gain"]
    for other in (ckpt, offline, anonymous):
        pd.testing.assert_frame_equal(base[cols], other[cols])
    assert ckpt_manifest["tasks"]["data"]["teacher"]["kind"] == "checkpoints"
    assert offline_manifest["tasks"]["data"]["teacher"]["kind"] == "logits"
    # With the architecture named, the offline teacher's costs are measured; without, NA/NaN.
    assert (offline["ensemble_params"] == base["ensemble_params"]).all()
    assert (offline["ensemble_flops"] == base["ensemble_flops"]).all()
    assert anonymous["ensemble_params"].isna().all() and anonymous["ensemble_flops"].isna().all()
    assert anonymous["param_ratio"].isna().all()
    assert anonymous["ensemble_loop_latency_cpu_b1_p50_ms"].isna().all()
    assert anon_manifest["tasks"]["data"]["teacher"]["arch"] == "unknown (offline logits)"
    # The capacity axis needs the ensemble's parameter count: refused, before any student.
    sized = tmp_path / "sized.toml"
    search = "size = { low = 0.01, high = 0.1, log = true }\ndepth = 2"
    sized.write_text(_suite_text(task_text, 'logits = "teacher_logits.npz"', search=search))
    code, _, err = _cli(["run", str(sized), "--out", str(tmp_path / "sized")], capsys)
    assert code == 2 and "needs a teacher with a known parameter count" in err
    assert "Traceback" not in err and err.count("\n") == 1


# ---------------------------------------------------------------------- the CNN family
@pytest.mark.slow
def test_cnn_sweep_on_digits_reads_naturally_and_counts_flops_exactly(
    tmp_path: Path, capsys
) -> None:
    suite = tmp_path / "cnn.toml"
    suite.write_text(
        _suite_text(
            'kind = "digits"',
            student='family = "cnn"\nepochs = 3\nbatch_size = 128',
            search="channels = { low = 4, high = 12, log = true }\nblocks = { low = 1, high = 2 }",
        ).replace("trials = 2", "trials = 3")
    )
    code, out, _ = _cli(
        [
            "run",
            str(suite),
            "--out",
            str(tmp_path / "r"),
            "--reports",
            str(tmp_path / "p"),
            "--max-gap",
            "100",
        ],
        capsys,
    )
    assert code == 0
    (run_dir,) = [p for p in (tmp_path / "r").iterdir() if p.name != "teachers"]
    trials = read_trials(run_dir)
    assert (trials["family"] == "cnn").all() and (trials["phase"] == "search").sum() == 3
    assert "width" not in trials.columns and "arch_channels" in trials.columns
    for _, r in trials.iterrows():
        c, b = int(r["arch_channels"]), int(r["arch_blocks"])
        assert r["arch"] == f"channels {c} × blocks {b}"
        h = w = 8
        c_in, macs = 1, 0
        for _ in range(b):
            macs += h * w * c * c_in * 9
            h, w, c_in = h // 2, w // 2, c
        macs += c * h * w * 10
        assert r["student_flops"] == 2 * macs
    assert "Recommended student: channels" in out and "width" not in out
    report = (tmp_path / "p" / run_dir.name / "report.md").read_text()
    assert "Ship channels" in report and "width " not in report


# ---------------------------------------------------------------------- plug-ins
PLUGIN = """
from torch import nn
from kdcore import ArchParam, register_family


def build(input_shape, num_classes, rank):
    return nn.Sequential(nn.Linear(input_shape[0], rank), nn.ReLU(), nn.Linear(rank, num_classes))


register_family("{name}", build, (ArchParam("rank", int, (1, 64), (2, 8)),), "low rank", replace=True)
"""


def test_a_suite_plugin_module_registers_a_family_without_editing_kdbench(
    tmp_path: Path, capsys
) -> None:
    (tmp_path / "suite_families.py").write_text(PLUGIN.replace("{name}", "lowrank_suite"))
    _frame(200).to_csv(tmp_path / "d.csv", index=False)
    suite = tmp_path / "plug.toml"
    suite.write_text(
        _suite_text(
            'kind = "file"\npath = "d.csv"\ntarget = "label"',
            student='family = "lowrank_suite"\nepochs = 2\nbatch_size = 64',
            search="rank = { low = 2, high = 6 }",
        ).replace("trials = 2", "trials = 1")
        + '\n[plugins]\nmodules = ["suite_families"]\n'
        + "\n[certify]\ncandidates = 0\n"  # no decision asked for: exit 0
    )
    code, _, _ = _cli(
        ["run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")], capsys
    )
    assert code == 0
    (run_dir,) = [p for p in (tmp_path / "r").iterdir() if p.name != "teachers"]
    row = read_trials(run_dir).iloc[0]
    assert row["family"] == "lowrank_suite" and row["arch"] == f"rank {int(row['arch_rank'])}"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["plugins"]["suite_families"] == "module"
    # The wrong key for this family is refused with the family's valid names.
    suite.write_text(suite.read_text().replace("rank = {", "width = {"))
    code, _, err = _cli(["run", str(suite), "--out", str(tmp_path / "r")], capsys)
    assert (
        code == 2
        and "Valid keys for family 'lowrank_suite': rank, lr, weight_decay, momentum, label_smoothing, temperature, alpha"
        in err
    )


def test_plugin_option_and_a_missing_plugin(tmp_path: Path, capsys) -> None:
    code, out, _ = _cli(["list", "families", "--plugin", "tests.bench_tests.families"], capsys)
    assert (
        code == 0 and "test_twolayer" in out and "cnn" in out and "channels (int 4-64, log)" in out
    )
    code, _, err = _cli(["list", "families", "--plugin", "no_such_module_xyz"], capsys)
    assert code == 2 and "The '--plugin' option must name an importable module" in err


def test_entry_point_group_kdbench_families(tmp_path: Path) -> None:
    """An installed package's entry point registers its family (real importlib.metadata)."""
    site = tmp_path / "site"
    dist = site / "kdbench_ep_demo-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kdbench-ep-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[kdbench.families]\nlowrank = ep_families\n")
    (site / "ep_families.py").write_text(PLUGIN.replace("{name}", "lowrank_ep"))
    env = {"PYTHONPATH": f"{site}:{ROOT}", "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-m", "bench", "list", "families"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "lowrank_ep" in res.stdout and "rank (int 2-8)" in res.stdout


# ---------------------------------------------------------------------- teacher sanity
USER_ORDER = ["emu", "cat", "dog"]  # the order of the user's teacher outputs, not sorted


def _oracle_logits(frame: pd.DataFrame, order: list[str], members: int = 2) -> np.ndarray:
    """A confident teacher that is right on every row, its outputs in ``order``."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 0.5, (members, len(frame), len(order))).astype(np.float32)
    cols = np.array([order.index(v) for v in frame["label"]])
    logits[:, np.arange(len(frame)), cols] += 4.0
    return logits


def test_offline_logits_in_another_class_order_exit_2_naming_the_order(
    tmp_path: Path, capsys
) -> None:
    frame = _frame(600)
    frame.to_csv(tmp_path / "data.csv", index=False)
    np.savez(tmp_path / "logits.npz", logits=_oracle_logits(frame, USER_ORDER))
    task = 'kind = "file"\npath = "data.csv"\ntarget = "label"'
    suite = tmp_path / "s.toml"
    suite.write_text(_suite_text(task, 'logits = "logits.npz"'))
    code, _, err = _cli(["run", str(suite), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "must predict the task's labels in their encoding" in err
    assert "0='cat', 1='dog', 2='emu'" in err and "classes = ['emu', 'cat', 'dog']" in err
    assert not (tmp_path / "r").exists()
    # The teacher's own order, given: the run goes on, and the teacher is right.
    suite.write_text(
        _suite_text(task + '\nclasses = ["emu", "cat", "dog"]', 'logits = "logits.npz"')
    )
    args = ["--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p"), "-q"]
    code, _out, err = _cli(["run", str(suite), *args], capsys)
    assert code in (0, 1), err
    (run,) = (tmp_path / "r").iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["tasks"]["data"]["class_names"] == USER_ORDER
    assert (read_trials(run)["ensemble_acc"] == 1.0).all()
    report = (tmp_path / "p" / run.name / "report.md").read_text()
    assert "label encoding 0 = 'emu', 1 = 'cat', 2 = 'dog'" in report


def test_a_teacher_at_chance_exits_2(tmp_path: Path, capsys) -> None:
    frame = _frame(600)
    frame.to_csv(tmp_path / "data.csv", index=False)
    noise = np.random.default_rng(1).normal(0, 1, (2, 600, 3)).astype(np.float32)
    np.savez(tmp_path / "logits.npz", logits=noise)
    suite = tmp_path / "s.toml"
    suite.write_text(
        _suite_text('kind = "file"\npath = "data.csv"\ntarget = "label"', 'logits = "logits.npz"')
    )
    code, _, err = _cli(["run", str(suite), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "must predict the task's labels better than chance" in err and "0='cat'" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ('["emu", "cat"]', "without 'dog'"),
        ('["emu", "cat", "dog", "yak"]', "Got 'yak', which no row has"),
        ('["emu", "emu", "dog"]', "each label once"),
        ('"emu"', "an array of the labels"),
    ],
)
def test_a_bad_classes_order_names_the_key(
    tmp_path: Path, capsys, classes: str, message: str
) -> None:
    _frame(200).to_csv(tmp_path / "data.csv", index=False)
    suite = tmp_path / "s.toml"
    task = f'kind = "file"\npath = "data.csv"\ntarget = "label"\nclasses = {classes}'
    suite.write_text(_suite_text(task))
    code, _, err = _cli(["run", str(suite), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "'classes' parameter" in err and message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------- kdbench data
@pytest.mark.slow
def test_kdbench_data_files_alone_reproduce_a_runs_test_accuracy(tmp_path: Path, capsys) -> None:
    frame = _frame(600)
    frame.to_csv(tmp_path / "data.csv", index=False)
    suite = tmp_path / "s.toml"
    task = 'kind = "file"\npath = "data.csv"\ntarget = "label"\nclasses = ["emu", "cat", "dog"]'
    suite.write_text(
        _suite_text(task) + "\n[certify]\ncandidates = 1\nseeds = 2\nmax_gap_pp = 100\n"
    )
    args = ["--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p"), "-q"]
    assert main(["run", str(suite), *args]) == 0
    (run,) = (tmp_path / "r").glob("*_byo")
    assert main(["export", str(run), "--out", str(tmp_path / "x")]) == 0
    assert main(["data", str(suite), "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    # What a user has: the data file, the three kdbench data files and student.pt.
    rows = pd.read_csv(tmp_path / "d" / "data" / "rows.csv")
    scaler = json.loads((tmp_path / "d" / "data" / "scaler.json").read_text())
    classes = json.loads((tmp_path / "d" / "data" / "encoding.json").read_text())["classes"]
    assert classes == ["emu", "cat", "dog"]
    test = rows[rows["split"] == "test"]
    x = pd.read_csv(tmp_path / "data.csv").drop(columns="label").to_numpy()[test["row"]]
    x = (x - np.array(scaler["mean"])) / np.array(scaler["scale"])
    blob = torch.load(tmp_path / "x" / "student.pt", weights_only=True)
    model = build_student(blob["family"], blob["input_shape"], blob["num_classes"], **blob["arch"])
    model.load_state_dict(blob["state_dict"])
    with torch.no_grad():
        pred = model(torch.as_tensor(x, dtype=torch.float32)).argmax(-1).numpy()
    acc = float((pred == test["label"].to_numpy()).mean())
    assert (np.array(classes)[test["label"]] == frame["label"].to_numpy()[test["row"]]).all()
    trials = read_trials(run)
    chosen = trials[(trials["phase"] == "certify")].iloc[0]
    assert acc == pytest.approx(float(chosen["file_acc"]), abs=1e-12)


@pytest.mark.slow
def test_the_tutorial_code_that_checks_a_shipped_student_runs_as_written(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    text = (ROOT / "docs" / "tutorial.md").read_text()
    block = text.split("<!-- tested: check-shipped-student -->\n```python\n", 1)[1].split("```")[0]
    (tmp_path / "data").mkdir()
    _frame(600).rename(columns={"label": "churned"}).to_csv(
        tmp_path / "data" / "churn.csv", index=False
    )
    suite = tmp_path / "my_suite.toml"
    task = 'kind = "file"\npath = "data/churn.csv"\ntarget = "churned"'
    suite.write_text(
        _suite_text(task) + "\n[certify]\ncandidates = 1\nseeds = 2\nmax_gap_pp = 100\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "my_suite.toml", "--out", "results", "--reports", "reports", "-q"]) == 0
    (run,) = (tmp_path / "results").glob("*_byo")
    assert main(["export", str(run), "--out", "shipped"]) == 0
    assert main(["data", "my_suite.toml", "--out", "data"]) == 0
    capsys.readouterr()
    exec(compile(block, "docs/tutorial.md", "exec"), {})
    printed = float(capsys.readouterr().out.split()[-1])
    trials = read_trials(run)
    assert printed == pytest.approx(
        float(trials[trials["phase"] == "certify"]["file_acc"].iloc[0]), abs=1e-6
    )


@pytest.mark.slow
def test_the_tutorial_code_that_trains_a_compatible_teacher_runs_as_written(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A teacher trained outside kdbench from `kdbench data`'s files alone, then used by the
    tutorial's [teacher] checkpoints section: kdbench measures each member's validation
    accuracy exactly as the user's own code printed it (same rows, scaling, class order)."""
    text = (ROOT / "docs" / "tutorial.md").read_text()
    block = text.split("<!-- tested: train-compatible-teacher -->\n```python\n", 1)[1]
    block = block.split("```")[0]
    (tmp_path / "data").mkdir()
    _frame(600).rename(columns={"label": "churned"}).to_csv(
        tmp_path / "data" / "churn.csv", index=False
    )
    task = 'kind = "file"\npath = "data/churn.csv"\ntarget = "churned"'
    teacher = (
        'family = "mlp"\narch = { width = 256, depth = 3 }\n'
        'checkpoints = ["teachers/m0.pt", "teachers/m1.pt", "teachers/m2.pt"]'
    )
    suite = tmp_path / "my_suite.toml"
    suite.write_text(_suite_text(task, teacher=teacher))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "my_suite.toml", "--out", "data"]) == 0
    capsys.readouterr()
    exec(compile(block, "docs/tutorial.md", "exec"), {})
    printed = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 3 and min(printed) > 0.6  # three classes: chance is 1/3
    assert main(["run", "my_suite.toml", "--out", "results", "--reports", "reports", "-q"]) in (
        0,
        1,
    )
    (run,) = (tmp_path / "results").glob("*_byo")
    measured = json.loads((run / "manifest.json").read_text())["tasks"]["churn"]["teacher"]
    assert measured["member_val_acc"] == pytest.approx(printed, abs=1e-6)
