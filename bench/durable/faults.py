"""Fault injection: a public seam for testing crashes at exact points of a run.

Set ``KDBENCH_FAULT`` to ``ACTION@POINT[#K]``: when the K-th (default 1st) event of ``POINT``
happens in this process, perform ``ACTION``:

* actions: ``kill`` (SIGKILL this process: nothing runs after it, like ``kill -9``),
  ``interrupt`` (raise ``KeyboardInterrupt``, like Ctrl-C), ``raise`` (raise
  ``RuntimeError("injected fault …")`` — inside a trial it is recorded as a failed trial),
  ``enospc`` (raise ``OSError(ENOSPC)``, as a full disk does: the run stops and resumes);
* points: ``write`` (after each durable write of the run: a file renamed into place or a
  record committed to the study), ``group`` (at the start of each training group, before
  training), ``trial`` (after a trial's record is committed, before the next group),
  ``param`` (before the sampler draws each parameter of a trial: ``kill@param#2`` dies
  between the first and second parameter written by ``ask``), ``example`` (each training
  example a student reads on the streamed path, :mod:`bench.group.stream`: a kill mid-epoch;
  counted in the process that reads it, so with ``[task] loader_workers = 0``).

One fault changes data instead of stopping the run: ``permute@test_labels`` shuffles the
labels of the test split (seeded) when a task is split, so a test can show that nothing the
run *chooses* — the search, halving, the certification candidates and their order — ever
reads the test split (only the certified numbers move).

Several faults may be given separated by commas. Unset, every call is a no-op. With
``--workers N`` every worker process inherits the variable; ``KDBENCH_FAULT_WORKER=i`` limits
the faults to the i-th worker started (0-based; replacements get new numbers), and
``KDBENCH_FAULT_WORKER=0,1`` to several (so a test need not guess which worker gets work first). This is a
test seam, documented so users can reproduce crash scenarios too.
"""

from __future__ import annotations

import errno
import os
import signal

__all__ = ["ENV", "active", "count", "fault_point", "reset"]

ENV = "KDBENCH_FAULT"
WORKER_ENV = "KDBENCH_FAULT_WORKER"  # only the worker process with this index
INDEX_ENV = "KDBENCH_WORKER_INDEX"  # set by bench.run.workers in each worker process
_counts: dict[str, int] = {}


def _parse(spec: str) -> list[tuple[str, str, int]]:
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        action, _, rest = part.partition("@")
        point, _, k = rest.partition("#")
        out.append((action, point, int(k) if k else 1))
    return out


def fault_point(point: str) -> None:
    """Count one event of ``point``; perform the configured fault when its turn comes."""
    _counts[point] = n = _counts.get(point, 0) + 1
    spec = os.environ.get(ENV)
    if not spec:
        return
    only = os.environ.get(WORKER_ENV)
    if only is not None and os.environ.get(INDEX_ENV) not in only.split(","):
        return
    for action, where, k in _parse(spec):
        if where != point or k != n:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "interrupt":
            raise KeyboardInterrupt(f"injected interrupt at {point} #{n}")
        elif action == "raise":
            raise RuntimeError(f"injected fault at {point} #{n}")
        elif action == "enospc":
            raise OSError(errno.ENOSPC, f"No space left on device (injected at {point} #{n})")
        elif action == "permute":
            continue  # a data fault: read by active()
        else:
            raise ValueError(f"{ENV}: unknown action {action!r} (kill, interrupt, raise, enospc)")


def active(action: str, point: str) -> bool:
    """Whether the fault ``action@point`` is configured (for data faults such as
    ``permute@test_labels``, which are not counted events)."""
    spec = os.environ.get(ENV)
    if not spec:
        return False
    return any(a == action and p == point for a, p, _ in _parse(spec))


def reset() -> None:
    """Forget the event counts (for tests running several runs in one process)."""
    _counts.clear()


def count(point: str) -> int:
    """How many events of ``point`` this process has seen since :func:`reset` (so a test can
    know how many write boundaries a run has, and cover every one)."""
    return _counts.get(point, 0)
