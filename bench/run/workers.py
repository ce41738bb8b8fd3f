"""``--workers N``: N local processes on one task's study, this process supervising.

Each worker is a fresh interpreter (``python -m bench.run.workers``: no fork after torch has
started threads, no dependence on how this process was started) with ``cores // N`` torch
threads, so N × threads ≤ cores. Its job (the suite, the storage, the budget) arrives on
stdin — the storage URL is never written to disk — and its progress comes back as JSON
lines on stdout. It loads the task and the teacher from the cache this process filled (it
never trains the teacher), joins the study and runs the search and certification loops of
:mod:`bench.search`. The job is a typed :class:`WorkerJob` sent as JSON.

On a host with GPUs each worker is pinned to one (:func:`worker_gpus`, :func:`pinned_env`):
worker ``i`` sees only GPU ``gpus[i % len(gpus)]`` through ``CUDA_VISIBLE_DEVICES``, so N
workers on N GPUs train one per card (more workers than GPUs share them round-robin). The
GPUs are the ids the supervisor's own ``CUDA_VISIBLE_DEVICES`` lists when it is set (a
scheduler's allocation: SLURM, Kubernetes), else every GPU torch sees. A suite that names
one card (``[measure] device = "cuda:1"``) is not pinned: its workers all use that card.

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
from bench.study import Key

__all__ = ["GPU_ENV", "Prestarted", "WorkerJob", "pinned_env", "run_workers", "worker_gpus"]

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
GPU_ENV = "CUDA_VISIBLE_DEVICES"


def worker_gpus(device: str, environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs local workers are pinned to, for a suite's ``[measure] device``: none for
    ``cpu`` or one named card (``cuda:N``); for ``auto`` or ``cuda`` the ids listed in
    ``CUDA_VISIBLE_DEVICES`` when it is set (a scheduler's allocation), else every GPU torch
    counts (without creating a CUDA context)."""
    if device not in ("auto", "cuda"):
        return []
    env = os.environ if environ is None else environ
    visible = env.get(GPU_ENV)
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def pinned_env(index: int, gpus: list[str]) -> dict[str, str]:
    """Worker ``index``'s ``CUDA_VISIBLE_DEVICES`` (round-robin over ``gpus``); {} without."""
    return {GPU_ENV: gpus[index % len(gpus)]} if gpus else {}


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process needs, sent as one JSON document on its stdin (so the storage
    URL is never written to disk): the supervisor's :class:`~bench.search.TaskContext` in its
    portable form, the loaded task as a tensor file, the teacher cache the supervisor filled,
    and the worker's torch threads."""

    context: dict[str, Any]  # TaskContext.portable()
    task_file: str  # the loaded task (:meth:`bench.tasks.TaskData.save`)
    cache: str
    threads: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerJob:
        return cls(**json.loads(text))


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


def _spawn(index: int, gpus: list[str]) -> subprocess.Popen:
    """A worker process (pinned to its GPU, if any): it imports, says ``imported``, then
    reads its job from stdin."""
    env = {**os.environ, INDEX_ENV: str(index), "PYTHONPATH": _pythonpath()}
    env |= pinned_env(index, gpus)
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

    def __init__(self, n: int, gpus: list[str] | None = None) -> None:
        self.gpus = list(gpus or [])
        self.procs = [_spawn(i, self.gpus) for i in range(n)]

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


