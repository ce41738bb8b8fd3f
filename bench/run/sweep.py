"""The run, orchestration only: suite → studies → run folder.

1. **Validate before anything is written**: output folders writable, the device, every
   task's data, the teacher files, the storage (connected). A problem is an
   :class:`~bench.errors.InputError` (exit 2) and no run folder is created.
2. **The run folder** (a local run): created (never overwritten) or resumed, and locked
   (``run.lock``: a second process on it is refused). Its study is a journal file inside it.
   With ``--storage URL`` (several hosts) the studies live in the database and the run folder
   is pulled from it at the end (``bench.run.pull``).
3. **Per task**: the teacher (trained once or loaded; outputs cached once per split), then
   the search and certification phases (:mod:`bench.search`), in this process or in ``--workers N``
   local processes (:mod:`bench.run.workers`). After every committed trial the tables are rebuilt
   from the study.
4. An interrupted run (SIGINT, SIGTERM) leaves its trials' records in the study; ``--resume``
   continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from bench.config.plugins import loaded_plugins
from bench.config.suite import Suite, check_safe_name, suite_from_dict
from bench.durable.rundir import RunLock, check_writable, inside
from bench.errors import InputError, is_write_error
from bench.group.augment import channel_scaled, check_augment
from bench.group.transfer import apply_transfer, transfer_summary
from bench.records import Manifest, read_trials, require_run_dir
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
from bench.tasks import TaskData, load_task
from bench.teachers import (
    LoadedTeacher,
    PreparedTeacher,
    load_teacher,
    prepare_teacher,
    teacher_warnings,
)
from bench.teachers.sanity import check_teacher_labels
from bench.threads import AUTO, ThreadPolicy, all_cores

if TYPE_CHECKING:
    from bench.run.workers import Prestarted
from kdcore import select_device

__all__ = ["RunInterrupted", "RunStopped", "new_run_id", "run_suite"]

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


def new_run_id(suite_name: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}_{suite_name}"


# ---------------------------------------------------------------------- preflight
def _select_train_device(suite: Suite) -> str:
    try:
        return str(select_device(suite.measure.device))
    except RuntimeError as exc:
        raise InputError(
            f"The 'device' parameter of [measure] must name an available device. Got "
            f"{suite.measure.device!r} instead ({exc})."
        ) from None


def _preflight(suite: Suite, cache_dir: Path) -> list[tuple[TaskData, LoadedTeacher | None]]:
    """Load and validate every task's data and teacher files; write nothing."""
    out = []
    for cfg in suite.tasks:
        task = channel_scaled(load_task(cfg), suite)
        task = apply_transfer(task, suite.transfer, suite.teacher)
        check_augment(task, suite)
        loaded = load_teacher(task, suite.teacher, cache_dir)
        if loaded is not None and suite.teacher.source != "train":  # the user's own files
            check_teacher_labels(
                task, suite.teacher, loaded.source, loaded.val_outputs(task, suite.teacher.combine)
            )
        out.append((task, loaded))
    return out


def _new_run_dir(out_root: Path, suite_name: str) -> tuple[Path, str]:
    out_root.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(suite_name)
    run_dir = inside(out_root, run_id)
    suffix = 1
    while True:
        try:
            run_dir.mkdir(parents=False, exist_ok=False)  # never overwrite a run folder
            return run_dir, run_id
        except FileExistsError:
            suffix += 1
            run_id = f"{new_run_id(suite_name)}-{suffix}"
            run_dir = inside(out_root, run_id)


def _check_unchanged(previous: Manifest, task: TaskData, run_dir: Path) -> None:
    """--resume refuses a run whose data changed since it started."""
    before = previous.tasks.get(task.name, {}).get("data_sha256")
    now = task.data_sha256()
    if before is not None and before != now:
        raise InputError(
            f"The data of task '{task.name}' must be unchanged to resume {run_dir}. Got sha256 "
            f"{now[:12]}… instead of {before[:12]}… (the data file changed); start a new run."
        )


def _check_teacher_unchanged(
    previous: Manifest, task: str, teacher: PreparedTeacher, run_dir: Path
) -> None:
    before = previous.tasks.get(task, {}).get("teacher", {}).get("outputs_sha256")
    if before is not None and before != teacher.outputs_sha256:
        raise InputError(
            f"The teacher of task '{task}' must be unchanged to resume {run_dir}. Its outputs now "
            f"hash to {teacher.outputs_sha256[:12]}… instead of {before[:12]}… (the teacher files "
            "or the cached ensemble changed); start a new run."
        )


