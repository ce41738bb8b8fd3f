"""Student latency, once per trained architecture, stored once on the task's search study
(:attr:`~bench.study.Key.LATENCY` + ``<family>:<arch label>``) and joined into the rows by
:mod:`bench.pull`."""

from __future__ import annotations

import json
from typing import Any

from bench.faults import fault_point
from bench.jsonsafe import json_safe
from bench.measure import architecture_latency
from bench.search.context import TaskWorker
from bench.space import arch_of
from bench.study import Key, final_record

__all__ = ["time_architectures"]


def time_architectures(w: TaskWorker) -> int:
    """Time every distinct trained architecture not timed yet, once, with no training
    beside it (the workers are done); return how many were timed."""
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
        study.set_user_attr(key, json.dumps(json_safe({**cols, "measured_by": w.worker})))
        fault_point("write")
        timed += 1
    return timed
