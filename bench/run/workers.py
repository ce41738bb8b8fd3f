"""``--workers N``: N local processes on one task's study, this process supervising.

Each worker is a fresh interpreter (``python -m bench.run.workers``: no fork after torch has
started threads, no dependence on how this process was started) with ``cores // N`` torch
threads, so N × threads ≤ cores. Its job (the suite, the storage, the budget) arrives on
stdin — the storage URL is never written to disk — and its progress comes back as JSON
lines on stdout. It loads the task and the teacher from the cache this process filled (it
never trains the teacher), joins the study and runs the search and certification loops of
:mod:`bench.search`. The job is a typed :class:`WorkerJob` sent as JSON.

A journal file has no heartbeats, so this process watches its workers instead: when one dies
(any exit code but 0), its RUNNING trials are failed and re-queued with the same parameters
(the same callback the RDB heartbeat uses), and a replacement worker is started (at most N
replacements in all).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.durable.faults import INDEX_ENV
from bench.durable.interrupts import interrupt
from bench.errors import InputError, is_write_error
from bench.search import IdentityMismatch, Progress, TaskWorker
from bench.study import Key, StorageSpec
from bench.threads import ThreadPolicy

__all__ = ["Prestarted", "WorkerJob", "run_workers"]

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process needs to rebuild the supervisor's
    :class:`~bench.search.TaskContext`, sent as one JSON document on its stdin (so the
    storage URL is never written to disk)."""

    suite_source: str  # the suite file (its folder holds the suite's plug-ins)
    suite: dict[str, Any]  # unredacted: the worker connects with it
    task: str
    task_file: str  # the loaded task as a tensor file (:meth:`bench.tasks.TaskData.save`)
    spec: StorageSpec
    base: str
    run_id: str
    cache: str  # the teacher cache the supervisor filled
    n_trials: int
    device: str
    threads: int  # torch threads of the worker process
    replay: list[dict[str, Any]] | None
    policy: ThreadPolicy
    certify_rounds: list[float]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerJob:
        data = json.loads(text)
        data["spec"] = StorageSpec(**data["spec"])
        data["policy"] = ThreadPolicy(**data["policy"])
        return cls(**data)


