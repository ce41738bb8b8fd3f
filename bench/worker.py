"""One process's part of a run: the search and confirm loops of one task.

A worker asks the study for trials, trains them in groups that share an architecture, and
commits each trial — its record as one user attribute, then ``tell`` (see ``bench.study``).
Any number of workers (threads of no one: separate processes, on any hosts) may run these
loops on one study; each stops when the study holds ``n_trials`` recorded search trials and
every confirm candidate has its record.

Recovery, at every turn of the loop:

* ``exclusive`` (a local run folder, locked by this process): every RUNNING trial is an
  orphan of an interrupted run. A trial whose record was committed is told from it; the
  others are trained again *under their own numbers* with the same group composition (the
  leader's ``kdbench_group`` attribute), so a resumed run reproduces an uninterrupted one.
* ``shared`` (an RDB with heartbeats): Optuna's ``fail_stale_trials`` fails trials whose
  worker stopped beating and re-queues them (same parameters); live workers' trials are
  never touched.
* ``cooperative`` (several local processes on one journal): the parent process fails and
  re-queues the trials of a worker that died; workers touch nobody's trials.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial, TrialState

from bench.faults import fault_point
from bench.measure import LATENCY_PREFIX, architecture_latency
from bench.space import Sizer, arch_of, distributions, pinned
from bench.study import (
    GROUP,
    IDENTITY,
    RECORD,
    RUNGS,
    WEIGHTS,
    WORKER,
    AskLock,
    Heartbeat,
    StorageSpec,
    decode_record,
    encode_record,
    json_safe,
    make_sampler,
    promoted,
    pruning_callback,
    quiet_heartbeat_warning,
    rung_epochs,
    study_name,
)
from bench.suite import Suite
from bench.tasks import TaskData
from bench.teacher import PreparedTeacher
from bench.threads import AUTO, ThreadPolicy
from bench.trial import (
    GroupResult,
    ScratchStore,
    TrialConfig,
    failed_row,
    run_group,
    student_cost,
)

__all__ = ["Progress", "TaskRun", "worker_id"]

log = logging.getLogger(__name__)
POLL_S = 1.0
CONFIRM_ENQUEUED = "kdbench_confirm_enqueued"
DONE = "kdbench_done"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Progress:
    """What a worker reports after each committed trial."""

    task: str
    done: int
    total: int
    elapsed_s: float
    row: dict[str, Any]
    best: dict[str, Any] | None
    phase: str = "search"


class IdentityMismatch(Exception):
    """The study was created by a different suite, data or teacher."""


def _final(t: FrozenTrial) -> dict[str, Any] | None:
    """The trial's record if the trial counts toward the budget (done for good)."""
    record = decode_record(t)
    if record is None:
        return None
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return record
    if t.state == TrialState.FAIL and record["row"]["state"] == "fail":
        return record  # a genuine failure (e.g. divergence), recorded with its reason
    return None


def _config_key(row: dict[str, Any]) -> tuple[str, float, float]:
    return (str(row["arch"]), round(float(row["temperature"]), 12), round(float(row["alpha"]), 12))


