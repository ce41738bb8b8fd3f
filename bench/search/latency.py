"""Latency after the search, in one pass on one quiet host: the ensemble (loop and fused
forms, :attr:`~bench.study.Key.ENSEMBLE_LATENCY`) and then every trained architecture once
(:attr:`~bench.study.Key.LATENCY` + ``<family>:<arch label>``), each stored on the task's
search study with the host that timed it; :mod:`bench.pull` joins them into the rows and
computes a speed-up only from an ensemble and a student timed on the same host."""

from __future__ import annotations

import json
import socket
from typing import Any

from bench.faults import fault_point
from bench.jsonsafe import json_safe
from bench.measure import architecture_latency, ensemble_latency_columns
from bench.search.context import TaskWorker
from bench.space import arch_of
from bench.study import Key, final_record

__all__ = ["ensemble_latency", "time_architectures"]


def ensemble_latency(w: TaskWorker) -> dict[str, Any]:
    """The ensemble's stored latency (``columns``, ``detail``, ``measured_by``, ``host``),
    timed now if no process of this run has timed it yet."""
    study = w.study("search")
    stored = study.user_attrs.get(Key.ENSEMBLE_LATENCY)
    if isinstance(stored, str):
        return dict(json.loads(stored))
    ctx = w.ctx
    cols, detail = ensemble_latency_columns(
        ctx.teacher.cost_model, ctx.task.input_shape, ctx.suite.measure, ctx.gpu
    )
    data = {
        "columns": cols,
        "detail": detail,
        "measured_by": w.worker,
        "host": socket.gethostname(),
    }
    study.set_user_attr(Key.ENSEMBLE_LATENCY, json.dumps(json_safe(data)))
    fault_point("write")
    return data


def time_architectures(w: TaskWorker) -> int:
    """Time the ensemble (if not yet) and then every distinct trained architecture not timed
    yet, once, with no training beside it (the workers are done); return how many
    architectures were timed."""
    ensemble_latency(w)
    ctx = w.ctx
    family = ctx.suite.student.family
    study = w.study("search")
    done = {k for k in study.user_attrs if k.startswith(Key.LATENCY)}
    archs: dict[str, dict[str, Any]] = {}
    for phase_study in w.existing_studies():
        for record in map(final_record, phase_study.get_trials(deepcopy=False)):
            if record and record["row"]["state"] == "complete":
                row = record["row"]
                archs[row["arch"]] = {n: row[f"arch_{n}"] for n in ctx.suite.search.arch_names}
    timed = 0
    for label, arch in archs.items():
        key = f"{Key.LATENCY}{family}:{label}"
        if key in done:
            continue
        cols = architecture_latency(
            family,
            arch_of(arch, ctx.suite.search, family),
            ctx.task.input_shape,
            ctx.task.num_classes,
            ctx.suite.measure,
            ctx.gpu,
        )
        data = {**cols, "measured_by": w.worker, "host": socket.gethostname()}
        study.set_user_attr(key, json.dumps(json_safe(data)))
        fault_point("write")
        timed += 1
    return timed
