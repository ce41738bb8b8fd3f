"""Export formats (bench.ship.serialize): safetensors with its sidecar, ONNX on raw rows checked in
onnxruntime, and the model card's loading code, run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.config.suite import suite_from_dict
from bench.latency.onnx import RawInput, raw_input_model
from bench.records import load_run
from bench.ship.serialize import available
from kdcore import build_student
from tests.bench_tests.conftest import TINY_SUITE, with_certify

pytestmark = pytest.mark.skipif(
    available()["onnx"] is not None or available()["safetensors"] is not None,
    reason="kdbench[onnx] is not installed",
)


@pytest.mark.parametrize(
    ("family", "shape", "arch", "how"),
    [
        ("mlp", (6,), {"width": 9, "depth": 2}, "folded"),
        ("cnn", (1, 6, 6), {"channels": 4, "blocks": 1}, "node"),
    ],
)
def test_the_raw_input_model_equals_the_model_on_standardised_inputs(
    family: str, shape: tuple[int, ...], arch: dict[str, int], how: str
) -> None:
    torch.manual_seed(0)
    model = build_student(family, shape, 3, **arch).eval()
    d = int(np.prod(shape))
    prep = {"mean": list(np.linspace(-3, 5, d)), "scale": list(np.linspace(0.1, 20, d))}
    raw, got = raw_input_model(model, shape, prep)
    assert got == how and isinstance(raw, RawInput) == (how == "node")
    x = torch.randn(17, *shape, dtype=torch.float64) * 10 + 2
    mean, scale = (torch.tensor(prep[k], dtype=torch.float64) for k in ("mean", "scale"))
    scaled = ((x.reshape(17, -1) - mean) / scale).reshape(x.shape).float()
    with torch.no_grad():
        torch.testing.assert_close(raw(x.float()), model(scaled), rtol=1e-4, atol=1e-4)
        assert raw_input_model(model, shape, None) == (model, "none")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("formats")
    suite = tmp / "tiny.toml"
    suite.write_text(with_certify(TINY_SUITE, "candidates = 1\nseeds = 2\nmax_gap_pp = 100\n"))
    args = ["--out", str(tmp / "r"), "--reports", str(tmp / "p"), "--cache", str(tmp / "c")]
    assert main(["run", str(suite), *args, "-q"]) in (0, 1)
    (run,) = (tmp / "r").glob("*_tiny")
    out = tmp / "ship"
    assert main(["export", str(run), "--max-gap", "100", "--out", str(out)]) == 0
    return run, out


@pytest.mark.slow
def test_every_format_is_written_and_the_card_code_loads_each(
    exported: tuple[Path, Path], monkeypatch
) -> None:
    run, out = exported
    runtimes = json.loads((run / "manifest.json").read_text())["tasks"]["tiny"]["runtimes"]
    assert runtimes["onnxruntime"] == "not asked ([measure] runtimes)"
    assert load_run(run).trials["latency_ort_cpu_b1_p50_ms"].isna().all()
    names = {p.name for p in out.iterdir()}
    assert {"student.pt", "student.safetensors", "student.json", "student.onnx"} <= names
    card = (out / "MODEL_CARD.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(out)
    spaces = []
    for code in blocks:  # as a user would: in the export folder, each block on its own
        ns: dict[str, object] = {}
        exec(compile(code, "MODEL_CARD.md", "exec"), ns)
        spaces.append(ns)
    pt, st, ox = spaces
    # safetensors + sidecar rebuild the same student as student.pt
    for k, v in pt["model"].state_dict().items():  # type: ignore[attr-defined]
        assert torch.equal(v, st["model"].state_dict()[k])  # type: ignore[attr-defined]
    sidecar = json.loads((out / "student.json").read_text())
    blob = torch.load(out / "student.pt", weights_only=True)
    assert sidecar["arch"] == blob["arch"] and sidecar["class_names"] == blob["class_names"]
    assert sidecar["preprocessing"]["mean"] == pytest.approx(blob["preprocessing"]["mean"].tolist())
    assert np.asarray(ox["logits"]).shape == (3, blob["num_classes"])
    assert "Checked: onnxruntime" in card and "this card's accuracy" in card


@pytest.mark.slow
def test_the_onnx_file_takes_raw_rows_and_gives_the_card_accuracy(
    exported: tuple[Path, Path],
) -> None:
    import onnx
    import onnxruntime as ort

    run, out = exported
    model = onnx.load(str(out / "student.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Sub", "Div"}  # the MLP's standardisation is folded into its first layer
    data = load_run(run)
    cfg = suite_from_dict(data.manifest.suite).tasks[0]
    from bench.tasks.base import split_task

    raw = cfg.load()
    task = split_task(cfg, raw)
    x = np.asarray(raw.x, dtype=np.float32)[task.rows["test"]]  # raw: never standardised
    session = ort.InferenceSession(str(out / "student.onnx"), providers=["CPUExecutionProvider"])
    pred = session.run(["logits"], {"x": x})[0].argmax(-1)
    blob = torch.load(out / "student.pt", weights_only=True)
    acc = float((pred == task.y_test.numpy()).mean())
    assert acc == pytest.approx(blob["provenance"]["test_acc"], abs=1e-6)  # stored as float32
    one = session.run(["logits"], {"x": x[:1]})[0]  # the batch dimension is dynamic
    assert one.shape == (1, blob["num_classes"])


def test_a_format_that_cannot_be_written_is_one_line_and_writes_nothing(
    exported: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    run, _ = exported
    code = main(["export", str(run), "--format", "torch,tflite", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Got 'tflite'" in err, err
    assert not (tmp_path / "x").exists()