def _replay_configs(run_dir: Path, recipe: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Per task, the search configurations of the run to replay, as params to enqueue (with
    the recipe keys the replaying suite searches, ``recipe``)."""
    require_run_dir(run_dir, "The '--replay' option")
    trials = read_trials(run_dir)
    search = trials[(trials["phase"] == "search") & (trials["state"] != "duplicate")]
    search = search.sort_values("trial")
    arch_cols = [c for c in search.columns if c.startswith("arch_")]
    out: dict[str, list[dict[str, Any]]] = {}
    for _, r in search.iterrows():
        params = {c.removeprefix("arch_"): _plain(r[c]) for c in arch_cols if r[c] == r[c]}
        params |= {"temperature": float(r["temperature"]), "alpha": float(r["alpha"])}
        params |= {n: float(r[n]) for n in recipe if n in r and r[n] == r[n]}
        out.setdefault(str(r["task"]), []).append(params)
    return out


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


# ---------------------------------------------------------------------- the run
def run_suite(
    suite: Suite | None,
    *,
    out_root: Path = Path("results"),
    trials: int | None = None,
    resume: Path | None = None,
    replay: Path | None = None,
    cache_dir: Path | None = None,
    reports_root: Path | None = None,
    storage: str | None = None,
    study: str | None = None,
    workers: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    on_teacher_epoch: Callable[[str, int, int, int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    max_gap_pp: float | None = None,
    certify_gap_pp: float | None = None,
) -> Path:
    """Run (or resume, or join) a suite; return the run folder.

    ``max_gap_pp``: the run's --max-gap, the tolerance certified when the suite's
    ``[certify] max_gap_pp`` is not given (else 0.5 pp). ``certify_gap_pp`` (with ``resume``):
    add a certification round at this tolerance (``kdbench certify``).

    ``storage``: an RDB URL (PostgreSQL): join or create the study ``study`` (default: the
    suite name and a short hash of the suite) there; any number of such workers cooperate.
    ``workers``: local processes sharing the study (threads divided between them).
    ``replay``: a run folder whose search configurations this run evaluates instead of
    sampling. ``cache_dir``: trained teachers (default ``<out_root>/teachers``).
    ``reports_root``: checked writable up front.
    """
    if replay is not None and resume is not None:
        raise InputError(
            "The '--replay' option must not be combined with --resume. Got both instead."
        )
    if workers < 1:
        raise InputError(f"The '--workers' option must be an int >= 1. Got {workers} instead.")
    replay_configs = (
        _replay_configs(Path(replay), suite.search.recipe_names)
        if replay is not None and suite is not None
        else None
    )
    previous: Manifest | None = None
    if resume is not None:
        previous = _resumable(resume)
        suite, out_root = suite_from_dict(previous.suite), Path(resume).parent
    elif suite is None:
        raise InputError(
            "The SUITE argument of run must be a suite file unless --resume is given. Got none instead."
        )
    else:
        suite = suite.with_certify_gap(max_gap_pp)
    url = storage if storage is not None else suite.budget.storage
    resolve_location(suite.budget.artifacts, Path(out_root))  # a bad setting: exit 2 here
    if study is not None:
        check_safe_name(study, "--study", "the command line")
        if not url:
            raise InputError(
                "The '--study' option needs a shared storage (--storage URL); a local run's "
                f"study is named after its folder. Got --study {study!r} without one."
            )
    cache = Path(cache_dir) if cache_dir is not None else Path(out_root) / "teachers"
    check_writable(Path(out_root), "The results folder (--out)")
    check_writable(cache, "The teacher cache (--cache)")
    if reports_root is not None:
        check_writable(Path(reports_root), "The reports folder (--reports)")
    train_device = _select_train_device(suite)
    prepared = _preflight(suite, cache)  # every task's data and teacher files, validated
    ctx = _open_run(
        suite, Path(out_root), Path(resume) if resume else None, previous, url, study, prepared
    )
    rounds = ctx.manifest.certify_rounds
    if certify_gap_pp is not None and float(certify_gap_pp) not in rounds:
        rounds.append(float(certify_gap_pp))
    ctx.cache, ctx.train_device, ctx.workers = cache, train_device, workers
    ctx.n_trials = trials if trials is not None else suite.budget.trials
    ctx.on_progress, ctx.on_teacher_epoch = on_progress, on_teacher_epoch
    ctx.on_message = on_message
    return _run_tasks(ctx, prepared, previous, replay_configs)


def _resumable(resume: Path) -> Manifest:
    run_dir = require_run_dir(resume, "The RUN_DIR argument of --resume")
    previous = Manifest.read(run_dir)
    if previous.mode == "shared":
        raise InputError(
            f"The run {run_dir} must be a local run to --resume it. Its study lives on "
            f"{previous.study_storage}: rejoin it with `kdbench run SUITE --storage URL "
            f"--study {previous.study}` (the password is never stored)."
        )
    return previous


def _open_run(
    suite: Suite,
    out_root: Path,
    run_dir: Path | None,
    previous: Manifest | None,
    url: str,
    study: str | None,
    prepared: list[tuple[TaskData, LoadedTeacher | None]],
) -> _Run:
    """The storage (connected) and, for a local run, the run folder (created or resumed, and
    locked) with its journal; nothing is written before this point."""
    spec = StorageSpec(
        url=url or "",
        heartbeat_interval=suite.budget.heartbeat_interval,
        grace_period=suite.budget.grace_period,
    )
    lock: RunLock | None = None
    if spec.shared:
        storage_obj = open_storage(spec)  # connected, or a redacted exit-2 error
        base = study or f"{suite.name}-{suite.digest()[:8]}"
        run_id, created = base, datetime.now(UTC).isoformat(timespec="seconds")
    else:
        if previous is not None and run_dir is not None:
            for task, _ in prepared:
                _check_unchanged(previous, task, run_dir)
            run_id, created = previous.run_id, previous.created_utc
        else:
            run_dir, run_id = _new_run_dir(out_root, suite.name)
            created = datetime.now(UTC).isoformat(timespec="seconds")
        lock = RunLock(run_dir).acquire()
        base = run_id
        spec = replace(spec, path=str(journal_path(run_dir)))
        storage_obj = open_storage(spec)
    default_store = run_dir / "artifacts" if run_dir is not None else out_root / "artifacts" / base
    spec = replace(spec, artifacts=resolve_location(suite.budget.artifacts, default_store))
    ctx = _Run(suite, run_dir, spec, storage_obj, out_root, lock)
    ctx.manifest = Manifest(
        run_id=run_id,
        status="running",
        suite=_redacted_suite(suite),
        suite_sha256=suite.digest(),
        created_utc=created,
        suite_source=suite.source,
        packages=package_versions(),
        git=git_info(),
        conventions=CONVENTIONS,
        tasks=dict(previous.tasks) if previous is not None else {},
        study_storage=spec.describe() if spec.shared else "study.journal",
        study=base,
        mode="shared" if spec.shared else "exclusive",
        plugins=loaded_plugins(),
        certify_rounds=list(previous.certify_rounds) if previous is not None else [],
    )
    if not ctx.manifest.certify_rounds and suite.certify.max_gap_pp is not None:
        ctx.manifest.certify_rounds = [float(suite.certify.max_gap_pp)]
    return ctx


def _run_tasks(
    ctx: _Run,
    prepared: list[tuple[TaskData, LoadedTeacher | None]],
    previous: Manifest | None,
    replay: dict[str, list[dict[str, Any]]] | None,
) -> Path:
    """Every task's teacher, search, certification and latency; the manifest after each step."""
    suite, m = ctx.suite, ctx.manifest
    gpu = torch.device(ctx.train_device) if ctx.train_device.startswith("cuda") else None
    setting = suite.measure.train_threads
    threads = all_cores() if setting in (0, AUTO) else int(setting)
    torch.set_num_threads(threads)  # the teacher; each student group then follows the policy
    m.machine = machine_info(setting if setting == AUTO else threads, suite.measure.threads, gpu)
    m.train_device, m.workers, m.n_trials = ctx.train_device, ctx.workers, ctx.n_trials
    try:
        ctx.write_manifest()
        for task, loaded in prepared:
            torch.set_num_threads(threads)  # "auto" may have left the last group's count
            t0 = time.perf_counter()
            run = ctx.task_worker(task, loaded, previous, replay)
            t1 = time.perf_counter()
            log.info("[%s] teacher ready and measured in %.1f s", task.name, t1 - t0)
            if ctx.workers > 1:
                from bench.run.workers import run_workers

                ready = ctx.prestarted.take() if ctx.prestarted is not None else []
                ctx.prestarted = None
                run_workers(run, ctx.workers, threads, ctx.cache, ctx.progress, ready)
            else:
                run_search(run)
                run_certify(run)
            t2 = time.perf_counter()
            log.info("[%s] search and certification in %.1f s", task.name, t2 - t1)
            # the ensemble, then each architecture: one pass on one quiet host, after the search
            timed = time_architectures(run)
            ens = ensemble_latency(run)
            m.tasks[task.name]["ensemble_latency"] = ens["detail"]
            m.tasks[task.name]["ensemble_columns"] = ens["columns"]
            m.tasks[task.name]["runtimes"] = ens.get("runtimes", {})
            ctx.refresh(force=True)
            t3 = time.perf_counter()
            log.info("[%s] %d architectures timed in %.1f s", task.name, timed, t3 - t2)
            m.tasks[task.name]["timings_s"] = {
                "teacher": round(t1 - t0, 3),
                "search_and_certify": round(t2 - t1, 3),
                "latency": round(t3 - t2, 3),
                "architectures_timed": timed,
            }
            ctx.write_manifest()
        m.status = "complete"
        ctx.publish_manifest()
        if ctx.run_dir is not None:
            ctx.write_manifest()
            return ctx.run_dir
        run_dir, missing = pull(ctx.spec, m.study, ctx.out_root)
        for line in missing:  # other hosts' default stores: pull --artifacts fetches them
            log.warning("kept student not fetched: %s", line)
        return run_dir
    except IdentityMismatch as exc:
        raise InputError(str(exc)) from None
    except KeyboardInterrupt as exc:
        if ctx.run_dir is not None and m.status == "running":
            m.status = "interrupted"
            ctx.write_manifest()
        how = type(exc).__name__ if type(exc) is not KeyboardInterrupt else "SIGINT"
        raise RunInterrupted(ctx.run_dir, how, _resume_hint(ctx, m)) from None
    except OSError as exc:
        if not is_write_error(exc):
            raise
        if ctx.run_dir is not None and m.status == "running":
            m.status = "interrupted"
            with contextlib.suppress(OSError):  # the disk may still be full
                ctx.write_manifest()
        raise RunStopped(ctx.run_dir, exc, _resume_hint(ctx, m)) from None
    finally:
        ctx.release_workers()
        if ctx.lock is not None:
            ctx.lock.release()


def _resume_hint(ctx: _Run, m: Manifest) -> str:
    if not ctx.spec.shared:
        return f"kdbench run --resume {ctx.run_dir}"
    return f"kdbench run SUITE --storage URL --study {m.study}"


def _redacted_suite(suite: Suite) -> dict[str, Any]:
    data = suite.to_dict()
    data["budget"]["storage"] = redact(data["budget"]["storage"])
    return data


class _Run:
    """The state of one run shared by its tasks: manifest, storage, views, progress."""

    def __init__(
        self,
        suite: Suite,
        run_dir: Path | None,
        spec: StorageSpec,
        storage: optuna.storages.BaseStorage,
        out_root: Path,
        lock: RunLock | None,
    ) -> None:
        self.suite = suite
        self.run_dir = run_dir
        self.spec = spec
        self.storage = storage
        self.out_root = out_root
        self.lock = lock
        self.manifest: Manifest
        self.cache = out_root / "teachers"
        self.train_device = "cpu"
        self.n_trials = suite.budget.trials
        self.on_progress: Callable[[Progress], None] | None = None
        self.on_teacher_epoch: Callable[[str, int, int, int], None] | None = None
        self.on_message: Callable[[str], None] | None = None  # one line for the user
        self.started = time.perf_counter()
        self._refreshed = 0.0
        self.workers = 1
        self.prestarted: Prestarted | None = None  # the next task's workers, started early

    def prestart(self) -> None:
        """Start the local workers now (once per task; see bench.run.workers.Prestarted)."""
        if self.workers > 1 and self.prestarted is None:
            from bench.run.workers import Prestarted

            self.prestarted = Prestarted(self.workers)

    def release_workers(self) -> None:
        if self.prestarted is not None:
            self.prestarted.release()
            self.prestarted = None

    def write_manifest(self) -> None:
        if self.run_dir is None:
            return
        self.manifest.updated_utc = datetime.now(UTC).isoformat(timespec="seconds")
        self.manifest.write(self.run_dir)

    def publish_manifest(self) -> None:
        """Each task study's copy of the manifest (what ``pull`` and optuna-dashboard read),
        brought up to date: it says ``complete`` once the run is."""
        names = {s.study_name for s in self.storage.get_all_studies()}
        for task in self.manifest.tasks:
            name = study_name(self.manifest.study, task)
            if name not in names:
                continue
            data = self.manifest.to_dict()
            data["tasks"] = {task: self.manifest.tasks[task]}
            study_id = self.storage.get_study_id_from_name(name)
            self.storage.set_study_user_attr(study_id, Key.MANIFEST, json.dumps(data, default=str))

    def refresh(self, force: bool = False) -> None:
        """Rebuild the run folder's tables from the study (local runs): after every trial with
        one worker; with several, at most every 30 s until the end (they are views of the study,
        and rebuilding them while workers train was measured to slow training by ~15 %)."""
        if self.run_dir is None:
            return
        now = time.perf_counter()
        if not force and self.manifest.workers > 1 and now - self._refreshed < 30.0:
            return
        self._refreshed = now
        tasks = [t.name for t in self.suite.tasks]
        rows, seeds = rows_of_studies(
            self.storage, self.manifest.study, tasks, self.manifest.run_id
        )
        write_views(self.run_dir, rows, seeds)
        write_students(self.run_dir, self.storage, self.manifest.study, tasks)

    def progress(self, p: Progress) -> None:
        self.refresh()
        if self.on_progress is not None:
            self.on_progress(p)

    def _teacher(self, task: TaskData, loaded: LoadedTeacher | None) -> PreparedTeacher:
        """The task's teacher, prepared; the local workers start as its training ends."""
        suite = self.suite
        t0 = time.perf_counter()
        hook = self.on_teacher_epoch
        if loaded is not None:  # nothing to train: the workers start at once
            self.prestart()
            if self.on_message is not None:
                what = (
                    "reusing the cached teacher (same data and [teacher] settings; delete the "
                    "folder or pass another --cache to train it again)"
                    if suite.teacher.source == "train"
                    else "the teacher from "
                    + {
                        "logits": "offline logits",
                        "checkpoints": "member checkpoints",
                        "checkpoint": "an ensemble file",
                    }[suite.teacher.source]
                )
                self.on_message(
                    f"[{task.name}] {what}: {loaded.source}; computing its outputs on every split"
                )

        def on_epoch(e: int, n: int) -> None:
            if hook is not None:
                hook(task.name, e, n, suite.teacher.members)
            # The last epoch of the whole teacher (a specialist system trains its specialists
            # after the generalist's epochs): start the workers (bench.run.workers.Prestarted).
            if e == n and suite.teacher.kind != "specialists":
                self.prestart()

        teacher = prepare_teacher(
            task, suite.teacher, self.cache, self.train_device, loaded, on_epoch=on_epoch
        )
        self.prestart()
        log.info("[%s] teacher prepared in %.1f s", task.name, time.perf_counter() - t0)
        return teacher

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
        suite = self.suite
        teacher = self._teacher(task, loaded)
        if previous is not None and self.run_dir is not None:
            _check_teacher_unchanged(previous, task.name, teacher, self.run_dir)
        ctx = TaskContext(
            suite=suite,
            task=task,
            teacher=teacher,
            run_id=self.manifest.run_id,
            base=self.manifest.study,
            spec=self.spec,
            train_device=self.train_device,
            n_trials=self.n_trials,
            replay=(replay or {}).get(task.name) if replay is not None else None,
            threads=ThreadPolicy(suite.measure.train_threads, all_cores()),
            certify_rounds=tuple(self.manifest.certify_rounds),
        )
        run = TaskWorker(
            ctx,
            self.storage,
            mode="shared" if self.spec.shared else "exclusive",
            on_commit=self.progress,
            started=self.started,
        )
        study = run.study("search")
        self.manifest.tasks[task.name] = {
            "config": json.loads(json.dumps(asdict(task.config), default=list)),
            "sizes": task.sizes(),
            "num_classes": task.num_classes,
            "class_names": list(task.class_names),
            "input_shape": list(task.input_shape),
            "data_sha256": task.data_sha256(),
            "data_source": task.source,
            "preprocessing": task.preprocessing(),
            "transfer": transfer_summary(task, suite.transfer),
            "teacher": teacher.summary(),
            "warnings": teacher_warnings(task, suite.teacher, teacher),
        }
        self.write_manifest()
        if Key.MANIFEST not in study.user_attrs:
            data = self.manifest.to_dict()
            data["tasks"] = {task.name: self.manifest.tasks[task.name]}
            study.set_user_attr(Key.MANIFEST, json.dumps(data, default=str))
        return run