def _retry_dead(run: TaskWorker, worker: str) -> int:
    """Fail and re-queue the RUNNING trials of a dead worker; return how many."""
    count = 0
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    for study in run.existing_studies():
        study_id = run.storage.get_study_id_from_name(study.study_name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(Key.WORKER) != worker:
                continue
            trial_id = run.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            if run.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                # A copy, as Optuna's fail_stale_trials passes: the callback appends to the
                # trial's retry_history in place, and the journal storage hands out its cached
                # trial, so without it a retry of a retry would rewrite its parent's history
                # and the report would call the original trial "not retried".
                callback(study, copy.deepcopy(run.storage.get_trial(trial_id)))
                count += 1
    return count


def _spawn(index: int) -> subprocess.Popen:
    """A worker process: it imports, says ``imported``, then reads its job from stdin."""
    env = {**os.environ, INDEX_ENV: str(index), "PYTHONPATH": _pythonpath()}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.run.workers"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


class Prestarted:
    """Workers started as the teacher's training ends, before its evaluation.

    Their interpreter start-up and imports (about 4 s of CPU each on the 2-core machine)
    overlap the teacher's evaluation and FLOP count (latency is timed after the search, when
    every worker is done: :mod:`bench.run.timing`). (Started before the teacher's training instead, their imports beside
    its two training threads cost more than they saved: 67.7 s vs about 57 s end to end.)
    :func:`run_workers` hands them their job; :meth:`release` stops unused ones."""

    def __init__(self, n: int) -> None:
        self.procs = [_spawn(i) for i in range(n)]

    def take(self) -> list[subprocess.Popen]:
        procs, self.procs = self.procs, []
        return procs

    def release(self) -> None:
        for p in self.procs:
            if p.stdin is not None and not p.stdin.closed:
                with contextlib.suppress(OSError):
                    p.stdin.close()  # an empty job: the worker exits at once
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            if p.stdout is not None:
                p.stdout.close()
        self.procs = []


# Long by design: one supervision loop whose nested start/handle share the selector, the
# worker table, the restart budget and the failure flag; split, they would pass all four.
def run_workers(
    run: TaskWorker,
    n: int,
    threads: int,
    cache: Path,
    on_progress: Callable[[Progress], None],
    ready: list[subprocess.Popen] | None = None,
) -> None:
    """Run this task's search and certification in ``n`` worker processes (``ready``: ones
    :class:`Prestarted` started, used first unless they died)."""
    ready = list(ready or [])
    ctx = run.ctx
    per = max(1, threads // n)
    if n > threads:
        log.warning("%d workers on %d cores: each gets 1 thread (oversubscribed)", n, threads)
    scratch_dir = Path(tempfile.mkdtemp(prefix="kdbench-workers-"))
    # The loaded task as a tensor file: a worker reads it in milliseconds and does not import
    # scikit-learn (about 1.8 s of each worker's start-up on the 2-core machine).
    ctx.task.save(scratch_dir / "task.pt")
    job = WorkerJob(
        suite_source=ctx.suite.source,
        suite=ctx.suite.to_dict(),
        task=ctx.task.name,
        task_file=str(scratch_dir / "task.pt"),
        spec=ctx.spec,
        base=ctx.base,
        run_id=ctx.run_id,
        cache=str(cache),
        n_trials=ctx.n_trials,
        device=ctx.train_device,
        threads=per,
        replay=ctx.replay,
        policy=ThreadPolicy(ctx.suite.measure.train_threads, threads),
        certify_rounds=list(ctx.certify_rounds),
    ).to_json()
    selector = selectors.DefaultSelector()
    procs: dict[int, subprocess.Popen] = {}
    started, restarts = 0, 0
    failure: str | None = None
    write_failure: OSError | None = None  # a worker's full disk: the run stops

    def start() -> None:
        nonlocal started
        p = ready.pop(0) if ready else _spawn(started)
        if p.poll() is not None:  # a prestarted one that died while importing
            p = _spawn(started)
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(job)
        p.stdin.close()
        selector.register(p.stdout, selectors.EVENT_READ, p)
        procs[p.pid] = p
        started += 1

    def handle(line: str) -> None:
        nonlocal failure, write_failure
        msg = json.loads(line)
        if msg["kind"] == "imported":  # a prestarted worker nobody waited for
            return
        if msg["kind"] == "ready":
            log.info(
                "worker %s ready after %.1f s, %s thread(s)",
                msg["index"],
                msg["seconds"],
                msg["threads"],
            )
        elif msg["kind"] == "progress":
            on_progress(Progress(**msg["progress"]))
        elif msg["kind"] == "input_error":
            failure = msg["text"]
        elif msg["kind"] == "write_error":
            write_failure = OSError(msg["errno"], msg["text"])

    for _ in range(n):
        start()
    try:
        while procs:
            for key, _ in selector.select(timeout=0.5):
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if line:
                    handle(line)
                else:
                    selector.unregister(key.fileobj)
            for pid, p in list(procs.items()):
                if p.poll() is None:
                    continue
                for line in p.stdout or ():  # what it wrote just before exiting
                    handle(line)
                del procs[pid]
                if p.returncode == 0 or failure is not None or write_failure is not None:
                    continue
                lost = 0 if ctx.spec.shared else _retry_dead(run, f"{socket.gethostname()}:{pid}")
                log.warning(
                    "worker %s exited with code %s; %d of its trials re-queued",
                    pid,
                    p.returncode,
                    lost,
                )
                if restarts < n:
                    restarts += 1
                    start()
            if failure is not None or write_failure is not None:
                for p in procs.values():
                    p.terminate()
    except KeyboardInterrupt:
        for p in procs.values():
            p.terminate()  # SIGTERM: each worker stops like on Ctrl-C; its trials stay RUNNING
        for p in procs.values():
            p.wait(timeout=30)
        raise
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    if failure is not None:
        raise InputError(failure)
    if write_failure is not None:  # the run stops as if this process had failed to write
        raise write_failure
    if not run.study("search").user_attrs.get(Key.DONE):
        raise RuntimeError("the workers ended before the task was done (see the log above)")


def _pythonpath() -> str:
    """The worker imports kdbench from where this process did (an editable or a plain tree)."""
    parts = [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return os.pathsep.join(dict.fromkeys(parts))


def _child_main() -> int:
    """A worker process: read the job from stdin, join, run, report on stdout."""

    def stop(signum: int, frame: Any) -> None:
        interrupt(KeyboardInterrupt())

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines on the real stdout

    def send(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg, default=str) + "\n")
        out.flush()

    try:
        import time

        import torch

        from bench.config.suite import suite_from_dict
        from bench.search import TaskContext, run_certify, run_search
        from bench.study import open_storage
        from bench.tasks import task_from_file
        from bench.teachers import load_teacher, prepare_teacher

        send({"kind": "imported"})
        text = sys.stdin.read()
        if not text:  # released unused
            return 0
        began = time.perf_counter()
        job = WorkerJob.from_json(text)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        torch.set_num_threads(job.threads)
        if job.suite_source:
            sys.path.insert(0, str(Path(job.suite_source).resolve().parent))  # plug-ins
        suite = suite_from_dict(job.suite)
        cfg = next(t for t in suite.tasks if t.name == job.task)
        task = task_from_file(Path(job.task_file), cfg)
        cache = Path(job.cache)
        loaded = load_teacher(task, suite.teacher, cache)
        teacher = prepare_teacher(task, suite.teacher, cache, job.device, loaded)
        ctx = TaskContext(
            suite=suite,
            task=task,
            teacher=teacher,
            run_id=job.run_id,
            base=job.base,
            spec=job.spec,
            train_device=job.device,
            n_trials=job.n_trials,
            replay=job.replay,
            threads=job.policy,
            certify_rounds=tuple(job.certify_rounds),
        )
        run = TaskWorker(
            ctx,
            open_storage(job.spec),
            mode="shared" if job.spec.shared else "cooperative",
            on_commit=lambda p: send({"kind": "progress", "progress": asdict(p)}),
        )
        ready = {"index": os.environ.get(INDEX_ENV), "threads": torch.get_num_threads()}
        send({"kind": "ready", "seconds": time.perf_counter() - began, **ready})
        run_search(run)
        run_certify(run)
    except (InputError, IdentityMismatch) as exc:
        send({"kind": "input_error", "text": str(exc)})
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if not is_write_error(exc):
            raise
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the supervisor stops the others now
        send({"kind": "write_error", "errno": exc.errno, "text": exc.strerror or str(exc)})
        return 74
    return 0


if __name__ == "__main__":
    code = _child_main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip the interpreter's ~1 s teardown: the supervisor waits for the exit
