"""Training asked trials as one group of one architecture; a failure becomes failed rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from bench.errors import DataVanished, is_write_error
from bench.group.cost import student_cost
from bench.group.plan import TrialConfig
from bench.group.rows import failed_row
from bench.group.stream import train_path
from bench.group.train import GroupResult, run_group
from bench.search.context import TaskWorker

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
    level: float | None = None,
) -> GroupResult:
    """Train ``trials`` (one architecture) as one group; failures become failed rows.

    ``source`` maps a trial number to the trial its rows are recorded under (a certification
    trial records the search trial it certifies); ``level``: a certification round's level."""
    ctx = w.ctx
    spec = ctx.group_spec(trials[0], seeds, phase, level)
    configs = [TrialConfig.of((source or {}).get(t.number, t.number), t.params) for t in trials]
    started = time.perf_counter()
    n_threads = torch.get_num_threads()
    path = train_path(ctx.suite, ctx.task)
    vanished = ""
    try:
        n_threads = _set_threads(w, spec.arch)  # inside: a family may fail to build it
        result = run_group(
            ctx.suite,
            spec,
            configs,
            w.scratch_store(),
            train_device=ctx.train_device,
            on_epoch=on_epoch,
            scratch_seeds=scratch_seeds,
        )
        for row, _ in result.rows:
            row["train_threads"] = n_threads
            row["train_path"] = path
        return result
    except optuna.TrialPruned as exc:
        state, reason = "pruned", str(exc)
    except FileNotFoundError as exc:
        state, reason = "fail", f"{type(exc).__name__}: {exc}"
        if getattr(ctx.task, "streamed", False):  # the data, not the trial: stop, resumable
            lines = str(exc).strip().splitlines()
            vanished = f"a file of task '{ctx.task.name}' vanished: {lines[-1] if lines else exc!r}"
        else:
            log.warning("trials %s failed: %s", [c.trial for c in configs], exc)
    except Exception as exc:  # a failing trial is recorded and the sweep goes on
        if is_write_error(exc):  # a full disk is not the trial's fault: the run stops
            raise
        log.warning("trials %s failed: %s", [c.trial for c in configs], exc)
        state, reason = "fail", f"{type(exc).__name__}: {exc}"
    if vanished:
        # raised here, not in the handler: no reference to the trial's frames survives (its
        # DataLoader workers, forked with the run folder's lock, end now)
        raise DataVanished(vanished)
    spent = (time.perf_counter() - started) / len(configs)
    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        (
            failed_row(spec, c, state, reason, spent)
            | {"train_threads": n_threads, "train_path": path},
            [],
        )
        for c in configs
    ]
    return GroupResult(rows, {})
