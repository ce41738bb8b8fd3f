from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.config.suite import load_suite, parse_suite
from bench.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_suites_are_valid(path: Path) -> None:
    suite = load_suite(path)
    assert suite.tasks and suite.budget.trials >= 1


def test_seed_suite_matches_the_product_card() -> None:
    suite = load_suite(ROOT / "suites" / "seed.toml")
    (task,) = suite.tasks
    assert (task.kind, task.n_samples, task.n_features, task.n_classes) == (
        "synthetic",
        20000,
        20,
        2,
    )
    assert suite.teacher.members == 5 and suite.teacher.family == "seed_teacher"
    assert suite.budget.trials >= 40 and suite.budget.seeds >= 2
    assert suite.certify.seeds >= 5
    assert suite.budget.fidelity == "halving" and suite.certify.candidates >= 1
    s = suite.search
    arch = dict(s.arch)
    # width is solved from the sampled size (a fraction of the ensemble's parameters) and depth
    assert s.size is not None and (s.size.low, s.size.high, s.size.log) == (0.001, 0.03, True)
    assert (arch["depth"].low, arch["depth"].high) == (1, 4)
    assert (s.temperature.low, s.temperature.high) == (1.0, 20.0)
    assert (s.alpha.low, s.alpha.high) == (0.5, 1.0)


