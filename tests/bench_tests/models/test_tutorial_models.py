"""The tutorial's code for library models runs as written (docs/tutorial.md, section 5)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from kdcore import build_student

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_tutorial_converts_timm_training_checkpoints_into_a_teacher_kdbench_loads(
    tmp_path: Path, monkeypatch
) -> None:
    """timm's train.py checkpoints (state dict, optimizer, argparse args) converted by the
    tutorial's block load into ``timm:resnet50`` with ``arch = {}``: the same weights."""
    import timm

    text = (ROOT / "docs" / "tutorial.md").read_text()
    block = text.split("<!-- tested: save-timm-teacher -->\n```python\n", 1)[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    originals = []
    for k, run in enumerate(["runs/r50-a", "runs/r50-b", "runs/r50-c"]):
        torch.manual_seed(k)
        model = timm.create_model("resnet50", num_classes=10)
        Path(run).mkdir(parents=True)
        torch.save(
            {"epoch": 3, "arch": "resnet50", "state_dict": model.state_dict(),
             "args": argparse.Namespace(lr=0.1)},
            f"{run}/model_best.pth.tar",
        )  # fmt: skip
        originals.append(model.state_dict())
    exec(compile(block, "docs/tutorial.md", "exec"), {})
    from safetensors.torch import load_file

    for k, original in enumerate(originals):
        state = load_file(f"teachers/r50-{k}.safetensors")
        member = build_student("timm:resnet50", (3, 64, 64), 10)  # [teacher] arch = {}
        member.load_state_dict(state)  # strict: every layer's name and shape
        assert all(torch.equal(state[name], t) for name, t in original.items())


@pytest.mark.slow
def test_the_tutorial_names_an_hf_teachers_classes_and_kdbench_checks_them(
    tmp_path: Path, zoo_dir: Path, hf_bert: list[Path], monkeypatch, capsys
) -> None:
    """Trainer-style folders (``LABEL_k``) named by the tutorial's block: kdbench runs with the
    classes in that order and refuses the task when its classes come in another order."""
    import shutil

    from bench.cli import main
    from tests.bench_tests.conftest import assert_refused

    text = (ROOT / "docs" / "tutorial.md").read_text()
    block = text.split("<!-- tested: save-hf-teacher -->\n```python\n", 1)[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    for name, folder in zip(
        ["runs/bert-a", "runs/bert-b", "runs/bert-c"], [*hf_bert, hf_bert[0]], strict=True
    ):
        shutil.copytree(folder, name)
    # the zoo's classes c0, c1, c2 under the tutorial's names, in the same order
    block = block.replace('["billing", "bugs", "sales"]', '["c0", "c1", "c2"]')
    exec(compile(block, "docs/tutorial.md", "exec"), {})
    from tests.bench_tests.models.test_model_runs import TEXTS, _suite

    teacher = 'hf = ["teachers/bert-a", "teachers/bert-b", "teachers/bert-c"]'
    search = "head_width = 4\nheads = 2\nlayers = 1"
    for n, (classes, ok) in enumerate((("", True), ('classes = ["c2", "c1", "c0"]', False))):
        task = TEXTS.format(root=zoo_dir) + classes
        text = _suite(task, teacher, "hf:bert", search, certify=False).replace(
            "trials = 2", "trials = 1"
        )
        (tmp_path / "s.toml").write_text(text)
        capsys.readouterr()
        code = main(["run", "s.toml", "--out", f"r{n}", "--reports", "p", "--cache", "c", "-q"])
        out, err = capsys.readouterr()
        if ok:
            assert code in (0, 1), err[-2000:]  # ran: the names match the task's order
        else:
            assert_refused(code, out, err, "id2label is ['c0', 'c1', 'c2']", tmp_path / f"r{n}")
