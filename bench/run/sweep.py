"""The run, orchestration only: suite → studies → run folder.

1. **Check before anything is written** (:mod:`bench.run.preflight`): output folders
   writable, the device, every task's data, the teacher files, the storage (connected). A
   problem is an :class:`~bench.errors.InputError` (exit 2) and no run folder is created.
2. **The run folder** (a local run): created (never overwritten) or resumed, and locked
   (``run.lock``: a second process on it is refused). Its study is a journal file inside it.
   With ``--storage URL`` (several hosts) the studies live in the database and the run folder
   is pulled from it at the end (:mod:`bench.run.pull`).
3. **Per task**: the teacher (trained once or loaded; outputs cached once per split), then
   the search and certification phases (:mod:`bench.search`), in this process or in
   ``--workers N`` local processes (:mod:`bench.run.workers`), then one latency pass
   (:mod:`bench.run.timing`). After every committed trial the tables are rebuilt from the
   study.
4. An interrupted run (SIGINT, SIGTERM) leaves its trials' records in the study; ``--resume``
   continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from bench.config.plugins import loaded_plugins
from bench.config.suite import Suite, check_safe_name, suite_from_dict
from bench.durable.rundir import (
    RunLock,
    atomic_write_text,
    check_writable,
    inside,
    new_run_dir,
)
from bench.errors import DataVanished, InputError, is_write_error
from bench.group.transfer import transfer_summary
from bench.records import Manifest, TaskEntry, TeacherSummary
from bench.run.options import RunHooks, RunOptions
from bench.run.preflight import (
    Prepared,
    check_data_unchanged,
    check_teacher_unchanged,
    preflight,
    replay_configs,
    resumable,
    train_device,
)
from bench.run.provenance import CONVENTIONS, git_info, machine_info, package_versions
from bench.run.pull import pull, rows_of_studies, write_students, write_views
from bench.run.timing import ensemble_latency, time_architectures
from bench.search import (
    IdentityMismatch,
    Progress,
    TaskContext,
    TaskWorker,
    run_certify,
    run_search,
)
from bench.study import Key, StorageSpec, journal_path, open_storage, redact, study_name
from bench.study.artifacts import resolve_location
from bench.tasks import TaskData
from bench.teachers import LoadedTeacher, PreparedTeacher, prepare_teacher, teacher_warnings
from bench.threads import AUTO, ThreadPolicy, all_cores

if TYPE_CHECKING:
    from bench.run.workers import Prestarted

__all__ = ["RunInterrupted", "RunStopped", "run_suite"]

log = logging.getLogger(__name__)


class RunInterrupted(Exception):
    """The run was stopped (SIGINT / SIGTERM); its folder is resumable."""

    def __init__(self, run_dir: Path | None, how: str, resume_hint: str) -> None:
        super().__init__(how)
        self.run_dir = run_dir
        self.how = how
        self.resume_hint = resume_hint


class RunStopped(RunInterrupted):
    """A write failed (a full disk, a quota, a read-only or failing disk: ``bench.errors.
    WRITE_ERRNOS``). Writes are atomic, so what was written is intact; the folder resumes
    once the cause is fixed (exit 74, ``EX_IOERR``)."""

    def __init__(self, run_dir: Path | None, cause: OSError, resume_hint: str) -> None:
        super().__init__(run_dir, "write error", resume_hint)
        self.cause = cause


def run_suite(
    suite: Suite | None, options: RunOptions | None = None, hooks: RunHooks | None = None
) -> Path:
    """Run (or resume, or join) a suite with ``options``; return the run folder.

    ``suite`` is None exactly when ``options.resume`` names the run folder to continue (its
    suite comes from its manifest)."""
    opts = options or RunOptions()
    previous: Manifest | None = None
    if opts.resume is not None:
        previous = resumable(opts.resume)
        suite = suite_from_dict(previous.suite)
    elif suite is None:
        raise InputError(
            "The SUITE argument of run must be a suite file unless --resume is given. Got none instead."
        )
    else:
        suite = suite.with_certify_gap(opts.max_gap)
    replay = replay_configs(opts.replay, suite) if opts.replay else None
    url = opts.storage if opts.storage is not None else suite.budget.storage
    resolve_location(suite.budget.artifacts, opts.root)  # a bad setting: exit 2 here
    if opts.study is not None:
        check_safe_name(opts.study, "--study", "the command line")
        if not url:
            raise InputError(
                "The '--study' option needs a shared storage (--storage URL); a local run's "
                f"study is named after its folder. Got --study {opts.study!r} without one."
            )
    check_writable(opts.root, "The results folder (--out)")
    check_writable(opts.cache, "The teacher cache (--cache)")
    if opts.reports_root is not None:
        check_writable(Path(opts.reports_root), "The reports folder (--reports)")
    device = train_device(suite)
    prepared = preflight(suite, opts.cache)  # every task's data and teacher files, validated
    run = _open_run(suite, opts, hooks or RunHooks(), previous, url, device, prepared)
    return run.run_tasks(prepared, previous, replay)


def _open_run(
    suite: Suite,
    opts: RunOptions,
    hooks: RunHooks,
    previous: Manifest | None,
    url: str,
    device: str,
    prepared: Prepared,
) -> _Run:
    """The storage (connected) and, for a local run, the run folder (created or resumed, and
    locked) with its journal; nothing is written before this point."""
    spec = StorageSpec(
        url=url or "",
        heartbeat_interval=suite.budget.heartbeat_interval,
        grace_period=suite.budget.grace_period,
    )
    run_dir: Path | None = None
    lock: RunLock | None = None
    if spec.shared:
        storage = open_storage(spec)  # connected, or a redacted exit-2 error
        base = opts.study or f"{suite.name}-{suite.digest()[:8]}"
        run_id, created = base, datetime.now(UTC).isoformat(timespec="seconds")
    else:
        if previous is not None and opts.resume is not None:
            run_dir = Path(opts.resume)
            for task, _ in prepared:
                check_data_unchanged(previous, task, run_dir)
            run_id, created = previous.run_id, previous.created_utc
        else:
            run_dir, run_id = new_run_dir(opts.root, suite.name)
            created = datetime.now(UTC).isoformat(timespec="seconds")
        lock = RunLock(run_dir).acquire()
        base = run_id
        spec = dataclasses.replace(spec, path=str(journal_path(run_dir)))
        storage = open_storage(spec)
    default_store = run_dir / "artifacts" if run_dir is not None else opts.root / "artifacts" / base
    spec = dataclasses.replace(
        spec, artifacts=resolve_location(suite.budget.artifacts, default_store)
    )
    rounds = list(previous.certify_rounds) if previous is not None else []
    if not rounds and suite.certify.max_gap is not None:
        rounds = [suite.certify.max_gap]
    if opts.certify_gap is not None and opts.certify_gap not in rounds:
        rounds.append(opts.certify_gap)
    manifest = Manifest(
        run_id=run_id,
        status="running",
        suite=_redacted_suite(suite),
        suite_sha256=suite.digest(),
        created_utc=created,
        suite_source=suite.source,
        packages=package_versions(),
        git=git_info(),
        conventions=CONVENTIONS,
        train_device=device,
        tasks=dict(previous.tasks) if previous is not None else {},
        study_storage=spec.describe() if spec.shared else "study.journal",
        study=base,
        mode="shared" if spec.shared else "exclusive",
        workers=opts.workers,
        plugins=loaded_plugins(),
        n_trials=opts.trials if opts.trials is not None else suite.budget.trials,
        certify_rounds=rounds,
    )
    return _Run(suite, opts, hooks, manifest, run_dir, spec, storage, lock)


def _redacted_suite(suite: Suite) -> dict[str, Any]:
    data = suite.to_dict()
    data["budget"]["storage"] = redact(data["budget"]["storage"])
    return data


@dataclass
class _Run:
    """The state of one run shared by its tasks: manifest, storage, views, progress."""

    suite: Suite
    opts: RunOptions
    hooks: RunHooks
    manifest: Manifest
    run_dir: Path | None  # None: a shared study, pulled into a folder at the end
    spec: StorageSpec
    storage: optuna.storages.BaseStorage
    lock: RunLock | None
    started: float = field(default_factory=time.perf_counter)
    refreshed: float = 0.0
    prestarted: Prestarted | None = None  # the next task's workers, started early

    @property
    def train_device(self) -> str:
        return self.manifest.train_device

    def run_tasks(
        self,
        prepared: Prepared,
        previous: Manifest | None,
        replay: dict[str, list[dict[str, Any]]] | None,
    ) -> Path:
        """Every task in turn (:meth:`run_task`), then the run marked complete (a shared run
        pulled into a folder); a signal or a full disk becomes a resumable stop."""
        suite, m = self.suite, self.manifest
        gpu = torch.device(self.train_device) if self.train_device.startswith("cuda") else None
        setting = suite.measure.train_threads
        threads = all_cores() if setting in (0, AUTO) else int(setting)
        m.machine = machine_info(
            setting if setting == AUTO else threads, suite.measure.threads, gpu
        )
        try:
            self.write_manifest()
            for task, loaded in prepared:
                # the teacher's threads ("auto" may have left the last group's count); each
                # student group then follows the policy
                torch.set_num_threads(threads)
                self.run_task(task, loaded, previous, replay, threads)
            m.status = "complete"
            self.publish_manifest()
            if self.run_dir is not None:
                self.write_manifest()
                return self.run_dir
            run_dir, missing = pull(self.spec, m.study, self.opts.root)
            for line in missing:  # other hosts' default stores: pull --artifacts fetches them
                log.warning("kept student not fetched: %s", line)
            return run_dir
        except IdentityMismatch as exc:
            raise InputError(str(exc)) from None
        except KeyboardInterrupt as exc:
            self.mark_interrupted()
            how = type(exc).__name__ if type(exc) is not KeyboardInterrupt else "SIGINT"
            if isinstance(exc, DataVanished):
                how = str(exc)
            raise RunInterrupted(self.run_dir, how, self.resume_hint()) from None
        except OSError as exc:
            if not is_write_error(exc):
                raise
            with contextlib.suppress(OSError):  # the disk may still be full
                self.mark_interrupted()
            raise RunStopped(self.run_dir, exc, self.resume_hint()) from None
        finally:
            self.release_workers()
            if self.lock is not None:
                self.lock.release()

    def run_task(
        self,
        task: TaskData,
        loaded: LoadedTeacher | None,
        previous: Manifest | None,
        replay: dict[str, list[dict[str, Any]]] | None,
        threads: int,
    ) -> None:
        """One task: its teacher, search and certification (here or in local workers), one
        latency pass; the manifest written after it."""
        t0 = time.perf_counter()
        run = self.task_worker(task, loaded, previous, replay)
        t1 = time.perf_counter()
        log.info("[%s] teacher ready and measured in %.1f s", task.name, t1 - t0)
        if self.opts.workers > 1:
            from bench.run.workers import run_workers, worker_gpus

            ready = self.prestarted.take() if self.prestarted is not None else []
            self.prestarted = None
            gpus = worker_gpus(self.suite.measure.device)
            run_workers(
                run, self.opts.workers, threads, self.opts.cache, self.progress, ready, gpus
            )
        else:
            run_search(run)
            run_certify(run)
        t2 = time.perf_counter()
        log.info("[%s] search and certification in %.1f s", task.name, t2 - t1)
        # the ensemble, then each architecture: one pass on one quiet host, after the search
        timed = time_architectures(run)
        ens = ensemble_latency(run)
        self.refresh(force=True)
        t3 = time.perf_counter()
        log.info("[%s] %d architectures timed in %.1f s", task.name, timed, t3 - t2)
        self.manifest.tasks[task.name] = dataclasses.replace(
            self.manifest.tasks[task.name],
            ensemble_latency=ens["detail"],
            ensemble_columns=ens["columns"],
            runtimes=ens.get("runtimes", {}),
            timings_s={
                "teacher": round(t1 - t0, 3),
                "search_and_certify": round(t2 - t1, 3),
                "latency": round(t3 - t2, 3),
                "architectures_timed": timed,
            },
        )
        self.write_manifest()

    def mark_interrupted(self) -> None:
        if self.run_dir is not None and self.manifest.status == "running":
            self.manifest.status = "interrupted"
            self.write_manifest()

    def resume_hint(self) -> str:
        if not self.spec.shared:
            return f"kdbench run --resume {self.run_dir}"
        return f"kdbench run SUITE --storage URL --study {self.manifest.study}"

    def prestart(self) -> None:
        """Start the local workers now (once per task; see bench.run.workers.Prestarted)."""
        if self.opts.workers > 1 and self.prestarted is None:
            from bench.run.workers import Prestarted, worker_gpus

            gpus = worker_gpus(self.suite.measure.device)
            self.prestarted = Prestarted(self.opts.workers, gpus)

    def release_workers(self) -> None:
        if self.prestarted is not None:
            self.prestarted.release()
            self.prestarted = None

    def write_manifest(self) -> None:
        if self.run_dir is None:
            return
        self.manifest.updated_utc = datetime.now(UTC).isoformat(timespec="seconds")
        self.manifest.write(self.run_dir)

    def task_manifest(self, task: str) -> str:
        """The manifest with ``task``'s entry only, as JSON: the copy its study holds."""
        data = self.manifest.to_dict()
        data["tasks"] = {task: data["tasks"][task]}
        return json.dumps(data)

    def publish_manifest(self) -> None:
        """Each task study's copy of the manifest (what ``pull`` and optuna-dashboard read),
        brought up to date: it says ``complete`` once the run is."""
        names = {s.study_name for s in self.storage.get_all_studies()}
        for task in self.manifest.tasks:
            name = study_name(self.manifest.study, task)
            if name not in names:
                continue
            study_id = self.storage.get_study_id_from_name(name)
            self.storage.set_study_user_attr(study_id, Key.MANIFEST, self.task_manifest(task))

    def refresh(self, force: bool = False) -> None:
        """Rebuild the run folder's tables from the study (local runs): after every trial with
        one worker; with several, at most every 30 s until the end (they are views of the
        study, and rebuilding them while workers train was measured to slow training by
        ~15 %)."""
        if self.run_dir is None:
            return
        now = time.perf_counter()
        if not force and self.opts.workers > 1 and now - self.refreshed < 30.0:
            return
        self.refreshed = now
        tasks = [t.name for t in self.suite.tasks]
        rows, seeds = rows_of_studies(
            self.storage, self.manifest.study, tasks, self.manifest.run_id
        )
        write_views(self.run_dir, rows, seeds)
        write_students(self.run_dir, self.storage, self.manifest.study, tasks)

    def progress(self, p: Progress) -> None:
        self.refresh()
        if self.hooks.on_progress is not None:
            self.hooks.on_progress(p)

    def _teacher(self, task: TaskData, loaded: LoadedTeacher | None) -> PreparedTeacher:
        """The task's teacher, prepared; the local workers start as its training ends."""
        suite = self.suite
        t0 = time.perf_counter()
        hook = self.hooks.on_teacher_epoch
        # a streamed task's workers start once its outputs are on disk (not computed twice)
        streamed = getattr(task, "streamed", False)
        if loaded is not None and not streamed:  # nothing to train: the workers start at once
            self.prestart()
            if self.hooks.on_message is not None:
                what = (
                    "reusing the cached teacher (same data and [teacher] settings; delete the "
                    "folder or pass another --cache to train it again)"
                    if suite.teacher.source == "train"
                    else "the teacher from "
                    + {
                        "logits": "offline logits",
                        "checkpoints": "member checkpoints",
                        "checkpoint": "an ensemble file",
                        "hf": "Hugging Face folders",
                        "onnx": "ONNX files",
                    }[suite.teacher.source]
                )
                self.hooks.on_message(
                    f"[{task.name}] {what}: {loaded.source}; computing its outputs on every split"
                )

        def on_epoch(e: int, n: int) -> None:
            if hook is not None:
                hook(task.name, e, n, suite.teacher.members)
            # The last epoch of the whole teacher (a specialist system trains its specialists
            # after the generalist's epochs): start the workers (bench.run.workers.Prestarted).
            if e == n and suite.teacher.kind != "specialists" and not streamed:
                self.prestart()

        teacher = prepare_teacher(
            task, suite.teacher, self.opts.cache, self.train_device, loaded, on_epoch=on_epoch
        )
        self.prestart()
        log.info("[%s] teacher prepared in %.1f s", task.name, time.perf_counter() - t0)
        return teacher

    def _checkpoints(self, task: TaskData) -> str:
        """Where a trial on the streamed path checkpoints its members every epoch: the run
        folder (``--resume`` continues a killed trial from its last epoch), or for a shared
        run without one the cache, per run id."""
        if self.run_dir is not None:
            return str(self.run_dir / "checkpoints" / task.name)
        return str(self.opts.cache / "checkpoints" / self.manifest.run_id / task.name)

    def _splits_file(self, task: TaskData) -> str:
        """A streamed task's split (ids, split, label), written once into the run folder."""
        if not getattr(task, "streamed", False) or self.run_dir is None:
            return ""
        name = f"splits-{task.name}.csv"
        path = self.run_dir / name
        if not path.exists():
            atomic_write_text(path, task.rows_csv())  # type: ignore[attr-defined]
        return name

    def _tokenizer_file(self, task: TaskData) -> str:
        """A text task's tokenizer, written once into the run folder (export ships it)."""
        if not task.tokenizer_json or self.run_dir is None:
            return ""
        name = f"tokenizer-{task.name}.json"
        path = inside(self.run_dir, name)
        if not path.is_file():
            atomic_write_text(path, task.tokenizer_json)
        return name

    def task_worker(
        self,
        task: TaskData,
        loaded: LoadedTeacher | None,
        previous: Manifest | None,
        replay: dict[str, list[dict[str, Any]]] | None,
    ) -> TaskWorker:
        """The task's teacher prepared, the manifest's task entry written, and this process's
        :class:`~bench.search.TaskWorker` on the task's studies (latency, the ensemble's too,
        is timed after the search)."""
        suite = self.suite.for_task(task.data_params)
        teacher = self._teacher(task, loaded)
        if previous is not None and self.run_dir is not None:
            check_teacher_unchanged(previous, task.name, teacher, self.run_dir)
        ctx = TaskContext(
            suite=suite,
            task=task,
            teacher=teacher,
            run_id=self.manifest.run_id,
            base=self.manifest.study,
            spec=self.spec,
            train_device=self.train_device,
            n_trials=self.manifest.n_trials,
            replay=(replay or {}).get(task.name) if replay is not None else None,
            threads=ThreadPolicy(suite.measure.train_threads, all_cores()),
            certify_rounds=tuple(self.manifest.certify_rounds),
            checkpoints=self._checkpoints(task),
        )
        run = TaskWorker(
            ctx,
            self.storage,
            mode="shared" if self.spec.shared else "exclusive",
            on_commit=self.progress,
            started=self.started,
        )
        study = run.study("search")
        self.manifest.tasks[task.name] = TaskEntry(
            config=json.loads(json.dumps(dataclasses.asdict(task.config), default=list)),
            sizes=task.sizes(),
            num_classes=task.num_classes,
            class_names=tuple(task.class_names),
            input_shape=tuple(task.input_shape),
            data_sha256=task.data_sha256(),
            data_source=task.source,
            preprocessing=task.preprocessing(),
            normalization=task.normalization,
            input_kind=task.input_kind,
            data_params=dict(task.data_params),
            tokenizer=self._tokenizer_file(task),
            splits=self._splits_file(task),
            transfer=transfer_summary(task, suite.transfer),
            teacher=TeacherSummary.from_dict(teacher.summary()),
            warnings=tuple(teacher_warnings(task, suite.teacher, teacher)),
        )
        self.write_manifest()
        if Key.MANIFEST not in study.user_attrs:
            study.set_user_attr(Key.MANIFEST, self.task_manifest(task.name))
        return run
