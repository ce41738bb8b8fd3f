"""Deployed forms (``[ship] forms``, bench.latency.forms): built with onnxruntime's own tools,
run in onnxruntime, certified by their own fixed sequence; refused where they cannot run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench.config.suite import parse_suite
from bench.decision.protocol import claim_level, round_marks
from bench.decision.recommend import Constraints, by_form, recommend
from bench.errors import InputError
from bench.latency.forms import (
    FormModel,
    build_form,
    calibration_rows,
    form_missing,
    with_standardisation,
)
from bench.latency.onnx import onnx_bytes
from bench.stats import discordant, paired_bound
from kdcore import build_student

CPU_FORMS = ("fp32", "int8_dynamic", "int8_static")


@pytest.mark.parametrize(("family", "shape", "arch"), [
    ("mlp", (20,), {"width": 32, "depth": 2}),
    ("cnn", (1, 8, 8), {"channels": 8, "blocks": 2}),
])  # fmt: skip
def test_every_cpu_form_is_built_loads_and_predicts_like_fp32(family, shape, arch) -> None:
    torch.manual_seed(0)
    model = build_student(family, shape, 5, **arch).eval()
    x = torch.randn(400, *shape)
    with torch.no_grad():
        ref = model(x).argmax(-1).numpy()
    fp32 = onnx_bytes(model, shape)
    calib = calibration_rows(x.numpy(), 128)
    sizes = {}
    for form in CPU_FORMS:
        graph = build_form(fp32, form, calib)
        pred = FormModel(graph, form).logits(x.numpy()).argmax(-1)
        sizes[form] = len(graph)
        agree = (pred == ref).mean()
        assert agree == 1.0 if form == "fp32" else agree > 0.95, (form, agree)
    assert sizes["int8_dynamic"] < sizes["fp32"]  # int8 weights: a smaller file
    with pytest.raises(ValueError, match="calibration rows"):
        build_form(fp32, "int8_static", None)


def test_a_dynamic_int8_row_is_predicted_alone_whatever_it_is_called_with() -> None:
    """Dynamic quantisation takes activation ranges over the call's input: one row per call
    is what is certified, so a row's logits do not depend on the other rows given."""
    torch.manual_seed(2)
    model = build_student("mlp", (10,), 3, width=16, depth=2).eval()
    x = np.random.default_rng(0).normal(size=(50, 10)).astype(np.float32)
    x[0] *= 100  # one row with a wide range would coarsen everyone's scale in one call
    form = FormModel(build_form(onnx_bytes(model, (10,)), "int8_dynamic"), "int8_dynamic")
    together = form.logits(x)
    alone = np.concatenate([form.logits(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(together, alone)


def test_a_form_behind_the_standardisation_reads_raw_rows_as_the_form_reads_standardised() -> None:
    torch.manual_seed(1)
    model = build_student("cnn", (1, 8, 8), 4, channels=4, blocks=1).eval()
    g = np.random.default_rng(0)
    raw = g.uniform(0, 16, (300, 1, 8, 8))
    mean, scale = raw.reshape(300, -1).mean(0), raw.reshape(300, -1).std(0) + 0.1
    std = ((raw.reshape(300, -1) - mean) / scale).astype(np.float32).reshape(raw.shape)
    graph = build_form(onnx_bytes(model, (1, 8, 8)), "int8_static", calibration_rows(std, 100))
    shipped = with_standardisation(graph, (1, 8, 8), {"mean": mean, "scale": scale})
    a = FormModel(shipped, "int8_static").logits(raw.astype(np.float32)).argmax(-1)
    b = FormModel(graph, "int8_static").logits(std).argmax(-1)
    assert (a == b).mean() > 0.99


def test_calibration_rows_come_from_the_rows_given_seeded() -> None:
    x = np.arange(1000).reshape(500, 2)
    a, b = calibration_rows(x, 64), calibration_rows(x, 64)
    assert np.array_equal(a, b) and len(a) == 64
    assert {tuple(r) for r in a} <= {tuple(r) for r in x}
    assert len(calibration_rows(x[:10], 64)) == 10


def test_ship_forms_are_checked_when_the_suite_is_read() -> None:
    assert parse_suite({}).ship.forms == ("fp32",)
    assert parse_suite({"ship": {"forms": ["int8_static", "fp32"]}}).ship.forms == (
        "int8_static",
        "fp32",
    )
    for bad, rule in (
        (["int8"], "an array of 'fp32'"),
        (["int8_dynamic"], "including 'fp32'"),
        (["fp32", "fp32"], "distinct forms"),
    ):
        with pytest.raises(InputError, match=rule):
            parse_suite({"ship": {"forms": bad}})


@pytest.mark.skipif(form_missing("fp16") is None, reason="this onnxruntime has CUDA")
def test_fp16_is_refused_before_the_run_on_a_cpu_only_onnxruntime(tmp_path, capsys) -> None:
    from bench.cli import main
    from tests.bench_tests.conftest import TINY_SUITE, assert_refused

    suite = tmp_path / "s.toml"
    suite.write_text(TINY_SUITE + '\n[ship]\nforms = ["fp32", "fp16"]\n')
    code = main(["run", str(suite), "--out", str(tmp_path / "r"), "-q"])
    out, err = capsys.readouterr()
    assert_refused(
        code, out, err, "The 'forms' parameter of [ship] must name forms this machine can "
        "produce and run. Got 'fp16': it runs on onnxruntime's CUDAExecutionProvider",
        tmp_path / "r",
    )  # fmt: skip


def _row(trial: int, rank: int, ens: np.ndarray, fp32: np.ndarray, form: np.ndarray, level: float):
    n = len(ens)
    a, b = discordant(ens, fp32)
    fa, fb = discordant(ens, form)
    return {
        "trial": trial, "certify_rank": rank, "state": "complete", "phase": "certify",
        "certify_round": 0, "certify_max_gap": 0.005, "certify_alpha": level,
        "certify_seeds": "1,2", "n_seeds": 2, "n_test": n, "student_params": 1000 - trial,
        "student_flops": 2000 - trial, "certify_bound": paired_bound(a, b, n, 1 - level),
        "file_acc": fp32.mean(), "file_gap": (a - b) / n, "ens_not_file": a, "file_not_ens": b,
        "file_acc_int8_static": form.mean(), "file_gap_int8_static": (fa - fb) / n,
        "certify_bound_int8_static": paired_bound(fa, fb, n, 1 - level),
        "ens_not_file_int8_static": fa, "file_not_ens_int8_static": fb,
        "ship_forms": "int8_static,fp32",
    }  # fmt: skip


def test_a_form_that_flips_one_percent_of_predictions_is_refused_at_a_tolerance_it_breaks() -> None:
    """The fp32 file matches the ensemble on 4,000 test examples; its int8 form turns 1 % of
    them wrong (a 1 pp gap). At 0.5 pp the form's own bound fails while fp32 passes, and the
    decision ships fp32 although the suite prefers the int8 form."""
    n, g = 4000, np.random.default_rng(0)
    ens = g.random(n) < 0.95
    fp32 = ens.copy()
    form = ens.copy()
    form[np.flatnonzero(ens)[: n // 100]] = False  # 1 % flipped from right to wrong
    level = claim_level(0.05, 0, forms=2)
    assert math.isclose(level, 0.0125)
    rows = [_row(0, 0, ens, fp32, form, level)]
    marks = round_marks(rows, 1)[0]
    assert marks["certified"] and not marks["certified_int8_static"]
    frame = pd.DataFrame([{**rows[0], **marks, "task": "t", "ensemble_acc": ens.mean(),
                           "best_member_acc": ens.mean(), "temperature": 2.0, "alpha": 0.5,
                           "arch": "a", "family": "mlp", "student_acc": 0.95,
                           "student_val_acc": 0.95, "param_ratio": 0.1}])  # fmt: skip
    pairs = by_form(frame, "latency_cpu_b1_p50_ms")
    assert list(pairs["form"]) == ["int8_static", "fp32"]
    assert list(pairs["certified"]) == [False, True]
    rec = recommend(frame, Constraints(max_gap=0.005), "t")
    assert rec.chosen is not None and rec.chosen["form"] == "fp32"
    # the same form without the flips is certified, and preferred (first in [ship] forms)
    rows = [_row(0, 0, ens, fp32, fp32.copy(), level)]
    marks = round_marks(rows, 1)[0]
    assert marks["certified_int8_static"]
    frame = frame.assign(**{k: v for k, v in {**rows[0], **marks}.items() if k in frame})
    assert recommend(frame, Constraints(max_gap=0.005), "t").chosen["form"] == "int8_static"


def test_a_latency_limit_applies_to_the_form_that_ships() -> None:
    """fp32 in eager PyTorch is over the limit, its int8 form in onnxruntime within it: with
    ``--max-latency-ms`` the decision ships the form; without a limit, fp32 (first listed)."""
    n, g = 4000, np.random.default_rng(1)
    ens = g.random(n) < 0.95
    level = claim_level(0.05, 0, forms=2)
    row = _row(0, 0, ens, ens.copy(), ens.copy(), level) | {"ship_forms": "fp32,int8_static"}
    marks = round_marks([row], 1)[0]
    assert marks["certified"] and marks["certified_int8_static"]
    frame = pd.DataFrame([{**row, **marks, "task": "t", "ensemble_acc": ens.mean(),
                           "best_member_acc": ens.mean(), "temperature": 2.0, "alpha": 0.5,
                           "arch": "a", "family": "mlp", "student_acc": 0.95,
                           "student_val_acc": 0.95, "param_ratio": 0.1,
                           "latency_cpu_b1_p50_ms": 0.5,
                           "latency_ort_cpu_int8_static_b1_p50_ms": 0.2}])  # fmt: skip
    assert recommend(frame, Constraints(max_gap=0.005), "t").chosen["form"] == "fp32"
    fast = recommend(frame, Constraints(max_gap=0.005, max_latency_ms=0.3), "t").chosen
    assert fast is not None and fast["form"] == "int8_static"
    none = recommend(frame, Constraints(max_gap=0.005, max_latency_ms=0.1), "t")
    assert none.chosen is None and none.outcome == "over_cost"
