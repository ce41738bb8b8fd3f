"""The ask lock: "count the study, then ask" as one step across workers."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import optuna

from bench.study.storage import StorageSpec

__all__ = ["AskLock"]


class AskLock:
    """Serialises "count the study, then ask" across workers, so the budget is exact.

    Without it two workers can both see one free slot and both ask, and the study ends with
    more trials than the suite's budget. PostgreSQL: a session advisory lock keyed by the
    study name; a journal file: ``flock`` on ``<journal>.asklock``; other databases: none
    (the budget may then be exceeded by up to workers − 1 trials).
    """

    def __init__(self, storage: optuna.storages.BaseStorage, spec: StorageSpec, name: str) -> None:
        self._key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._engine = getattr(storage, "engine", None) if spec.shared else None
        self._path = Path(spec.path + ".asklock") if spec.path else None
        self._conn: Any = None
        self._fd: int | None = None

    def __enter__(self) -> AskLock:
        if self._engine is not None and self._engine.dialect.name == "postgresql":
            import sqlalchemy

            self._conn = self._engine.connect()
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        elif self._path is not None:
            import fcntl
            import os

            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            import sqlalchemy

            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._conn.close()
            self._conn = None
        if self._fd is not None:
            import os

            os.close(self._fd)  # releases the flock
            self._fd = None
