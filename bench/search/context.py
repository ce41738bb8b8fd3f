"""What one task's search needs, built once: :class:`TaskContext` (frozen, the same in the
supervising process and in every worker) and :class:`TaskWorker` (one process's handle on the
task's studies: the storage, its recovery mode, who it is, whom it tells about progress).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from bench.config.suite import RECIPE_SEARCH, Suite, suite_from_dict
from bench.durable.faults import fault_point
from bench.group.plan import GroupSpec
from bench.group.scratch import ScratchStore
from bench.search.space import Distribution, Sizer, trial_arch, trial_recipe
from bench.study import Heartbeat, Key, Ledger, StorageSpec, decode_record, make_sampler, study_name
from bench.tasks import TaskData
from bench.teachers import PreparedTeacher
from bench.threads import ThreadPolicy

__all__ = [
    "IdentityMismatch",
    "Progress",
    "TaskContext",
    "TaskWorker",
    "certify_phase",
    "worker_id",
]


def certify_phase(round_: int) -> str:
    """The study suffix of certification round ``round_`` (``certify``, ``certify-1``, …)."""
    return "certify" if round_ == 0 else f"certify-{round_}"


def worker_id() -> str:
    """``host:pid``: who trained a trial (recorded on every trial and row)."""
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


@dataclass(frozen=True)
class TaskContext:
    """One task of a run: the suite, the data, the prepared teacher, the study's name and
    budget. Built once by the supervising process; a worker process rebuilds the same one
    from its :class:`bench.run.workers.WorkerJob`."""

    suite: Suite
    task: TaskData
    teacher: PreparedTeacher
    run_id: str
    base: str  # the studies' base name: <base>:<task>[:certify[-N]]
    spec: StorageSpec
    train_device: str
    n_trials: int
    replay: list[dict[str, Any]] | None = None
    threads: ThreadPolicy = field(default_factory=ThreadPolicy)
    certify_rounds: tuple[float, ...] = ()  # each certification round's tolerance (a fraction)
    checkpoints: str = ""  # where a streamed trial's members checkpoint every epoch ("": nowhere)

    @property
    def gpu(self) -> torch.device | None:
        return torch.device(self.train_device) if self.train_device.startswith("cuda") else None

    @property
    def identity(self) -> dict[str, str]:
        """What a study must have been created from to be joined (checked by :meth:`study`)."""
        return {
            "suite_sha256": self.suite.digest(),
            "data_sha256": self.task.data_sha256(),
            "teacher_outputs_sha256": self.teacher.outputs_sha256,
        }

    @property
    def pareto(self) -> bool:
        return self.suite.budget.objective == "pareto"

    @functools.cached_property
    def sizer(self) -> Sizer:
        return Sizer(
            self.suite.search,
            self.suite.student.family,
            self.task.input_shape,
            self.task.num_classes,
            self.teacher.params,
        )

    def study_name(self, phase: str = "search") -> str:
        return study_name(self.base, self.task.name, phase)

    def group_spec(
        self,
        trial: optuna.Trial | FrozenTrial,
        seeds: list[int],
        phase: str,
        level: float | None = None,
    ) -> GroupSpec:
        """The training group of ``trial`` (its architecture and searched recipe values);
        ``level``: the one-sided level of a certification round's bounds."""
        family = self.suite.student.family
        return GroupSpec(
            run_id=self.run_id,
            task=self.task,
            teacher=self.teacher,
            family=family,
            arch=trial_arch(trial, self.suite.search, family),
            seeds=tuple(seeds),
            phase=phase,
            recipe=trial_recipe(trial, self.suite.search),
            level=self.suite.certify.alpha if level is None else level,
            forms=self.suite.ship.forms if phase.startswith("certify") else ("fp32",),
            calibration_rows=self.suite.ship.calibration_rows,
            checkpoints=self.checkpoints,
        )

    def portable(self) -> dict[str, Any]:
        """Everything but the task's tensors and the teacher, as JSON-ready values: what a
        worker process receives to rebuild this context (:meth:`from_portable`) around the
        task and teacher it loads itself. The suite is unredacted: the worker connects with
        its storage URL (sent on a pipe, never written to disk)."""
        return {
            "suite": self.suite.to_dict(),
            "suite_source": self.suite.source,
            "task": self.task.name,
            "run_id": self.run_id,
            "base": self.base,
            "spec": asdict(self.spec),
            "train_device": self.train_device,
            "n_trials": self.n_trials,
            "replay": self.replay,
            "threads": asdict(self.threads),
            "certify_rounds": list(self.certify_rounds),
            "checkpoints": self.checkpoints,
        }

    @staticmethod
    def portable_suite(data: dict[str, Any]) -> Suite:
        """The suite of a :meth:`portable` context (with the file it came from)."""
        return dataclasses.replace(suite_from_dict(data["suite"]), source=data["suite_source"])

    @classmethod
    def from_portable(
        cls, data: dict[str, Any], suite: Suite, task: TaskData, teacher: PreparedTeacher
    ) -> TaskContext:
        """The context :meth:`portable` described, around ``suite`` (its
        :meth:`portable_suite`), the task and the teacher this process loaded."""
        return cls(
            suite=suite,
            task=task,
            teacher=teacher,
            run_id=data["run_id"],
            base=data["base"],
            spec=StorageSpec(**data["spec"]),
            train_device=data["train_device"],
            n_trials=int(data["n_trials"]),
            replay=data["replay"],
            threads=ThreadPolicy(**data["threads"]),
            certify_rounds=tuple(float(g) for g in data["certify_rounds"]),
            checkpoints=str(data.get("checkpoints", "")),
        )


