"""Training asked trials as one group of one architecture; a failure becomes failed rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from bench.errors import is_write_error
from bench.group.trial import GroupResult, TrialConfig, failed_row, run_group, student_cost
from bench.search.context import TaskWorker
from bench.search.space import trial_arch, trial_recipe

__all__ = ["train_trials"]

log = logging.getLogger(__name__)


def _set_threads(w: TaskWorker, arch: dict[str, Any]) -> int:
    """Torch threads for a group of students of ``arch`` (:mod:`bench.threads`)."""
    ctx = w.ctx
    _, flops = student_cost(
        ctx.suite.student.family, arch, ctx.task.input_shape, ctx.task.num_classes
    )
    n = ctx.threads.threads(flops)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def train_trials(
    w: TaskWorker,
    trials: Sequence[FrozenTrial | optuna.Trial],
    seeds: list[int],
    phase: str,
    scratch_seeds: list[int] | None,
    on_epoch: Callable[[int, torch.Tensor], None] | None = None,
    source: dict[int, int] | None = None,
) -> GroupResult:
    """Train ``trials`` (one architecture) as one group; failures become failed rows.

    ``source`` maps a trial number to the trial its rows are recorded under (a certification trial
    records the search trial it certifies)."""
    ctx = w.ctx
    family = ctx.suite.student.family
    arch = trial_arch(trials[0], ctx.suite.search, family)
    configs = [
        TrialConfig(
            (source or {}).get(t.number, t.number),
            float(t.params["temperature"]),
            float(t.params["alpha"]),
        )
        for t in trials
    ]
    started = time.perf_counter()
    n_threads = torch.get_num_threads()
    try:
        n_threads = _set_threads(w, arch)  # inside: a family may fail to build it
        result = run_group(
            ctx.suite,
            ctx.run_id,
            ctx.task,
            ctx.teacher,
            w.scratch_store(),
            arch,
            configs,
            seeds,
            phase,
            train_device=ctx.train_device,
            on_epoch=on_epoch,
            scratch_seeds=scratch_seeds,
            recipe=trial_recipe(trials[0], ctx.suite.search),
        )
        for row, _ in result.rows:
            row["train_threads"] = n_threads
        return result
    except optuna.TrialPruned as exc:
        state, reason = "pruned", str(exc)
    except Exception as exc:  # a failing trial is recorded and the sweep goes on
        if is_write_error(exc):  # a full disk is not the trial's fault: the run stops
            raise
        log.warning("trials %s failed: %s", [c.trial for c in configs], exc)
        state, reason = "fail", f"{type(exc).__name__}: {exc}"
    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        (
            failed_row(
                ctx.run_id,
                ctx.task,
                ctx.teacher,
                family,
                arch,
                c,
                seeds,
                phase,
                state,
                reason,
                (time.perf_counter() - started) / len(configs),
            )
            | {"train_threads": n_threads},
            [],
        )
        for c in configs
    ]
    return GroupResult(rows, {})
