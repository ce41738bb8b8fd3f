"""The search phase: ask trials in batches of groups that share an architecture, train, commit.

Any number of workers (separate processes, on any hosts) may run :func:`run_search` on one
study; each stops when the study holds ``n_trials`` recorded search trials and none is still
running anywhere. Counting, asking and claiming happen under the
:class:`~bench.study.AskLock`, so the budget is exact.

**The same search for any number of workers.** Trials are asked in batches of ``[budget]
batch`` groups, all at once, and only when every trial asked before is done: the sampler
then sees exactly the trials of the earlier batches, whoever asks and whenever. Workers
*claim* the groups of the open batch (:attr:`~bench.study.Key.WORKER`); halving compares a
trial with the trials of earlier batches only, and a duplicate is one of an earlier batch,
so no decision depends on which worker finished first. The price is idle workers at the end
of each batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from bench.durable.faults import fault_point
from bench.search.context import TaskWorker
from bench.search.halving import halving_callback, pruning_callback
from bench.search.predict import plan_batch
from bench.search.recovery import claim, group_plan, recover
from bench.search.space import Distribution, distributions, pinned, trial_arch, trial_recipe
from bench.search.trials import train_trials
from bench.study import AskLock, Heartbeat, Key, final_record, quiet_heartbeat_warning

__all__ = ["POLL_S", "run_search"]

# A worker waiting for a batch to finish polls the study this often: every batch end costs up
# to this much idle time (a journal read of a small study takes about a millisecond).
POLL_S = 0.2


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
                with lock:  # count, ask and claim atomically across workers
                    trials = study.get_trials(deepcopy=False)
                    counted = sum(1 for t in trials if final_record(t) is not None)
                    running = [t for t in trials if t.state == TrialState.RUNNING]
                    if counted >= ctx.n_trials and not running:
                        break
                    if not running and not _ask_batch(w, study, dists, ctx.n_trials - counted):
                        break  # the strategy has nothing more to train
                    claimed = claim(w, study, dists)
                    for t in claimed:
                        hb.add(study, t.number)
                if not claimed:
                    time.sleep(POLL_S)  # the batch's last trials are other workers' to finish
                    continue
                _run_asked(w, study, [_live(w, study, t) for t in claimed], hb)
    finally:
        hb.stop()


def _live(w: TaskWorker, study: optuna.Study, t: FrozenTrial) -> optuna.Trial:
    """A claimed trial as a live ``optuna.Trial`` (the pruner reports to it)."""
    study_id = w.storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(
        study, w.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
    )


def _ask_batch(
    w: TaskWorker, study: optuna.Study, dists: dict[str, Distribution], free: int
) -> bool:
    """Ask the next batch: up to ``[budget] batch`` groups of ``group_size`` trials (fewer
    where the budget ends), each group's plan stored on its leader with the batch's first
    trial number (what halving and the duplicate check compare against). With ``strategy =
    "predict"`` the groups' architectures are :func:`bench.search.predict.plan_batch`'s.
    False when nothing was asked."""
    budget = w.ctx.suite.budget
    trials = study.get_trials(deepcopy=False)
    start = len(trials)
    pins: list[dict[str, Any] | None] = [None] * budget.batch
    if w.ctx.suite.search.strategy == "predict":
        batches = [int(p["batch"]) for t in trials if (p := group_plan(study, t)) and "batch" in p]
        rows = pd.DataFrame(w.ledger.final_rows(study))
        pins = list(plan_batch(w.ctx, rows, max(batches) if batches else None))
    asked = False
    for pin in pins:
        size = min(budget.group_size, free)
        if size <= 0:
            break
        _ask_group(w, study, dists, size, start, pin)
        free -= size
        asked = True
    return asked


def _ask_group(
    w: TaskWorker,
    study: optuna.Study,
    dists: dict[str, Distribution],
    size: int,
    batch: int,
    pin: dict[str, Any] | None = None,
) -> None:
    """One trial asked freely (its architecture ``pin``ned when given), then ``size - 1``
    with its architecture pinned (no enqueue: another worker could take an enqueued trial,
    and then the model trained would not be the one recorded). Nobody has claimed them yet."""
    suite = w.ctx.suite
    family = suite.student.family
    seeds = range(suite.budget.seeds)
    scratch = w.scratch_store()
    leader = w.ask(study, pinned(dists, pin) if pin is not None else dists)
    arch = trial_arch(leader, suite.search, family)
    recipe = trial_recipe(leader, suite.search)

    def plan(t: optuna.Trial, size: int, t_arch: dict[str, Any]) -> None:
        w.ledger.set_attr(study, t.number, Key.WORKER, "")  # unclaimed (a retry inherits one)
        t_recipe = trial_recipe(t, suite.search)
        missing = [s for s in seeds if scratch.get(family, t_arch, s, t_recipe) is None]
        w.ledger.set_attr(
            study,
            t.number,
            Key.GROUP,
            {"leader": t.number, "size": size, "scratch_seeds": missing, "batch": batch},
        )
        fault_point("write")

    plan(leader, size, arch)
    for _ in range(size - 1):
        t = w.ask(study, pinned(dists, leader.params))
        t_arch = trial_arch(t, suite.search, family)
        if t_arch == arch and trial_recipe(t, suite.search) == recipe:
            w.ledger.set_attr(study, t.number, Key.WORKER, "")
            w.ledger.set_attr(study, t.number, Key.GROUP, {"leader": leader.number})
        else:  # it popped a queued retry of another architecture (or recipe): its own group
            plan(t, 1, t_arch)


def _config_key(row: dict[str, Any], recipe: tuple[str, ...]) -> tuple[Any, ...]:
    """What makes two trials the same configuration: architecture, T, alpha and the searched
    recipe keys."""
    names = ("temperature", "alpha", *recipe)
    return (str(row["arch"]), *(round(float(row[n]), 12) for n in names))


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

    A trial whose configuration (architecture, T, alpha) a completed trial of an earlier
    batch already has is not trained again: it is recorded as a ``duplicate`` row that copies
    the original."""
    from kdcore.families import format_arch

    ctx = w.ctx
    suite = ctx.suite
    family = suite.student.family
    by_arch: dict[tuple[Any, ...], list[Any]] = {}
    for t in asked:
        key = tuple(sorted(trial_arch(t, suite.search, family).items())) + tuple(
            sorted(trial_recipe(t, suite.search).items())
        )
        by_arch.setdefault(key, []).append(t)
    seeds = list(range(suite.budget.seeds))
    for part in by_arch.values():
        plan = group_plan(study, part[0]) or {}
        batch = int(plan.get("batch", part[0].number))
        recorded = [
            r
            for r in w.ledger.final_rows(study)
            if r["state"] == "complete" and int(r["trial"]) < batch
        ]
        fresh: list[Any] = []
        dups: list[tuple[Any, dict[str, Any]]] = []
        for t in part:
            label = format_arch(family, trial_arch(t, suite.search, family))
            names = suite.search.recipe_names
            config = _config_key({"arch": label, **t.params}, names)
            same = [
                r for r in recorded if _config_key(r, names) == config and r["trial"] != t.number
            ]
            if same:
                dups.append((t, same[0]))
            else:
                fresh.append(t)
        out: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        scratch: dict[str, dict[str, float]] = {}
        if fresh:
            sampled = suite.search.strategy == "sample"  # the law needs full-length trials
            on_epoch = (
                pruning_callback(fresh[0])
                if sampled and suite.budget.prune and isinstance(fresh[0], optuna.Trial)
                else halving_callback(w, study, fresh[0])
                if sampled and suite.budget.fidelity == "halving"
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