@dataclass
class TaskWorker:
    """One process's handle on a task's studies.

    ``mode`` says whose orphaned trials this process may recover (:mod:`bench.search.recovery`):
    ``exclusive`` (a locked local run folder), ``shared`` (an RDB with heartbeats) or
    ``cooperative`` (local worker processes; the supervisor recovers)."""

    ctx: TaskContext
    storage: optuna.storages.BaseStorage
    mode: str
    on_commit: Callable[[Progress], None] | None = None
    worker: str = field(default_factory=worker_id)
    started: float = field(default_factory=time.perf_counter)

    @functools.cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.storage)

    def _directions(self, phase: str) -> dict[str, Any]:
        b = self.ctx.suite.budget
        if phase == "search" and b.objective == "pareto":
            return {"directions": ["maximize", "minimize"]}  # val accuracy, FLOPs
        kwargs: dict[str, Any] = {"direction": "maximize"}
        if phase == "search" and b.prune:
            kwargs["pruner"] = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
        return kwargs

    def study(self, phase: str = "search") -> optuna.Study:
        """Join (or create) this task's study of ``phase``; check the search study's identity."""
        ctx = self.ctx
        name = ctx.study_name(phase)
        sampler = make_sampler(
            ctx.suite.budget.sampler if phase == "search" else "random",
            ctx.suite.budget.sampler_seed,
        )
        study = optuna.create_study(
            storage=self.storage,
            sampler=sampler,
            study_name=name,
            load_if_exists=True,
            **self._directions(phase),
        )
        names = ["val_acc", "flops"] if phase == "search" and ctx.pareto else ["val_acc"]
        if study.metric_names != names:
            with warnings.catch_warnings():  # experimental in Optuna 5; the dashboard reads it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)
        if phase == "search":
            identity = ctx.identity
            stored = study.user_attrs.get(Key.IDENTITY)
            if stored is None:
                study.set_user_attr(Key.IDENTITY, identity)
                stored = optuna.load_study(study_name=name, storage=self.storage).user_attrs.get(
                    Key.IDENTITY
                )
            if not isinstance(stored, dict) or stored != identity:
                stored = stored if isinstance(stored, dict) else {}
                diff = sorted(k for k in identity if stored.get(k) != identity.get(k))
                raise IdentityMismatch(
                    f"The study {name!r} must have been created by this suite with the same data "
                    f"and teacher. It differs in: {', '.join(diff)}."
                )
        return study

    def existing_studies(self) -> list[optuna.Study]:
        """This task's search and certification studies, those that exist in the storage."""
        search = self.ctx.study_name()
        names = sorted(
            s.study_name
            for s in self.storage.get_all_studies()
            if s.study_name == search or s.study_name.startswith(search + ":certify")
        )
        return [optuna.load_study(study_name=name, storage=self.storage) for name in names]

    def ask(self, study: optuna.Study, dists: dict[str, Distribution]) -> optuna.Trial:
        """``study.ask`` plus the derived architecture parameter (capacity axis)."""
        fixed: dict[str, optuna.distributions.BaseDistribution] = dict(dists)
        t = study.ask(fixed)
        self.ctx.sizer.complete(t)
        return t

    def scratch_store(self) -> ScratchStore:
        """Scratch baselines recorded by any trial of this task (search and certification)."""
        store = ScratchStore()
        for study in self.existing_studies():
            for t in study.get_trials(deepcopy=False):
                record = decode_record(t)
                if record is not None:
                    store.data.update(record.get("scratch", {}))
        return store

    def commit(
        self,
        study: optuna.Study,
        number: int,
        row: dict[str, Any],
        seed_rows: list[dict[str, Any]],
        scratch: dict[str, dict[str, float]],
        phase: str,
        progress: tuple[int, int],
        hb: Heartbeat,
    ) -> None:
        """Commit trial ``number`` (:meth:`bench.study.Ledger.commit`), then report progress
        (``progress``: trials done, of how many)."""
        frozen = study.get_trials(deepcopy=False)[number]
        retry_of = (frozen.system_attrs.get("retry_history") or [None])[0]
        # the trial's own recipe: the [student] one with the keys [search] sampled
        st = self.ctx.suite.student
        st = st.with_values(
            {n: float(frozen.params[n]) for n in RECIPE_SEARCH if n in frozen.params}
        )
        row = dict(row, **{n: float(getattr(st, n)) for n in RECIPE_SEARCH})
        recipe = f"{st.recipe().describe()}, lr {st.lr:g}, weight decay {st.weight_decay:g}"
        augment = self.ctx.suite.augment.describe()
        row = dict(row, worker=self.worker, retry_of=retry_of, recipe=recipe, augment=augment)
        self.ledger.commit(
            study, number, row, seed_rows, scratch, phase == "search" and self.ctx.pareto
        )
        hb.done(study, number)
        fault_point("write")
        if self.on_commit is not None:
            complete = [r for r in self.ledger.final_rows(study) if r["state"] == "complete"]
            # "Best so far" is judged on validation accuracy, like the study itself.
            best = max(complete, key=lambda r: r["student_val_acc"]) if complete else None
            done, total = progress
            self.on_commit(
                Progress(
                    self.ctx.task.name,
                    done,
                    total,
                    time.perf_counter() - self.started,
                    row,
                    best,
                    phase,
                )
            )
        fault_point("trial")
