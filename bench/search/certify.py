"""The confirm phase: the validation short-list re-trained with more seeds, each exactly once.

The short-list (:func:`select_confirm`) is chosen on validation data only. The first worker
to get there enqueues it in the task's confirm study and records its length
(:attr:`~bench.study.Key.CONFIRM_ENQUEUED`); every worker then pops candidates until none
is waiting or running.
"""

from __future__ import annotations

import json
import time
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from bench.faults import fault_point
from bench.search.context import TaskWorker
from bench.search.recovery import recover
from bench.search.search import POLL_S
from bench.search.training import train_trials
from bench.space import arch_of, distributions
from bench.study import Heartbeat, Key, quiet_heartbeat_warning
from bench.trial import TrialConfig, failed_row

__all__ = ["run_confirm", "select_confirm"]


def select_confirm(search: pd.DataFrame, top_k: int, max_val_gap_pp: float) -> pd.DataFrame:
    """Configurations to confirm, chosen on validation data only: the ``top_k`` cheapest (by
    FLOPs) completed students whose validation gap to the ensemble is within
    ``max_val_gap_pp``; if fewer qualify, the rest by smallest validation gap. One per
    configuration (architecture, T, alpha)."""
    unique = search.drop_duplicates(subset=["arch", "temperature", "alpha"], keep="first")
    ranked = unique.assign(_near=unique["val_gap"] * 100 <= max_val_gap_pp)
    near = ranked[ranked["_near"]].sort_values(["student_flops", "val_gap"])
    rest = ranked[~ranked["_near"]].sort_values(["val_gap", "student_flops"])
    return pd.concat([near, rest]).head(top_k).drop(columns="_near")


def run_confirm(w: TaskWorker) -> None:
    """Confirm the short-list (when ``[confirm] top_k`` > 0), then mark the task done."""
    search = w.study("search")
    if w.ctx.suite.confirm.top_k > 0:
        _confirm_phase(w, search)
    search.set_user_attr(Key.DONE, True)


def _confirm_phase(w: TaskWorker, search: optuna.Study) -> None:
    ctx = w.ctx
    name = ctx.study_name("confirm")
    try:
        cstudy = optuna.create_study(
            storage=w.storage,
            sampler=optuna.samplers.RandomSampler(seed=0),
            study_name=name,
            direction="maximize",
        )
        creator = True
    except optuna.exceptions.DuplicatedStudyError:
        cstudy = optuna.load_study(
            study_name=name, storage=w.storage, sampler=optuna.samplers.RandomSampler(seed=0)
        )
        creator = False
    if creator or w.mode == "exclusive":
        # Exclusive: also after a resume or an extension (--trials): add what is missing.
        _enqueue_confirm(w, search, cstudy)

    def enqueued() -> Any:
        return optuna.load_study(study_name=name, storage=w.storage).user_attrs.get(
            Key.CONFIRM_ENQUEUED
        )

    waited = 0.0
    while enqueued() is None:
        time.sleep(POLL_S)  # another worker is writing the short-list
        waited += POLL_S
        if waited > ctx.spec.grace_period * 2:
            _enqueue_confirm(w, search, cstudy)  # its writer died: finish the list
    hb = Heartbeat(w.storage, ctx.spec.heartbeat_interval)
    dists = distributions(ctx.suite.search, ctx.suite.student.family)
    total = int(enqueued())
    try:
        with quiet_heartbeat_warning():
            while True:
                redo = recover(w, cstudy, dists, "confirm")
                for group, _ in redo:
                    _confirm_one(w, cstudy, group[0], hb, len(redo))
                trials = cstudy.get_trials(deepcopy=False)
                waiting = [t for t in trials if t.state == TrialState.WAITING]
                running = [t for t in trials if t.state == TrialState.RUNNING]
                if not waiting:
                    if not running:
                        break
                    time.sleep(POLL_S)
                    continue
                t = w.ask(cstudy, dists)
                hb.add(cstudy, t.number)
                if Key.SOURCE_TRIAL not in t.user_attrs:  # the queue emptied under us
                    cstudy.tell(t, state=TrialState.FAIL)
                    hb.done(cstudy, t.number)
                    continue
                w.ledger.set_attr(cstudy, t.number, Key.WORKER, w.worker)
                _confirm_one(w, cstudy, cstudy.get_trials(deepcopy=False)[t.number], hb, total)
    finally:
        hb.stop()


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _enqueue_confirm(w: TaskWorker, search: optuna.Study, cstudy: optuna.Study) -> None:
    suite = w.ctx.suite
    frame = pd.DataFrame([r for r in w.ledger.final_rows(search) if r["state"] == "complete"])
    chosen = (
        select_confirm(frame, suite.confirm.top_k, suite.confirm.max_val_gap_pp)
        if len(frame)
        else frame
    )
    present = {t.user_attrs.get(Key.SOURCE_TRIAL) for t in cstudy.get_trials(deepcopy=False)}
    names = suite.search.arch_names
    strials = search.get_trials(deepcopy=False)
    for _, r in chosen.iterrows():
        if int(r["trial"]) in present:
            continue
        params = {n: _plain(r[f"arch_{n}"]) for n in names}
        params |= {"temperature": float(r["temperature"]), "alpha": float(r["alpha"])}
        if suite.search.size is not None:  # the same size solves to the same arch
            params["size"] = float(strials[int(r["trial"])].params["size"])
        cstudy.enqueue_trial(params, user_attrs={Key.SOURCE_TRIAL: int(r["trial"])})
    cstudy.set_user_attr(Key.CONFIRM_ENQUEUED, len(chosen))
    fault_point("write")


def _confirm_one(
    w: TaskWorker, cstudy: optuna.Study, t: FrozenTrial, hb: Heartbeat, total: int
) -> None:
    ctx = w.ctx
    suite = ctx.suite
    source = int(t.user_attrs[Key.SOURCE_TRIAL])
    seeds = list(range(suite.confirm.seeds))
    done_sources = {r["trial"] for r in w.ledger.final_rows(cstudy)}
    if source in done_sources:  # two workers took the same candidate: keep the first
        row = failed_row(
            ctx.run_id,
            ctx.task,
            ctx.teacher,
            suite.student.family,
            arch_of(t.params, suite.search, suite.student.family),
            TrialConfig(source, float(t.params["temperature"]), float(t.params["alpha"])),
            seeds,
            "confirm",
            "duplicate",
            f"trial {source} was already confirmed",
        )
        w.commit(cstudy, t.number, row, [], {}, "confirm", (len(done_sources), total), hb)
        return
    result = train_trials(w, [t], seeds, "confirm", None, source={t.number: source})
    ((row, seed_rows),) = result.rows
    if source in result.weights:  # before the record: the record is the commit point
        w.ledger.set_attr(cstudy, t.number, Key.WEIGHTS, json.dumps(result.weights[source]))
        fault_point("write")
    progress = (len(done_sources) + 1, total)
    w.commit(cstudy, t.number, row, seed_rows, result.scratch, "confirm", progress, hb)
