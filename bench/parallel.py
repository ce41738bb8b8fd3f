"""``--workers N``: N local processes on one task's study, this process supervising.

Each worker is a fresh interpreter (``spawn``: no fork after torch has started threads) with
``cores // N`` torch threads, so N × threads ≤ cores. It loads the task and the teacher from
the cache this process filled (it never trains the teacher), joins the study and runs the
search and confirm loops of ``bench.worker``. Progress comes back through a queue; this
process rebuilds the run folder's tables and prints.

A journal file has no heartbeats, so this process watches its workers instead: when one dies
(any exit code but 0), its RUNNING trials are failed and re-queued with the same parameters
(the same callback the RDB heartbeat uses), and a replacement worker is started (at most N
replacements in all).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_mod
import signal
import socket
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from bench.errors import InputError
from bench.study import WORKER, StorageSpec, study_name
from bench.worker import IdentityMismatch, Progress, TaskRun

if TYPE_CHECKING:
    from bench.sweep import _Run

__all__ = ["run_workers"]

log = logging.getLogger(__name__)


def _retry_dead(run: TaskRun, worker: str) -> int:
    """Fail and re-queue the RUNNING trials of a dead worker; return how many."""
    count = 0
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    names = {s.study_name for s in run.storage.get_all_studies()}
    for phase in ("search", "confirm"):
        name = study_name(run.base, run.task.name, phase)
        if name not in names:
            continue
        study = optuna.load_study(study_name=name, storage=run.storage)
        study_id = run.storage.get_study_id_from_name(name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(WORKER) != worker:
                continue
            trial_id = run.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            if run.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                callback(study, run.storage.get_trial(trial_id))
                count += 1
    return count


def run_workers(ctx: _Run, run: TaskRun, n: int, threads: int) -> None:
    """Run this task's search and confirm phases in ``n`` worker processes."""
    per = max(1, threads // n)
    if n > threads:
        log.warning("%d workers on %d cores: each gets 1 thread (oversubscribed)", n, threads)
    mp = multiprocessing.get_context("spawn")
    messages: Any = mp.Queue()
    job = {
        "suite_source": ctx.suite.source,
        "suite": _suite_for_child(ctx),
        "task": run.task.name,
        "spec": asdict(ctx.spec),
        "base": run.base,
        "run_id": run.run_id,
        "cache": str(ctx.cache),
        "n_trials": run.n_trials,
        "device": ctx.train_device,
        "threads": per,
        "ens_cols": run.ens_cols,
        "replay": run.replay,
    }
    procs: dict[int, Any] = {}
    restarts = 0
    failure: str | None = None

    def start() -> None:
        p = mp.Process(target=_child, args=(job, messages), name="kdbench-worker")
        p.start()
        procs[p.pid] = p

    for _ in range(n):
        start()
    try:
        while procs:
            try:
                msg = messages.get(timeout=0.5)
            except queue_mod.Empty:
                msg = None
            if msg is not None:
                if msg["kind"] == "progress":
                    ctx.progress(Progress(**msg["progress"]))
                elif msg["kind"] == "input_error":
                    failure = msg["text"]
            for pid, p in list(procs.items()):
                if p.is_alive():
                    continue
                p.join()
                del procs[pid]
                if p.exitcode == 0 or failure is not None:
                    continue
                lost = 0 if ctx.spec.shared else _retry_dead(run, f"{socket.gethostname()}:{pid}")
                log.warning(
                    "worker %s exited with code %s; %d of its trials re-queued",
                    pid,
                    p.exitcode,
                    lost,
                )
                if restarts < n:
                    restarts += 1
                    start()
            if failure is not None:
                for p in procs.values():
                    p.terminate()
        while True:  # progress sent just before the last worker exited
            try:
                msg = messages.get_nowait()
            except queue_mod.Empty:
                break
            if msg["kind"] == "progress":
                ctx.progress(Progress(**msg["progress"]))
    except KeyboardInterrupt:
        for p in procs.values():
            p.terminate()  # SIGTERM: each worker stops like on Ctrl-C; its trials stay RUNNING
        for p in procs.values():
            p.join(timeout=30)
        raise
    if failure is not None:
        raise InputError(failure)
    study = run.study("search")
    if not study.user_attrs.get("kdbench_done"):
        raise RuntimeError("the workers ended before the task was done (see the log above)")


def _suite_for_child(ctx: _Run) -> dict[str, Any]:
    data = ctx.suite.to_dict()  # unredacted: the child connects with it; never written to disk
    return data


def _child(job: dict[str, Any], messages: Any) -> None:
    """A worker process: load, join, run, report. Exit 0 when the task is done."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        import torch

        from bench.study import open_storage
        from bench.suite import suite_from_dict
        from bench.tasks import load_task
        from bench.teacher import load_teacher, prepare_teacher

        torch.set_num_threads(job["threads"])
        source = job["suite_source"]
        if source:
            sys.path.insert(0, str(Path(source).resolve().parent))
        suite = suite_from_dict(job["suite"])
        cfg = next(t for t in suite.tasks if t.name == job["task"])
        task = load_task(cfg)
        cache = Path(job["cache"])
        teacher = prepare_teacher(
            task, suite.teacher, cache, job["device"], load_teacher(task, suite.teacher, cache)
        )
        spec = StorageSpec(**job["spec"])
        gpu = torch.device(job["device"]) if job["device"].startswith("cuda") else None
        from bench.sweep import _data_sha256

        run = TaskRun(
            suite=suite,
            task=task,
            teacher=teacher,
            ens_cols=job["ens_cols"],
            run_id=job["run_id"],
            base=job["base"],
            storage=open_storage(spec),
            spec=spec,
            mode="shared" if spec.shared else "cooperative",
            train_device=job["device"],
            gpu=gpu,
            n_trials=job["n_trials"],
            identity={
                "suite_sha256": suite.digest(),
                "data_sha256": _data_sha256(task),
                "teacher_outputs_sha256": teacher.outputs_sha256,
            },
            on_commit=lambda p: messages.put({"kind": "progress", "progress": asdict(p)}),
            replay=job["replay"],
        )
        run.search()
        run.confirm()
    except (InputError, IdentityMismatch) as exc:
        messages.put({"kind": "input_error", "text": str(exc)})
        os._exit(2)
    except KeyboardInterrupt:
        os._exit(130)
    messages.close()
    messages.join_thread()
    os._exit(0)
