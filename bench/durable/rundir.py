"""The run folder's file discipline: atomic writes and paths that stay inside their folder.

Every file kdbench writes goes through :func:`atomic_write_bytes` (temporary file in the same
folder, fsync, rename), and every path built from a user-given name goes through
:func:`inside` (resolved, and refused unless it stays inside its root). A run folder is named
by the UTC time and the suite (:func:`new_run_id`), created and never overwritten
(:func:`new_run_dir`), and locked by the process that writes it (:class:`RunLock`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.durable.faults import fault_point
from bench.errors import InputError

__all__ = [
    "RunLock",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "inside",
    "new_run_dir",
    "new_run_id",
]

log = logging.getLogger(__name__)


def inside(root: Path, *parts: str) -> Path:
    """``root / parts`` resolved (symlinks followed); :class:`InputError` if it leaves ``root``."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        joined = "/".join(parts)
        raise InputError(f"The path {joined!r} must stay inside {base}. Got {path} instead.")
    return path


def new_run_id(suite_name: str, now: datetime | None = None) -> str:
    """``<UTC time>_<suite name>``, e.g. ``20261122T193131Z_seed``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}_{suite_name}"


def new_run_dir(out_root: Path, suite_name: str) -> tuple[Path, str]:
    """A new run folder under ``out_root`` and its id; a name taken already (two runs in one
    second) gets a suffix ``-2``, ``-3``…: a run folder is never overwritten."""
    out_root.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(suite_name)
    run_dir = inside(out_root, run_id)
    suffix = 1
    while True:
        try:
            run_dir.mkdir(parents=False, exist_ok=False)
            return run_dir, run_id
        except FileExistsError:
            suffix += 1
            run_id = f"{new_run_id(suite_name)}-{suffix}"
            run_dir = inside(out_root, run_id)


def check_writable(folder: Path, what: str) -> None:
    """:class:`InputError` unless ``folder`` is, or can be created as, a writable folder.

    Creates nothing that stays: the nearest existing ancestor is probed with a temporary file
    (``os.access`` is not enough — it says yes to root for read-only mounts).
    """
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(
            f"{what} must be a folder kdbench can create and write. Got {str(folder)!r} "
            f"instead ({probe} is not a folder)."
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".kdbench-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(
            f"{what} must be a folder kdbench can create and write. Got {str(folder)!r} "
            f"instead ({exc.strerror or exc})."
        ) from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fault_point("write")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class RunLock:
    """``run.lock``: an exclusive ``flock`` held by the process that runs a folder.

    A second process (a second ``--resume`` while the first is alive) is refused with who
    holds the lock. The kernel releases a ``flock`` when its process dies, however it dies,
    so a lock file left by a dead process is *stale*: the next process takes it over (and
    says so). The file records the holder's PID, host and start time for that message.
    Run folders belong on a local disk (``flock`` over NFS is not reliable).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "run.lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise InputError(
                f"The run folder {self.path.parent} must not be in use by another process. It "
                f"is used by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"(since {holder.get('started_utc', '?')}): wait for it to end or stop it."
            ) from None
        previous = self._holder(fd)
        if previous.get("pid"):
            log.info(
                "stale lock of process %s on %s taken over (it is no longer running)",
                previous.get("pid"),
                previous.get("host"),
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> dict[str, object]:
        try:
            data = os.pread(fd, 4096, 0)
            return json.loads(data) if data else {}
        except (OSError, ValueError):
            return {}

    def held_elsewhere(self) -> bool:
        """True when a live process holds the lock (for ``list runs``)."""
        if not self.path.is_file():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
