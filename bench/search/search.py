"""The search phase: ask trials in groups that share an architecture, train, commit.

Any number of workers (separate processes, on any hosts) may run :func:`run_search` on one
study; each stops when the study holds ``n_trials`` recorded search trials and none is still
running anywhere. Counting and asking happen under the :class:`~bench.study.AskLock`, so the
budget is exact.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.faults import fault_point
from bench.search.context import TaskWorker
from bench.search.halving import halving_callback, pruning_callback
from bench.search.recovery import group_plan, recover
from bench.search.training import train_trials
from bench.space import Distribution, arch_of, distributions, pinned
from bench.study import AskLock, Heartbeat, Key, final_record, quiet_heartbeat_warning

__all__ = ["POLL_S", "run_search"]

POLL_S = 1.0


def run_search(w: TaskWorker) -> None:
    """Run search trials until the study holds ``n_trials`` recorded ones and none is
    still running anywhere."""
    ctx = w.ctx
    study = w.study("search")
    if ctx.replay is not None and not study.get_trials(deepcopy=False):
        for params in ctx.replay:  # enqueued once, when the study is created
            study.enqueue_trial(params)
    hb = Heartbeat(w.storage, ctx.spec.heartbeat_interval)
    dists = distributions(ctx.suite.search, ctx.suite.student.family)
    lock = AskLock(w.storage, ctx.spec, study.study_name)
    try:
        with quiet_heartbeat_warning():
            while True:
                for group, only in recover(w, study, dists, "search"):
                    _run_asked(w, study, group, hb, only)
                with lock:  # count and ask atomically across workers: an exact budget
                    trials = study.get_trials(deepcopy=False)
                    counted = sum(1 for t in trials if final_record(t) is not None)
                    running = [t for t in trials if t.state == TrialState.RUNNING]
                    if counted >= ctx.n_trials and not running:
                        break
                    # Queued retries are popped first and are inside the budget already.
                    free = ctx.n_trials - counted - len(running)
                    size = min(ctx.suite.budget.group_size, free)
                    asked = _ask_group(w, study, dists, size, hb) if size > 0 else []
                if not asked:
                    time.sleep(POLL_S)  # the last trials are other workers' to finish
                    continue
                _run_asked(w, study, asked, hb)
    finally:
        hb.stop()


def _ask_group(
    w: TaskWorker,
    study: optuna.Study,
    dists: dict[str, Distribution],
    size: int,
    hb: Heartbeat,
) -> list[optuna.Trial]:
    """One trial asked freely, then ``size - 1`` with its architecture pinned (no enqueue:
    another worker could take an enqueued trial, and then the model trained would not be
    the one recorded)."""
    suite = w.ctx.suite
    family = suite.student.family
    seeds = range(suite.budget.seeds)
    leader = w.ask(study, dists)
    hb.add(study, leader.number)
    arch = arch_of(leader.params, suite.search, family)

    def plan(t: optuna.Trial, size: int, t_arch: dict[str, Any]) -> None:
        scratch = w.scratch_store()
        missing = [s for s in seeds if scratch.get(family, t_arch, s) is None]
        w.ledger.set_attr(study, t.number, Key.WORKER, w.worker)
        w.ledger.set_attr(
            study, t.number, Key.GROUP, {"leader": t.number, "size": size, "scratch_seeds": missing}
        )
        fault_point("write")

    plan(leader, size, arch)
    group = [leader]
    for _ in range(size - 1):
        t = w.ask(study, pinned(dists, leader.params))
        hb.add(study, t.number)
        t_arch = arch_of(t.params, suite.search, family)
        if t_arch == arch:
            w.ledger.set_attr(study, t.number, Key.WORKER, w.worker)
            w.ledger.set_attr(study, t.number, Key.GROUP, {"leader": leader.number})
        else:  # it popped a queued retry of another architecture: its own group
            plan(t, 1, t_arch)
        group.append(t)
    return group


def _config_key(row: dict[str, Any]) -> tuple[str, float, float]:
    return (str(row["arch"]), round(float(row["temperature"]), 12), round(float(row["alpha"]), 12))


def _run_asked(
    w: TaskWorker,
    study: optuna.Study,
    asked: Sequence[FrozenTrial | optuna.Trial],
    hb: Heartbeat,
    commit_only: set[int] | None = None,
) -> None:
    """Train what was asked — grouped by the architecture each trial actually has (a
    popped retry may have another) — and commit every trial, or only ``commit_only``
    (a group trained again after a crash: same composition, missing records only).

    A trial whose configuration (architecture, T, alpha) a completed trial already has is
    not trained again: it is recorded as a ``duplicate`` row that copies the original."""
    from kdcore import format_arch

    ctx = w.ctx
    suite = ctx.suite
    family = suite.student.family
    by_arch: dict[tuple[Any, ...], list[Any]] = {}
    for t in asked:
        key = tuple(sorted(arch_of(t.params, suite.search, family).items()))
        by_arch.setdefault(key, []).append(t)
    seeds = list(range(suite.budget.seeds))
    for part in by_arch.values():
        plan = group_plan(study, part[0]) or {}
        recorded = [r for r in w.ledger.final_rows(study) if r["state"] == "complete"]
        fresh: list[Any] = []
        dups: list[tuple[Any, dict[str, Any]]] = []
        for t in part:
            label = format_arch(family, arch_of(t.params, suite.search, family))
            config = _config_key(
                {"arch": label, "temperature": t.params["temperature"], "alpha": t.params["alpha"]}
            )
            same = [r for r in recorded if _config_key(r) == config and r["trial"] != t.number]
            if same:
                dups.append((t, same[0]))
            else:
                fresh.append(t)
        out: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        scratch: dict[str, dict[str, float]] = {}
        if fresh:
            on_epoch = (
                pruning_callback(fresh[0])
                if suite.budget.prune and isinstance(fresh[0], optuna.Trial)
                else halving_callback(w, study, fresh[0])
                if suite.budget.fidelity == "halving"
                else None
            )
            result = train_trials(w, fresh, seeds, "search", plan.get("scratch_seeds"), on_epoch)
            out.update({t.number: rs for t, rs in zip(fresh, result.rows, strict=True)})
            scratch = result.scratch
        for t, original in dups:
            row = dict(original)
            row.update(
                trial=t.number,
                state="duplicate",
                fail_reason=f"same configuration as trial {original['trial']}; not trained again",
            )
            out[t.number] = (row, [])
        for number in sorted(out):
            if commit_only is not None and number not in commit_only:
                continue
            row, seed_rows = out[number]
            done = len(w.ledger.final_rows(study)) + 1
            w.commit(study, number, row, seed_rows, scratch, "search", (done, ctx.n_trials), hb)
            scratch = {}  # recorded once, with the first trial committed
