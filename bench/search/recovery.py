"""Orphaned trials: what an interrupted or dead worker left RUNNING, and how to redo it.

A search trial is asked unclaimed (:mod:`bench.search.search` asks a whole batch at once) and
becomes a worker's when :func:`claim` sets its :attr:`~bench.study.Key.WORKER` (empty until
then: a queued retry inherits its dead original's attributes, worker included); an unclaimed
trial is nobody's orphan, it waits for the next claim.

* ``exclusive`` (a local run folder, locked by this process): every claimed RUNNING trial is
  an orphan of an interrupted run. A trial whose record was committed is told from it; the
  others are trained again *under their own numbers* with the same group composition (the
  leader's :attr:`~bench.study.Key.GROUP` attribute), so a resumed run reproduces an
  uninterrupted one.
* ``shared`` (an RDB with heartbeats): Optuna's ``fail_stale_trials`` fails trials whose
  worker stopped beating and re-queues them (same parameters); live workers' trials are
  never touched.
* ``cooperative`` (several local processes on one journal): the supervising process fails
  and re-queues the trials of a worker that died (:mod:`bench.run.workers`); workers touch
  nobody's trials.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.search.context import TaskWorker
from bench.search.space import Distribution, pinned
from bench.study import Key, decode_record

__all__ = ["Redo", "claim", "group_plan", "recover"]

# A group to train again: all its trials (same composition as planned) and the numbers of
# those to commit (the ones without a record).
Redo = tuple[list[FrozenTrial], set[int]]


def group_plan(study: optuna.Study, t: FrozenTrial | optuna.Trial) -> dict[str, Any] | None:
    """The group plan stored on the leader of ``t``'s group (None for a lone retry)."""
    trials = study.get_trials(deepcopy=False)
    attr = trials[t.number].user_attrs.get(Key.GROUP)
    if not attr:
        return None
    plan: dict[str, Any] | None = trials[attr.get("leader", t.number)].user_attrs.get(Key.GROUP)
    return plan


def recover(
    w: TaskWorker, study: optuna.Study, dists: dict[str, Distribution], phase: str
) -> list[Redo]:
    """Finish what can be finished from records and return the groups to train again."""
    if w.mode == "shared":
        optuna.storages.fail_stale_trials(study)
        return []
    if w.mode != "exclusive":
        return []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    orphans = []
    pareto = phase == "search" and w.ctx.pareto
    for t in running:
        record = decode_record(t)
        if record is not None:  # committed, not yet told: finish it from the record
            w.ledger.tell_row(study, t.number, record["row"], pareto)
        elif phase != "search" or t.user_attrs.get(Key.WORKER):  # unclaimed: claim() takes it
            orphans.append(t)
    if not orphans:
        return []
    orphans = _complete_params(w, study, orphans, dists)
    if phase != "search":
        return [([t], {t.number}) for t in orphans]
    return _groups(w, study, orphans, dists)


def claim(w: TaskWorker, study: optuna.Study, dists: dict[str, Distribution]) -> list[FrozenTrial]:
    """Make the lowest-numbered unclaimed group of the open batch this worker's (call under
    the ask lock); its trials, complete with their parameters, or [] when none is left."""
    unclaimed = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not t.user_attrs.get(Key.WORKER) and decode_record(t) is None
    ]
    if not unclaimed:
        return []
    first = min(_leader(t) for t in unclaimed)
    members = _complete_params(w, study, [t for t in unclaimed if _leader(t) == first], dists)
    ((group, _),) = _groups(w, study, members, dists)
    for t in group:
        w.ledger.set_attr(study, t.number, Key.WORKER, w.worker)
    return [study.get_trials(deepcopy=False)[t.number] for t in group]


def _leader(t: FrozenTrial) -> int:
    return int((t.user_attrs.get(Key.GROUP) or {}).get("leader", t.number))


def _groups(
    w: TaskWorker, study: optuna.Study, members: list[FrozenTrial], dists: dict[str, Distribution]
) -> list[Redo]:
    """``members`` (RUNNING, parameters complete) by group: each whole group as planned (the
    members a kill left unasked are asked now) and the numbers of ``members``."""
    trials = study.get_trials(deepcopy=False)
    groups: dict[int, list[FrozenTrial]] = {}
    for t in members:
        groups.setdefault(_leader(t), []).append(t)
    redo: list[Redo] = []
    for leader, part in sorted(groups.items()):
        plan = trials[leader].user_attrs.get(Key.GROUP) or {}
        everyone = [tt for tt in trials if _leader(tt) == leader and Key.GROUP in tt.user_attrs]
        everyone = everyone or part
        missing = int(plan.get("size", len(everyone))) - len(everyone)
        for _ in range(max(0, missing)):  # interrupted while asking the group: ask the rest
            asked = w.ask(study, pinned(dists, trials[leader].params))
            w.ledger.set_attr(study, asked.number, Key.GROUP, {"leader": leader})
            everyone.append(study.get_trials(deepcopy=False)[asked.number])
            part.append(everyone[-1])
        # Train the whole group as it was planned (same composition, same results) and
        # commit only the trials that have no record yet.
        redo.append((sorted(everyone, key=lambda x: x.number), {m.number for m in part}))
    return redo


def _complete_params(
    w: TaskWorker,
    study: optuna.Study,
    orphans: list[FrozenTrial],
    dists: dict[str, Distribution],
) -> list[FrozenTrial]:
    """Suggest the params an orphan lacks: ``ask`` writes one param at a time, so a kill
    can leave a trial with only some of them. An enqueued (certification) trial takes its fixed
    params, a member of a group its leader's architecture, the rest comes from the
    (trial- and parameter-seeded) sampler: the values an uninterrupted ask would give."""
    trials = study.get_trials(deepcopy=False)
    out: list[FrozenTrial] = []
    for t in orphans:
        missing = [n for n in dists if n not in t.params]
        if not missing and not w.ctx.sizer.missing(t):
            out.append(t)
            continue
        leader = (t.user_attrs.get(Key.GROUP) or {}).get("leader", t.number)
        fixed = {n: trials[leader].params[n] for n in missing if n in trials[leader].params}
        study_id = w.storage.get_study_id_from_name(study.study_name)
        live = optuna.trial.Trial(
            study, w.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        )
        for name in missing:
            d = dists[name]
            low, high = (fixed[name],) * 2 if name in fixed else (d.low, d.high)
            if isinstance(d, optuna.distributions.IntDistribution):
                live.suggest_int(name, int(low), int(high), log=d.log)
            else:
                live.suggest_float(name, float(low), float(high), log=d.log)
        w.ctx.sizer.complete(live)
        out.append(study.get_trials(deepcopy=False)[t.number])
    return out