@dataclass
class TaskRun:
    """One task of a run, as one worker sees it."""

    suite: Suite
    task: TaskData
    teacher: PreparedTeacher
    ens_cols: dict[str, Any]
    run_id: str
    base: str
    storage: optuna.storages.BaseStorage
    spec: StorageSpec
    mode: str  # "exclusive" | "shared" | "cooperative"
    train_device: str
    gpu: torch.device | None
    n_trials: int
    identity: dict[str, Any]
    on_commit: Callable[[Progress], None] | None = None
    replay: list[dict[str, Any]] | None = None
    worker: str = field(default_factory=worker_id)
    started: float = field(default_factory=time.perf_counter)
    threads: ThreadPolicy = field(default_factory=ThreadPolicy)

    def _set_threads(self, arch: dict[str, Any]) -> int:
        """Torch threads for a group of students of ``arch`` (:mod:`bench.threads`)."""
        if self.threads.setting != AUTO:  # fixed: set once for the process
            return torch.get_num_threads()
        _, flops = student_cost(
            self.suite.student.family, arch, self.task.input_shape, self.task.num_classes
        )
        n = self.threads.threads(flops)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n

    @functools.cached_property
    def sizer(self) -> Sizer:
        return Sizer(
            self.suite.search,
            self.suite.student.family,
            self.task.input_shape,
            self.task.num_classes,
            self.teacher.params,
        )

    def _ask(
        self, study: optuna.Study, dists: dict[str, optuna.distributions.BaseDistribution]
    ) -> optuna.Trial:
        """``study.ask`` plus the derived architecture parameter (capacity axis)."""
        t = study.ask(dists)
        self.sizer.complete(t)
        return t

    # ------------------------------------------------------------------ studies
    def _directions(self, phase: str) -> dict[str, Any]:
        b = self.suite.budget
        if phase == "search" and b.objective == "pareto":
            return {"directions": ["maximize", "minimize"]}  # val accuracy, FLOPs
        kwargs: dict[str, Any] = {"direction": "maximize"}
        if phase == "search" and b.prune:
            kwargs["pruner"] = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
        return kwargs

    def study(self, phase: str = "search", *, create: bool = True) -> optuna.Study:
        """Join (or create) this task's study of ``phase``; check its identity."""
        name = study_name(self.base, self.task.name, phase)
        sampler = make_sampler(
            self.suite.budget.sampler if phase == "search" else "random",
            self.suite.budget.sampler_seed,
        )
        study = optuna.create_study(
            storage=self.storage,
            sampler=sampler,
            study_name=name,
            load_if_exists=True,
            **self._directions(phase),
        )
        if phase == "search":
            stored = study.user_attrs.get(IDENTITY)
            if stored is None:
                study.set_user_attr(IDENTITY, self.identity)
                stored = optuna.load_study(study_name=name, storage=self.storage).user_attrs.get(
                    IDENTITY
                )
            if stored != self.identity:
                diff = sorted(k for k in self.identity if stored.get(k) != self.identity.get(k))
                raise IdentityMismatch(
                    f"The study {name!r} must have been created by this suite with the same data "
                    f"and teacher. It differs in: {', '.join(diff)}."
                )
            names = ["val_acc", "flops"] if self.suite.budget.objective == "pareto" else ["val_acc"]
            if study.metric_names != names:
                with (
                    warnings.catch_warnings()
                ):  # experimental in Optuna 5; what the dashboard reads
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.set_metric_names(names)
        return study

    def _set_attr(self, study: optuna.Study, number: int, key: str, value: Any) -> None:
        study_id = self.storage.get_study_id_from_name(study.study_name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        self.storage.set_trial_user_attr(trial_id, key, value)

    def existing_studies(self) -> list[optuna.Study]:
        """This task's search and confirm studies, those that exist in the storage."""
        names = {s.study_name for s in self.storage.get_all_studies()}
        return [
            optuna.load_study(study_name=name, storage=self.storage)
            for name in (study_name(self.base, self.task.name, p) for p in ("search", "confirm"))
            if name in names
        ]

    def scratch_store(self) -> ScratchStore:
        """Scratch baselines recorded by any trial of this task (search and confirm)."""
        store = ScratchStore()
        for study in self.existing_studies():
            for t in study.get_trials(deepcopy=False):
                record = decode_record(t)
                if record is not None:
                    store.data.update(record.get("scratch", {}))
        return store

    # ------------------------------------------------------------------ committing
    def _commit(
        self,
        study: optuna.Study,
        number: int,
        row: dict[str, Any],
        seed_rows: list[dict[str, Any]],
        scratch: dict[str, dict[str, float]],
        phase: str,
        done: int,
        total: int,
        hb: Heartbeat,
    ) -> None:
        frozen = study.get_trials(deepcopy=False)[number]
        retry_of = (frozen.system_attrs.get("retry_history") or [None])[0]
        row = dict(row, worker=self.worker, retry_of=retry_of)
        self._set_attr(study, number, RECORD, encode_record(number, row, seed_rows, scratch))
        fault_point("write")
        self._tell(study, number, row, phase)
        hb.done(study, number)
        fault_point("write")
        if self.on_commit is not None:
            self.on_commit(
                Progress(
                    self.task.name,
                    done,
                    total,
                    time.perf_counter() - self.started,
                    row,
                    self._best(study),
                    phase,
                )
            )
        fault_point("trial")

    def _tell(self, study: optuna.Study, number: int, row: dict[str, Any], phase: str) -> None:
        try:
            if row["state"] in ("complete", "duplicate"):
                if phase == "search" and self.suite.budget.objective == "pareto":
                    study.tell(number, [row["student_val_acc"], row["student_flops"]])
                else:
                    study.tell(number, row["student_val_acc"])
            elif row["state"] == "pruned":
                study.tell(number, state=TrialState.PRUNED)
            else:
                study.tell(number, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker declared this one dead (its heartbeat went stale) and queued a
            # retry; the retry recomputes it. Nothing is lost, only time.
            log.warning(
                "trial %s was already finished by another worker; its retry will redo it", number
            )

    def _best(self, study: optuna.Study) -> dict[str, Any] | None:
        rows = [r["row"] for r in map(_final, study.get_trials(deepcopy=False)) if r]
        complete = [r for r in rows if r["state"] == "complete"]
        # "Best so far" is judged on validation accuracy, like the study itself.
        return max(complete, key=lambda r: r["student_val_acc"]) if complete else None

    # ------------------------------------------------------------------ training
    def _train(
        self,
        trials: Sequence[FrozenTrial | optuna.Trial],
        seeds: list[int],
        phase: str,
        scratch_seeds: list[int] | None,
        on_epoch: Callable[[int, torch.Tensor], None] | None = None,
        source: dict[int, int] | None = None,
    ) -> GroupResult:
        """Train ``trials`` (one architecture) as one group; failures become failed rows."""
        family = self.suite.student.family
        arch = arch_of(trials[0].params, self.suite.search, family)
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
            n_threads = self._set_threads(arch)  # inside: a family may fail to build it
            result = run_group(
                self.suite,
                self.run_id,
                self.task,
                self.teacher,
                self.ens_cols,
                self.scratch_store(),
                arch,
                configs,
                seeds,
                phase,
                train_device=self.train_device,
                on_epoch=on_epoch,
                scratch_seeds=scratch_seeds,
            )
            for row, _ in result.rows:
                row["train_threads"] = n_threads
            return result
        except optuna.TrialPruned as exc:
            state, reason = "pruned", str(exc)
        except Exception as exc:  # a failing trial is recorded and the sweep goes on
            log.warning("trials %s failed: %s", [c.trial for c in configs], exc)
            state, reason = "fail", f"{type(exc).__name__}: {exc}"
        rows = [
            (
                failed_row(
                    self.run_id,
                    self.task,
                    self.teacher,
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

    # ------------------------------------------------------------------ search phase
    def search(self) -> None:
        """Run search trials until the study holds ``n_trials`` recorded ones and none is
        still running anywhere."""
        study = self.study("search")
        if self.replay is not None:
            self._enqueue_replay(study)
        hb = Heartbeat(self.storage, self.spec.heartbeat_interval)
        dists = distributions(self.suite.search, self.suite.student.family)
        lock = AskLock(self.storage, self.spec, study.study_name)
        try:
            with quiet_heartbeat_warning():
                while True:
                    self._recover(study, dists, hb, "search")
                    with lock:  # count and ask atomically across workers: an exact budget
                        trials = study.get_trials(deepcopy=False)
                        counted = sum(1 for t in trials if _final(t) is not None)
                        running = [t for t in trials if t.state == TrialState.RUNNING]
                        if counted >= self.n_trials and not running:
                            break
                        # Queued retries are popped first and are inside the budget already.
                        free = self.n_trials - counted - len(running)
                        size = min(self.suite.budget.group_size, free)
                        asked = self._ask_group(study, dists, size, hb) if size > 0 else []
                    if not asked:
                        time.sleep(POLL_S)  # the last trials are other workers' to finish
                        continue
                    self._run_asked(study, asked, hb)
        finally:
            hb.stop()

    def _enqueue_replay(self, study: optuna.Study) -> None:
        if study.get_trials(deepcopy=False):
            return  # enqueued when the study was created
        for params in self.replay or []:
            study.enqueue_trial(params)

    def _ask_group(
        self,
        study: optuna.Study,
        dists: dict[str, optuna.distributions.BaseDistribution],
        size: int,
        hb: Heartbeat,
    ) -> list[optuna.Trial]:
        """One trial asked freely, then ``size - 1`` with its architecture pinned (no enqueue:
        another worker could take an enqueued trial, and then the model trained would not be
        the one recorded)."""
        family = self.suite.student.family
        seeds = range(self.suite.budget.seeds)
        leader = self._ask(study, dists)
        hb.add(study, leader.number)
        arch = arch_of(leader.params, self.suite.search, family)

        def plan(t: optuna.Trial, size: int, t_arch: dict[str, Any]) -> None:
            scratch = self.scratch_store()
            missing = [s for s in seeds if scratch.get(family, t_arch, s) is None]
            self._set_attr(study, t.number, WORKER, self.worker)
            self._set_attr(
                study, t.number, GROUP, {"leader": t.number, "size": size, "scratch_seeds": missing}
            )
            fault_point("write")

        plan(leader, size, arch)
        group = [leader]
        for _ in range(size - 1):
            t = self._ask(study, pinned(dists, leader.params))
            hb.add(study, t.number)
            t_arch = arch_of(t.params, self.suite.search, family)
            if t_arch == arch:
                self._set_attr(study, t.number, WORKER, self.worker)
                self._set_attr(study, t.number, GROUP, {"leader": leader.number})
            else:  # it popped a queued retry of another architecture: its own group
                plan(t, 1, t_arch)
            group.append(t)
        return group

    def _run_asked(
        self,
        study: optuna.Study,
        asked: Sequence[FrozenTrial | optuna.Trial],
        hb: Heartbeat,
        commit_only: set[int] | None = None,
    ) -> None:
        """Train what was asked — grouped by the architecture each trial actually has (a
        popped retry may have another) — and commit every trial, or only ``commit_only``
        (a group trained again after a crash: same composition, missing records only)."""
        family = self.suite.student.family
        by_arch: dict[tuple[Any, ...], list[Any]] = {}
        for t in asked:
            key = tuple(sorted(arch_of(t.params, self.suite.search, family).items()))
            by_arch.setdefault(key, []).append(t)
        seeds = list(range(self.suite.budget.seeds))
        for part in by_arch.values():
            plan = self._group_attr(study, part[0]) or {}
            recorded = [
                r["row"]
                for r in map(_final, study.get_trials(deepcopy=False))
                if r and r["row"]["state"] == "complete"
            ]
            fresh: list[Any] = []
            dups: list[tuple[Any, dict[str, Any]]] = []
            for t in part:
                key = _config_key(
                    {
                        "arch": _arch_label(family, self.suite, t.params),
                        "temperature": t.params["temperature"],
                        "alpha": t.params["alpha"],
                    }
                )
                same = [r for r in recorded if _config_key(r) == key and r["trial"] != t.number]
                if same:
                    dups.append((t, same[0]))
                else:
                    fresh.append(t)
            out: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
            scratch: dict[str, dict[str, float]] = {}
            if fresh:
                on_epoch = (
                    pruning_callback(fresh[0], len(seeds))
                    if self.suite.budget.prune and isinstance(fresh[0], optuna.Trial)
                    else self._halving(study, fresh[0], len(seeds))
                    if self.suite.budget.fidelity == "halving"
                    else None
                )
                result = self._train(fresh, seeds, "search", plan.get("scratch_seeds"), on_epoch)
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
                done = sum(1 for tt in study.get_trials(deepcopy=False) if _final(tt)) + 1
                self._commit(
                    study, number, row, seed_rows, scratch, "search", done, self.n_trials, hb
                )
                scratch = {}  # recorded once, with the first trial committed

    def _halving(
        self, study: optuna.Study, t: FrozenTrial | optuna.Trial, n_seeds: int
    ) -> Callable[[int, torch.Tensor], None]:
        """Successive halving on epochs (:func:`bench.study.promoted` is the rung rule): at
        each rung the trial's mean validation accuracy over its distilled members and its
        FLOPs are stored on the trial (:data:`RUNGS`) and compared with those of the earlier
        trials that reached the rung; a trial that is not promoted stops there, recorded as
        pruned with the reason. Peers are earlier-numbered trials only, so one worker's
        decisions are the same on resume."""
        b, st = self.suite.budget, self.suite.student
        rungs = set(rung_epochs(b.min_epochs, b.reduction_factor, st.epochs))
        arch = arch_of(t.params, self.suite.search, st.family)
        flops = float(
            student_cost(st.family, arch, self.task.input_shape, self.task.num_classes)[1]
        )
        reached: dict[str, list[float]] = {}

        def on_epoch(epoch: int, val_acc: torch.Tensor) -> None:
            if epoch not in rungs:
                return
            acc = float(val_acc[:n_seeds].mean())
            reached[str(epoch)] = [acc, flops]
            self._set_attr(study, t.number, RUNGS, dict(reached))
            peers = [
                tuple(other.user_attrs[RUNGS][str(epoch)])
                for other in study.get_trials(deepcopy=False)
                if other.number < t.number and str(epoch) in other.user_attrs.get(RUNGS, {})
            ]
            if not promoted((acc, flops), peers, b.reduction_factor, b.objective == "pareto"):
                raise optuna.TrialPruned(
                    f"stopped at epoch {epoch} by successive halving (eta {b.reduction_factor}): "
                    f"val acc {100 * acc:.2f} % at {flops:,.0f} FLOPs not in the top "
                    f"1/{b.reduction_factor} of {len(peers) + 1} trials at this rung"
                )

        return on_epoch

    def _group_attr(
        self, study: optuna.Study, t: FrozenTrial | optuna.Trial
    ) -> dict[str, Any] | None:
        """The group plan stored on the leader of ``t``'s group (None for a lone retry)."""
        trials = study.get_trials(deepcopy=False)
        attr = trials[t.number].user_attrs.get(GROUP)
        if not attr:
            return None
        return trials[attr.get("leader", t.number)].user_attrs.get(GROUP)

    # ------------------------------------------------------------------ recovery
    def _recover(
        self,
        study: optuna.Study,
        dists: dict[str, optuna.distributions.BaseDistribution],
        hb: Heartbeat,
        phase: str,
    ) -> None:
        if self.mode == "shared":
            optuna.storages.fail_stale_trials(study)
            return
        if self.mode != "exclusive":
            return
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        orphans = []
        for t in running:
            record = decode_record(t)
            if record is not None:  # committed, not yet told: finish it from the record
                self._tell(study, t.number, record["row"], phase)
            else:
                orphans.append(t)
        if not orphans:
            return
        orphans = self._complete_params(study, orphans, dists)
        if phase == "confirm":
            for t in orphans:
                self._confirm_one(study, t, hb, len(orphans))
            return
        trials = study.get_trials(deepcopy=False)
        groups: dict[int, list[FrozenTrial]] = {}
        for t in orphans:
            leader = (t.user_attrs.get(GROUP) or {}).get("leader", t.number)
            groups.setdefault(leader, []).append(t)
        for leader, members in sorted(groups.items()):
            plan = trials[leader].user_attrs.get(GROUP) or {}
            everyone = [
                tt for tt in trials if (tt.user_attrs.get(GROUP) or {}).get("leader") == leader
            ] or members
            missing = int(plan.get("size", len(everyone))) - len(everyone)
            if missing > 0:  # interrupted while asking the group: ask the rest now
                for _ in range(missing):
                    t = self._ask(study, pinned(dists, trials[leader].params))
                    self._set_attr(study, t.number, GROUP, {"leader": leader})
                    self._set_attr(study, t.number, WORKER, self.worker)
                    everyone.append(study.get_trials(deepcopy=False)[t.number])
                    members.append(everyone[-1])
            # Train the whole group as it was planned (same composition, same results) and
            # commit only the trials that have no record yet.
            self._run_asked(
                study, sorted(everyone, key=lambda x: x.number), hb, {m.number for m in members}
            )

    def _complete_params(
        self,
        study: optuna.Study,
        orphans: list[FrozenTrial],
        dists: dict[str, optuna.distributions.BaseDistribution],
    ) -> list[FrozenTrial]:
        """Suggest the params an orphan lacks: ``ask`` writes one param at a time, so a kill
        can leave a trial with only some of them. An enqueued (confirm) trial takes its fixed
        params, a member of a group its leader's architecture, the rest comes from the
        (trial- and parameter-seeded) sampler: the values an uninterrupted ask would give."""
        trials = study.get_trials(deepcopy=False)
        out: list[FrozenTrial] = []
        for t in orphans:
            missing = [n for n in dists if n not in t.params]
            derived = self.suite.search.derived
            if not missing and (derived is None or derived in t.params):
                out.append(t)
                continue
            leader = (t.user_attrs.get(GROUP) or {}).get("leader", t.number)
            fixed = {n: trials[leader].params[n] for n in missing if n in trials[leader].params}
            study_id = self.storage.get_study_id_from_name(study.study_name)
            live = optuna.trial.Trial(
                study, self.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            )
            for name in missing:
                d = dists[name]
                low, high = (fixed[name],) * 2 if name in fixed else (d.low, d.high)
                if isinstance(d, optuna.distributions.IntDistribution):
                    live.suggest_int(name, int(low), int(high), log=d.log)
                else:
                    live.suggest_float(name, float(low), float(high), log=d.log)
            self.sizer.complete(live)
            out.append(study.get_trials(deepcopy=False)[t.number])
        return out

    # ------------------------------------------------------------------ measurement
    def measure(self) -> int:
        """Time every distinct trained architecture not timed yet, once, with no training
        beside it (the workers are done); return how many were timed."""
        family = self.suite.student.family
        study = self.study("search")
        done = {k for k in study.user_attrs if k.startswith(LATENCY_PREFIX)}
        archs: dict[str, dict[str, Any]] = {}
        for phase_study in self.existing_studies():
            for record in map(_final, phase_study.get_trials(deepcopy=False)):
                if record and record["row"]["state"] == "complete":
                    row = record["row"]
                    archs[row["arch"]] = {n: row[f"arch_{n}"] for n in self.suite.search.arch_names}
        timed = 0
        for label, arch in archs.items():
            key = f"{LATENCY_PREFIX}{family}:{label}"
            if key in done:
                continue
            cols = architecture_latency(
                family,
                arch_of(arch, self.suite.search, family),
                self.task.input_shape,
                self.task.num_classes,
                self.suite.measure,
                self.gpu,
            )
            study.set_user_attr(key, json.dumps(json_safe({**cols, "measured_by": self.worker})))
            fault_point("write")
            timed += 1
        return timed

    # ------------------------------------------------------------------ confirm phase
    def confirm(self) -> None:
        """Re-run the short-listed configurations with more seeds (each exactly once)."""
        cfg = self.suite.confirm
        search = self.study("search")
        if cfg.top_k > 0:
            self._confirm_phase(search)
        search.set_user_attr(DONE, True)

    def _confirm_phase(self, search: optuna.Study) -> None:
        name = study_name(self.base, self.task.name, "confirm")
        try:
            cstudy = optuna.create_study(
                storage=self.storage,
                sampler=optuna.samplers.RandomSampler(seed=0),
                study_name=name,
                direction="maximize",
            )
            creator = True
        except optuna.exceptions.DuplicatedStudyError:
            cstudy = optuna.load_study(
                study_name=name, storage=self.storage, sampler=optuna.samplers.RandomSampler(seed=0)
            )
            creator = False
        if creator or self.mode == "exclusive":
            # Exclusive: also after a resume or an extension (--trials): add what is missing.
            self._enqueue_confirm(search, cstudy)
        waited = 0.0
        while (
            CONFIRM_ENQUEUED
            not in optuna.load_study(study_name=name, storage=self.storage).user_attrs
        ):
            time.sleep(POLL_S)  # another worker is writing the short-list
            waited += POLL_S
            if waited > self.spec.grace_period * 2:
                self._enqueue_confirm(search, cstudy)  # its writer died: finish the list
        hb = Heartbeat(self.storage, self.spec.heartbeat_interval)
        dists = distributions(self.suite.search, self.suite.student.family)
        total = int(
            optuna.load_study(study_name=name, storage=self.storage).user_attrs[CONFIRM_ENQUEUED]
        )
        try:
            with quiet_heartbeat_warning():
                while True:
                    self._recover(cstudy, dists, hb, "confirm")
                    trials = cstudy.get_trials(deepcopy=False)
                    waiting = [t for t in trials if t.state == TrialState.WAITING]
                    running = [t for t in trials if t.state == TrialState.RUNNING]
                    if not waiting:
                        if not running:
                            break
                        time.sleep(POLL_S)
                        continue
                    t = self._ask(cstudy, dists)
                    hb.add(cstudy, t.number)
                    if "source_trial" not in t.user_attrs:  # the queue emptied under us
                        cstudy.tell(t, state=TrialState.FAIL)
                        hb.done(cstudy, t.number)
                        continue
                    self._set_attr(cstudy, t.number, WORKER, self.worker)
                    self._confirm_one(
                        cstudy, cstudy.get_trials(deepcopy=False)[t.number], hb, total
                    )
        finally:
            hb.stop()

    def _enqueue_confirm(self, search: optuna.Study, cstudy: optuna.Study) -> None:
        rows = [r["row"] for r in map(_final, search.get_trials(deepcopy=False)) if r]
        frame = pd.DataFrame([r for r in rows if r["state"] == "complete"])
        chosen = (
            select_confirm(frame, self.suite.confirm.top_k, self.suite.confirm.max_val_gap_pp)
            if len(frame)
            else frame
        )
        present = {t.user_attrs.get("source_trial") for t in cstudy.get_trials(deepcopy=False)}
        names = self.suite.search.arch_names
        strials = search.get_trials(deepcopy=False)
        for _, r in chosen.iterrows():
            if int(r["trial"]) in present:
                continue
            params = {n: _plain(r[f"arch_{n}"]) for n in names}
            params |= {"temperature": float(r["temperature"]), "alpha": float(r["alpha"])}
            if self.suite.search.size is not None:  # the same size solves to the same arch
                params["size"] = float(strials[int(r["trial"])].params["size"])
            cstudy.enqueue_trial(params, user_attrs={"source_trial": int(r["trial"])})
        cstudy.set_user_attr(CONFIRM_ENQUEUED, len(chosen))
        fault_point("write")

    def _confirm_one(self, cstudy: optuna.Study, t: FrozenTrial, hb: Heartbeat, total: int) -> None:
        source = int(t.user_attrs["source_trial"])
        seeds = list(range(self.suite.confirm.seeds))
        done_sources = {
            r["row"]["trial"] for r in map(_final, cstudy.get_trials(deepcopy=False)) if r
        }
        if source in done_sources:  # two workers took the same candidate: keep the first
            row = failed_row(
                self.run_id,
                self.task,
                self.teacher,
                self.suite.student.family,
                arch_of(t.params, self.suite.search, self.suite.student.family),
                TrialConfig(source, float(t.params["temperature"]), float(t.params["alpha"])),
                seeds,
                "confirm",
                "duplicate",
                f"trial {source} was already confirmed",
            )
            self._commit(cstudy, t.number, row, [], {}, "confirm", len(done_sources), total, hb)
            return
        result = self._train([t], seeds, "confirm", None, source={t.number: source})
        ((row, seed_rows),) = result.rows
        if source in result.weights:  # before the record: the record is the commit point
            self._set_attr(cstudy, t.number, WEIGHTS, json.dumps(result.weights[source]))
            fault_point("write")
        self._commit(
            cstudy,
            t.number,
            row,
            seed_rows,
            result.scratch,
            "confirm",
            len(done_sources) + 1,
            total,
            hb,
        )


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _arch_label(family: str, suite: Suite, params: dict[str, Any]) -> str:
    from kdcore import format_arch

    return format_arch(family, arch_of(params, suite.search, family))


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


def nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
