"""Latency after the search, in one interleaved pass on one quiet host: the ensemble (loop and
fused forms) and every trained architecture not timed yet, block by block in rotating order
(:func:`bench.latency.measure.latency_pass`), so drift hits all of them alike. Each architecture's
record (:attr:`~bench.study.Key.LATENCY` + ``<family>:<arch label>``) keeps the ensemble's
p50s from its own pass, the host and the pass id; the first pass's ensemble statistics are
the task's (:attr:`~bench.study.Key.ENSEMBLE_LATENCY`). :mod:`bench.run.pull` joins them into the
rows, and a speed-up is always a ratio of two numbers from one pass on one host."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from torch import nn

from bench.config.suite import MeasureConfig
from bench.durable.faults import fault_point
from bench.durable.jsonsafe import json_safe
from bench.latency.measure import (
    architecture_model,
    ensemble_forms,
    ensemble_latency_columns,
    latency_pass,
    student_latency_columns,
)
from bench.latency.onnx import OrtModel, example_batch, onnx_bytes, onnx_missing, ort_models
from bench.search.context import TaskWorker
from bench.search.space import arch_of
from bench.study import Key, final_record

__all__ = ["ensemble_latency", "time_architectures"]


def ensemble_latency(w: TaskWorker) -> dict[str, Any]:
    """The ensemble's stored latency (``columns``, ``detail``, ``measured_by``, ``host``,
    ``pass``), timed now (with any architecture not timed yet) if no process of this run has
    timed it yet."""
    stored = w.study("search").user_attrs.get(Key.ENSEMBLE_LATENCY)
    if not isinstance(stored, str):
        time_architectures(w)
        stored = w.study("search").user_attrs[Key.ENSEMBLE_LATENCY]
    return dict(json.loads(stored))


def _untimed(w: TaskWorker) -> dict[str, dict[str, Any]]:
    """Label → arch parameters of every completed architecture with no latency record."""
    ctx = w.ctx
    family = ctx.suite.student.family
    done = {k for k in w.study("search").user_attrs if k.startswith(Key.LATENCY)}
    archs: dict[str, dict[str, Any]] = {}
    for phase_study in w.existing_studies():
        for record in map(final_record, phase_study.get_trials(deepcopy=False)):
            if record and record["row"]["state"] == "complete":
                row = record["row"]
                if f"{Key.LATENCY}{family}:{row['arch']}" not in done:
                    archs[row["arch"]] = {n: row[f"arch_{n}"] for n in ctx.suite.search.arch_names}
    return archs


def time_architectures(w: TaskWorker) -> int:
    """Time, in one interleaved pass, the ensemble and every distinct trained architecture not
    timed yet, with no training beside it (the workers are done); return how many
    architectures were timed. Nothing runs when all are timed."""
    ctx = w.ctx
    study = w.study("search")
    archs = _untimed(w)
    if not archs and Key.ENSEMBLE_LATENCY in study.user_attrs:
        return 0
    family = ctx.suite.student.family
    vocab = ctx.task.data_params.get("vocab_size")
    forms = ensemble_forms(
        ctx.teacher.cost_model, example_batch(ctx.task.input_shape, 2, vocab, seed=0)
    )
    models: dict[str, Any] = {f"ensemble:{form}": m for form, m in forms.items()}
    for label, arch in archs.items():
        models[label] = architecture_model(
            family,
            arch_of(arch, ctx.suite.search, family),
            ctx.task.input_shape,
            ctx.task.num_classes,
        )
    cfg = ctx.suite.measure
    runtimes, ort, errors = _ort(models, ctx.task.input_shape, cfg, vocab)
    ort |= _form_sessions(w, {label: models[label] for label in archs}, vocab)
    res = latency_pass(models, ctx.task.input_shape, cfg, ctx.gpu, ort, vocab)
    cols, detail = ensemble_latency_columns({f: res[f"ensemble:{f}"] for f in forms})
    host = socket.gethostname()
    stamp = {
        "measured_by": w.worker,
        "host": host,
        "pass": f"{host}:{os.getpid()}:{time.time_ns()}",
    }
    if Key.ENSEMBLE_LATENCY not in study.user_attrs:
        data = {"columns": cols, "detail": detail, "runtimes": runtimes, **stamp}
        study.set_user_attr(Key.ENSEMBLE_LATENCY, json.dumps(json_safe(data)))
        fault_point("write")
    for label in archs:
        record = {
            **student_latency_columns(res[label], cfg),
            **_form_columns(res, label),
            **stamp,
            "ensemble": cols,
            **({"ort_error": errors[label]} if label in errors else {}),
        }
        study.set_user_attr(f"{Key.LATENCY}{family}:{label}", json.dumps(json_safe(record)))
        fault_point("write")
    return len(archs)


def _form_sessions(
    w: TaskWorker, students: dict[str, nn.Module], vocab: int | None
) -> dict[str, OrtModel]:
    """The ``[ship] forms`` beside fp32 of every student architecture, in onnxruntime CPU
    sessions timed in the same pass (``<label>#<form>``). The architecture's weights are its
    timing weights, and int8_static calibrates on the training split as certification does:
    an int8 kernel's cost does not depend on the values. A form that cannot be built, or
    whose provider is not the CPU's (fp16), is not timed (NaN)."""
    from bench.latency.forms import build_form, form_provider, task_calibration

    ctx = w.ctx
    forms = [f for f in ctx.suite.ship.forms if f != "fp32"]
    forms = [f for f in forms if form_provider(f) == "CPUExecutionProvider"]
    if not forms or onnx_missing() is not None or "onnxruntime" not in ctx.suite.measure.runtimes:
        return {}
    calib = task_calibration(ctx.task, ctx.suite.ship.calibration_rows)
    out: dict[str, OrtModel] = {}
    for label, model in students.items():
        try:
            fp32 = onnx_bytes(model, ctx.task.input_shape, vocab=vocab)
        except Exception:
            continue
        for form in forms:
            try:
                graph = build_form(fp32, form, calib)
                out[f"{label}#{form}"] = OrtModel({None: graph}, ctx.suite.measure.threads)
            except Exception:
                continue
    return out


def _form_columns(res: dict[str, Any], label: str) -> dict[str, float]:
    """A student's forms' onnxruntime p50s from the pass (``latency_ort_cpu_<form>_b1_…``)."""
    out: dict[str, float] = {}
    for key, by_setting in res.items():
        base, _, form = key.partition("#")
        if base != label or not form:
            continue
        for tag in ("b1", "bN"):
            r = by_setting.get(f"ort_cpu_{tag}")
            if r is not None:
                out[f"latency_ort_cpu_{form}_{tag}_p50_ms"] = r.p50_ms
    return out


def _ort(
    models: dict[str, Any],
    input_shape: tuple[int, ...],
    cfg: MeasureConfig,
    vocab: int | None = None,
) -> tuple[dict[str, str], dict[str, OrtModel], dict[str, str]]:
    """What each runtime of ``[measure] runtimes`` measured (for the manifest), the
    onnxruntime sessions to time (every model exported; none when onnxruntime is not
    installed or not asked) and the models that could not be exported, with why."""
    runtimes = {"torch": f"measured: eager PyTorch, {cfg.threads} thread(s)"}
    if "onnxruntime" not in cfg.runtimes:
        return {**runtimes, "onnxruntime": "not asked ([measure] runtimes)"}, {}, {}
    missing = onnx_missing()
    if missing is not None:
        return {**runtimes, "onnxruntime": f"not measured: {missing}"}, {}, {}
    from importlib.metadata import version

    ort, errors = ort_models(
        {n: m for n, m in models.items() if isinstance(m, nn.Module)},
        input_shape,
        cfg.threads,
        cfg.batch,
        vocab,
    )
    runtimes["onnxruntime"] = (
        f"measured: onnxruntime {version('onnxruntime')} (CPU, {cfg.threads} intra-op "
        f"thread(s), sequential), each model exported as kdbench export ships it"
        + (f"; {len(errors)} model(s) could not be exported (ort_error)" if errors else "")
    )
    return runtimes, ort, errors