def run_workers(
    run: TaskWorker,
    n: int,
    threads: int,
    cache: Path,
    on_progress: Callable[[Progress], None],
    ready: list[subprocess.Popen] | None = None,
    gpus: list[str] | None = None,
) -> None:
    """Run this task's search and certification in ``n`` worker processes (``ready``: ones
    :class:`Prestarted` started, used first unless they died; ``gpus``: what new workers
    are pinned to, as :func:`worker_gpus` gives)."""
    ctx = run.ctx
    per = max(1, threads // n)
    if n > threads:
        log.warning("%d workers on %d cores: each gets 1 thread (oversubscribed)", n, threads)
    scratch_dir = Path(tempfile.mkdtemp(prefix="kdbench-workers-"))
    # The loaded task as a tensor file: a worker reads it in milliseconds and does not import
    # scikit-learn (about 1.8 s of each worker's start-up on the 2-core machine).
    ctx.task.save(scratch_dir / "task.pt")
    job = WorkerJob(ctx.portable(), str(scratch_dir / "task.pt"), str(cache), per).to_json()
    boss = _Supervisor(run, job, n, list(ready or []), on_progress, list(gpus or []))
    try:
        for _ in range(n):
            boss.start()
        boss.watch()
    except KeyboardInterrupt:
        boss.stop_all()  # SIGTERM: each worker stops like on Ctrl-C; its trials stay RUNNING
        raise
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    if boss.failure is not None:
        raise InputError(boss.failure)
    if boss.write_failure is not None:  # the run stops as if this process had failed to write
        raise boss.write_failure
    if not run.study("search").user_attrs.get(Key.DONE):
        raise RuntimeError("the workers ended before the task was done (see the log above)")


class _Supervisor:
    """The worker processes of one task, watched from this process: each gets the job on its
    stdin; its progress lines come back on its stdout; a worker that dies has its RUNNING
    trials failed and re-queued and is replaced (at most ``n`` replacements in all); an input
    error or a full disk in any worker stops them all."""

    def __init__(
        self,
        run: TaskWorker,
        job: str,
        n: int,
        ready: list[subprocess.Popen],
        on_progress: Callable[[Progress], None],
        gpus: list[str],
    ) -> None:
        self.run, self.job, self.n, self.ready, self.on_progress = run, job, n, ready, on_progress
        self.gpus = gpus
        self.selector = selectors.DefaultSelector()
        self.procs: dict[int, subprocess.Popen] = {}
        self.started = 0
        self.restarts = 0
        self.failure: str | None = None
        self.write_failure: OSError | None = None  # a worker's full disk: the run stops

    def start(self) -> None:
        """One more worker: a prestarted one (unless it died while importing), else new."""
        p = self.ready.pop(0) if self.ready else _spawn(self.started, self.gpus)
        if p.poll() is not None:
            p = _spawn(self.started, self.gpus)
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(self.job)
        p.stdin.close()
        self.selector.register(p.stdout, selectors.EVENT_READ, p)
        self.procs[p.pid] = p
        self.started += 1

    def handle(self, line: str) -> None:
        """One protocol line from a worker."""
        msg = json.loads(line)
        kind = msg["kind"]
        if kind == "ready":
            log.info(
                "worker %s ready after %.1f s, %s thread(s), GPU %s",
                msg["index"],
                msg["seconds"],
                msg["threads"],
                msg.get("gpu") or "none",
            )
        elif kind == "progress":
            self.on_progress(Progress(**msg["progress"]))
        elif kind == "input_error":
            self.failure = msg["text"]
        elif kind == "write_error":
            self.write_failure = OSError(msg["errno"], msg["text"])
        # "imported": a prestarted worker nobody waited for

    @property
    def stopping(self) -> bool:
        return self.failure is not None or self.write_failure is not None

    def watch(self) -> None:
        """Read every worker's lines until all have exited."""
        while self.procs:
            for key, _ in self.selector.select(timeout=0.5):
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if line:
                    self.handle(line)
                else:
                    self.selector.unregister(key.fileobj)
            for pid, p in list(self.procs.items()):
                if p.poll() is not None:
                    self.reap(pid, p)
            if self.stopping:
                for p in self.procs.values():
                    p.terminate()

    def reap(self, pid: int, p: subprocess.Popen) -> None:
        """A worker exited: read what it wrote just before; a crash re-queues its trials and
        starts a replacement."""
        for line in p.stdout or ():
            self.handle(line)
        del self.procs[pid]
        if p.returncode == 0 or self.stopping:
            return
        shared = self.run.ctx.spec.shared
        lost = 0 if shared else _retry_dead(self.run, f"{socket.gethostname()}:{pid}")
        log.warning(
            "worker %s exited with code %s; %d of its trials re-queued", pid, p.returncode, lost
        )
        if self.restarts < self.n:
            self.restarts += 1
            self.start()

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            p.wait(timeout=30)


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

        from bench.search import TaskContext, run_certify, run_search
        from bench.study import open_storage
        from bench.tasks import task_from_file
        from bench.teachers import load_teacher, prepare_teacher

        send({"kind": "imported", "gpu": os.environ.get(GPU_ENV)})
        text = sys.stdin.read()
        if not text:  # released unused
            return 0
        began = time.perf_counter()
        job = WorkerJob.from_json(text)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        torch.set_num_threads(job.threads)
        source = job.context["suite_source"]
        if source:
            sys.path.insert(0, str(Path(source).resolve().parent))  # plug-ins
        suite = TaskContext.portable_suite(job.context)
        cfg = next(t for t in suite.tasks if t.name == job.context["task"])
        task: Any = task_from_file(Path(job.task_file), cfg)  # in memory or streamed
        cache = Path(job.cache)
        loaded = load_teacher(task, suite.teacher, cache)
        teacher = prepare_teacher(task, suite.teacher, cache, job.context["train_device"], loaded)
        ctx = TaskContext.from_portable(job.context, suite, task, teacher)
        run = TaskWorker(
            ctx,
            open_storage(ctx.spec),
            mode="shared" if ctx.spec.shared else "cooperative",
            on_commit=lambda p: send({"kind": "progress", "progress": asdict(p)}),
        )
        ready = {
            "index": os.environ.get(INDEX_ENV),
            "threads": torch.get_num_threads(),
            "gpu": os.environ.get(GPU_ENV),
        }
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
