"""The certification phase (:mod:`bench.decision.protocol` states the protocol).

For each certification round (round 0: the suite's ``[certify] max_gap_pp``; later rounds:
``kdbench certify RUN --max-gap X``) the first worker to get there enqueues the candidates
(:func:`bench.decision.protocol.certify_order`, validation only) in the round's study with their
rank, and records how many (:attr:`~bench.study.Key.CERTIFY_ENQUEUED`); every worker then
pops candidates until none is waiting or running. Each candidate trains with the round's
fresh seeds, is evaluated on the test split once, and keeps the weights of its validation-
chosen seed (the file :mod:`bench.ship.export` ships). When no candidate waits or runs, the
round is certified (:func:`bench.decision.protocol.round_marks`) and its marks are stored with
its study (:attr:`~bench.study.Key.CERTIFIED`).
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from bench.decision.protocol import certify_order, certify_seeds, claim_level, round_marks
from bench.durable.faults import fault_point
from bench.group.plan import TrialConfig
from bench.group.rows import failed_row
from bench.search.context import TaskWorker, certify_phase
from bench.search.recovery import recover
from bench.search.search import POLL_S
from bench.search.space import distributions, row_params
from bench.search.trials import train_trials
from bench.study import AskLock, Heartbeat, Key, quiet_heartbeat_warning
from bench.study.artifacts import put_weights

__all__ = ["run_certify"]


def run_certify(w: TaskWorker) -> None:
    """Certify every round of the task (when ``[certify] candidates`` > 0), then mark the
    task done."""
    search = w.study("search")
    if w.ctx.suite.certify.candidates > 0:
        for round_, gap in enumerate(w.ctx.certify_rounds):
            _certify_round(w, search, round_, gap)
    search.set_user_attr(Key.DONE, True)


def _open_round(w: TaskWorker, name: str) -> tuple[optuna.Study, bool]:
    sampler = optuna.samplers.RandomSampler(seed=0)
    try:
        study = optuna.create_study(
            storage=w.storage, sampler=sampler, study_name=name, direction="maximize"
        )
        with warnings.catch_warnings():  # experimental in Optuna 5; the dashboard reads it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["val_acc"])
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=w.storage, sampler=sampler), False


def _certify_round(w: TaskWorker, search: optuna.Study, round_: int, gap: float) -> None:
    ctx = w.ctx
    phase = certify_phase(round_)
    name = ctx.study_name(phase)
    cstudy, creator = _open_round(w, name)
    lock = AskLock(w.storage, ctx.spec, name)
    if creator or w.mode == "exclusive":
        # Exclusive: also after a resume: add what is missing.
        with lock:
            _enqueue(w, search, cstudy, round_, gap)

    def enqueued() -> Any:
        return optuna.load_study(study_name=name, storage=w.storage).user_attrs.get(
            Key.CERTIFY_ENQUEUED
        )

    waited = 0.0
    while enqueued() is None:
        time.sleep(POLL_S)  # another worker is writing the list
        waited += POLL_S
        if waited > ctx.spec.grace_period * 2:
            with lock:  # its writer died: finish the list (what it enqueued stays)
                _enqueue(w, search, cstudy, round_, gap)
    hb = Heartbeat(w.storage, ctx.spec.heartbeat_interval)
    dists = distributions(ctx.suite.search, ctx.suite.student.family)
    total = int(enqueued())
    try:
        with quiet_heartbeat_warning():
            while True:
                redo = recover(w, cstudy, dists, phase)
                for group, _ in redo:
                    _certify_one(w, cstudy, group[0], hb, len(redo), round_, gap)
                with lock:  # look, pop and claim as one step: no two workers pop one candidate
                    trials = cstudy.get_trials(deepcopy=False)
                    waiting = any(t.state == TrialState.WAITING for t in trials)
                    running = any(t.state == TrialState.RUNNING for t in trials)
                    t = w.ask(cstudy, dists) if waiting else None
                    if t is not None:
                        hb.add(cstudy, t.number)
                        if Key.SOURCE_TRIAL in t.user_attrs:
                            w.ledger.set_attr(cstudy, t.number, Key.WORKER, w.worker)
                if t is None:
                    if not running:
                        _mark(w, cstudy, total)
                        break
                    time.sleep(POLL_S)  # the last candidates are other workers' to finish
                    continue
                if Key.SOURCE_TRIAL not in t.user_attrs:  # a storage without an ask lock
                    cstudy.tell(t, state=TrialState.FAIL)
                    hb.done(cstudy, t.number)
                    continue
                frozen = cstudy.get_trials(deepcopy=False)[t.number]
                _certify_one(w, cstudy, frozen, hb, total, round_, gap)
    finally:
        hb.stop()


def _mark(w: TaskWorker, cstudy: optuna.Study, total: int) -> None:
    """The round is complete (no candidate waits or runs): certify by fixed-sequence testing
    and store the marks with the round's study (every worker that gets here writes the same
    marks)."""
    marks = round_marks(w.ledger.final_rows(cstudy), total)
    cstudy.set_user_attr(Key.CERTIFIED, json.dumps({str(k): v for k, v in marks.items()}))
    fault_point("write")


def _enqueue(
    w: TaskWorker, search: optuna.Study, cstudy: optuna.Study, round_: int, gap: float
) -> None:
    suite = w.ctx.suite
    frame = pd.DataFrame([r for r in w.ledger.final_rows(search) if r["state"] == "complete"])
    level = claim_level(suite.certify.alpha, round_, len(suite.ship.forms))
    n_val = len(w.ctx.task.y_val)
    chosen = (
        certify_order(frame, suite.certify.candidates, gap, level, n_val) if len(frame) else frame
    )
    present = {t.user_attrs.get(Key.SOURCE_TRIAL) for t in cstudy.get_trials(deepcopy=False)}
    strials = search.get_trials(deepcopy=False)
    for rank, (_, r) in enumerate(chosen.iterrows()):
        if int(r["trial"]) in present:
            continue
        size = strials[int(r["trial"])].params.get("size")
        params = row_params(r, suite.search, suite.student.family, size)
        cstudy.enqueue_trial(
            params, user_attrs={Key.SOURCE_TRIAL: int(r["trial"]), Key.CERTIFY_RANK: rank}
        )
    cstudy.set_user_attr(Key.CERTIFY_ENQUEUED, len(chosen))
    fault_point("write")


def _certify_one(
    w: TaskWorker,
    cstudy: optuna.Study,
    t: FrozenTrial,
    hb: Heartbeat,
    total: int,
    round_: int,
    gap: float,
) -> None:
    ctx = w.ctx
    suite = ctx.suite
    source = int(t.user_attrs[Key.SOURCE_TRIAL])
    seeds = certify_seeds(round_, suite.certify.seeds)
    level = claim_level(suite.certify.alpha, round_, len(suite.ship.forms))
    cells = {
        "certify_round": round_,
        "certify_rank": int(t.user_attrs.get(Key.CERTIFY_RANK, -1)),
        "certify_max_gap": gap,
        "certify_alpha": level,
        "certify_seeds": ",".join(map(str, seeds)),
    }
    done_sources = {r["trial"] for r in w.ledger.final_rows(cstudy)}
    if source in done_sources:  # two workers took the same candidate: keep the first
        row = failed_row(
            ctx.group_spec(t, seeds, "certify", level),
            TrialConfig.of(source, t.params),
            "duplicate",
            f"trial {source} was already certified in this round",
        )
        row |= cells
        w.commit(cstudy, t.number, row, [], {}, "certify", (len(done_sources), total), hb)
        return
    result = train_trials(w, [t], seeds, "certify", None, source={t.number: source}, level=level)
    ((row, seed_rows),) = result.rows
    row |= cells
    if source in result.weights:  # before the record: the record is the commit point
        kept = result.weights[source]
        ref = put_weights(
            w.ctx.spec.artifacts,
            w.storage,
            cstudy.study_name,
            t.number,
            kept["seed"],
            kept["state_dict"],
        )
        w.ledger.set_attr(cstudy, t.number, Key.WEIGHTS, json.dumps(ref))
        fault_point("write")
    # counted now, not before training: other workers finish candidates meanwhile
    tested = {r["trial"] for r in w.ledger.final_rows(cstudy) if r["state"] != "duplicate"}
    progress = (len(tested | {source}), total)
    w.commit(cstudy, t.number, row, seed_rows, result.scratch, "certify", progress, hb)