def test_fixed_values_and_defaults() -> None:
    suite = parse_suite({"search": {"alpha": 0.9, "temperature": 4}})
    assert suite.search.alpha.fixed and suite.search.alpha.low == 0.9
    assert suite.search.temperature.low == 4.0
    assert suite.tasks[0].kind == "synthetic"
    cnn = parse_suite({"task": {"kind": "digits"}, "student": {"family": "cnn"}})
    assert cnn.search.arch_names == ("channels", "blocks")  # the family's declared defaults
    assert dict(cnn.search.arch)["channels"].log


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"search": {"width": {"low": -3, "high": 8}}},
            "The 'width.low' parameter of [search] must be an int in [1, 4096]. Got -3 instead.",
        ),
        (
            {"search": {"width": {"low": 64, "high": 8}}},
            "'width.low' parameter of [search] must be <= 'width.high'",
        ),
        (
            {"search": {"alpha": {"low": 0.5, "high": 1.5}}},
            "The 'alpha.high' parameter of [search] must be a number in [0, 1]. Got 1.5 instead.",
        ),
        (
            {"budget": {"trials": "many"}},
            "The 'trials' parameter of [budget] must be an int in [1, 100000]. Got 'many' instead.",
        ),
        ({"budget": {"trails": 3}}, "Unknown key 'trails' in [budget]. Valid keys:"),
        (
            {"teacher": {"combine": "vote"}},
            "The 'combine' parameter of [teacher] must be one of 'mean_prob', 'mean_logit'. Got 'vote' instead.",
        ),
        ({"student": {"family": "resnet"}}, "The 'family' parameter of [student] must be one of"),
        (
            {"task": {"kind": "imagenet"}},
            "The 'kind' parameter of [task] must be one of 'synthetic', 'digits', 'mnist5k', 'hierarchical', 'file', 'reviews', 'images', 'hf', 'webdataset', 'csv'. Got 'imagenet' instead.",
        ),
        (
            {"task": {"n_informative": 30}},
            "The 'n_informative' parameter of [task] must be an int in [1, 20]. Got 30 instead.",
        ),
        (
            {"budget": {"prune": True}},
            "The 'prune' parameter of [budget] must be false unless objective = 'val_acc'",
        ),
        (
            {"measure": {"device": "tpu"}},
            "The 'device' parameter of [measure] must be one of 'auto', 'cpu', 'cuda' or 'cuda:N'. Got 'tpu' instead.",
        ),
        (
            {"measure": {"block_ms": 0}},
            "The 'block_ms' parameter of [measure]",
        ),
        (
            {"measure": {"runtimes": ["onnxruntime"]}},
            "The 'runtimes' parameter of [measure] must be an array of distinct values among "
            "'torch', 'onnxruntime' with 'torch'. Got ['onnxruntime'] instead.",
        ),
        (
            {"measure": {"runtimes": ["torch", "tensorrt"]}},
            "The 'runtimes' parameter of [measure] must be an array of distinct values",
        ),
        ({"colour": "red"}, "Unknown key 'colour' in the top level."),
        (
            {"search": {"heads": {"low": 1, "high": 4}}},
            "Unknown key 'heads' in [search]. Valid keys for family 'mlp': width, depth, size, lr, weight_decay, momentum, label_smoothing, temperature, alpha, strategy.",
        ),
        (
            {"student": {"family": "cnn"}, "search": {"width": 8}},
            "Unknown key 'width' in [search]. Valid keys for family 'cnn': channels, blocks, size, lr, weight_decay, momentum, label_smoothing, temperature, alpha, strategy.",
        ),
        (
            {"student": {"family": "cnn"}, "search": {"channels": {"low": 0, "high": 8}}},
            "The 'channels.low' parameter of [search] must be an int in [1, 1024]. Got 0 instead.",
        ),
        (
            {"task": {"name": "../../etc"}},
            "The 'name' parameter of [task] must be 1 to 64 letters, digits",
        ),
        (
            {"teacher": {"family": "mlp", "arch": {"width": 8}}},
            "The 'arch.depth' parameter of [teacher] must be given for family 'mlp'",
        ),
        (
            {"search": {"depth": {"low": 1, "high": 2, "step": 1}}},
            "Unknown key 'depth.step' in [search]",
        ),
        ({"budget": {"seeds": True}}, "The 'seeds' parameter of [budget] must be an int"),
        (
            {"search": {"size": {"low": 0.01, "high": 0.1}, "width": 8}},
            "The 'width' parameter of [search] must be left out when 'size' is given (it is "
            "solved from the size). Got 8 instead.",
        ),
        (
            {"search": {"size": {"low": 0, "high": 0.1}}},
            "The 'size.low' parameter of [search] must be a number in (0, 1000]. Got 0 instead.",
        ),
        (
            {"student": {"family": "seed_teacher"}, "search": {"size": 0.1}},
            "The 'size' parameter of [search] needs a family with a size parameter; family "
            "'seed_teacher' declares none. Got 0.1 instead.",
        ),
        (
            {"budget": {"fidelity": "hyperband"}},
            "The 'fidelity' parameter of [budget] must be one of 'full', 'halving'. Got 'hyperband' instead.",
        ),
        (
            {"budget": {"fidelity": "halving", "group_size": 4}},
            "The 'group_size' parameter of [budget] must be 1 with fidelity = 'halving'",
        ),
        (
            {"budget": {"fidelity": "halving", "min_epochs": 30}},
            "The 'min_epochs' parameter of [budget] must be <= [student] epochs / "
            "reduction_factor (20 / 3) with fidelity = 'halving' (a rung stops a trial with at "
            "least 1 - 1/reduction_factor of its epochs left). Got 30 instead.",
        ),
        (
            {"budget": {"reduction_factor": 1}},
            "The 'reduction_factor' parameter of [budget] must be an int in [2, 100]. Got 1 instead.",
        ),
    ],
)
def test_bad_values_name_key_rule_and_value(doc: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_suite(doc)
    assert message in str(info.value)


def test_cli_exits_2_with_one_line_and_no_traceback(tiny_suite, tmp_path: Path, capsys) -> None:
    bad = tiny_suite(
        replace={"width = { low = 4, high = 32, log = true }": "width = { low = -3, high = 32 }"}
    )
    code = main(["run", str(bad), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "The 'width.low' parameter of [search] must be an int in [1, 4096]. Got -3 instead." in err
    )
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_cli_rejects_invalid_toml_and_missing_file(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[task\nkind = 1")
    assert main(["run", str(broken)]) == 2
    assert "must be valid TOML" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "The suite file must exist" in capsys.readouterr().err
    assert main(["recommend", str(tmp_path), "--max-gap", "0.5"]) == 2
    assert "must be a kdbench run folder" in capsys.readouterr().err


def test_python_dash_m_bench_usage_error_is_exit_2() -> None:
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "bench", "frobnicate"], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert "invalid choice" in res.stderr


def test_each_suite_field_is_stated_once_with_its_rule_and_documented() -> None:
    """A config field carries its rule and help (bench.validation), the generic reader reads
    it, and docs/suite.md names it."""
    from dataclasses import fields

    from bench.config.suite import (
        BudgetConfig,
        CertifyConfig,
        MeasureConfig,
        ShipConfig,
        StudentTraining,
        TransferConfig,
    )
    from bench.teachers import TeacherConfig
    from bench.validation import rule_of

    read_elsewhere = {  # rules that depend on other keys, read by bench.config.suite itself
        TeacherConfig: {
            "family",
            "arch",
            "checkpoint",
            "checkpoints",
            "hf",
            "onnx",
            "logits",
            "milestones",
            "mean",
            "std",
        },
        StudentTraining: {"milestones"},
        MeasureConfig: {"device", "train_threads", "runtimes"},
        TransferConfig: {"omit_classes", "unlabeled"},
        ShipConfig: {"forms", "calibration_rows"},
    }
    page = (Path(__file__).resolve().parents[2] / "docs" / "suite.md").read_text()
    classes = (
        StudentTraining,
        TeacherConfig,
        BudgetConfig,
        CertifyConfig,
        MeasureConfig,
        TransferConfig,
        ShipConfig,
    )
    for cls in classes:
        for f in fields(cls):
            rule = rule_of(cls, f.name)
            if f.name in read_elsewhere.get(cls, set()):
                assert rule is None
            else:
                assert rule is not None and rule.help, f"{cls.__name__}.{f.name}"
            assert f"`{f.name}`" in page, f"docs/suite.md does not name {f.name}"
