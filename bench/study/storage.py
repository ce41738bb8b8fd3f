"""Where the studies live: a journal file in the run folder (one host), or an RDB URL
(PostgreSQL via psycopg 3; several hosts) with heartbeats. Passwords in URLs are never
written anywhere (:func:`redact`)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend

from bench.durable.interrupts import deferred_interrupts
from bench.errors import InputError

__all__ = ["StorageSpec", "journal_path", "open_storage", "redact", "study_name"]

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db``."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:
        # Not parseable: hide everything between '//' and '@' after the first ':'.
        head, _, rest = url.partition("://")
        creds, at, host = rest.rpartition("@")
        if not at:
            return url
        user = creds.split(":", 1)[0]
        return f"{head}://{user}:***@{host}" if ":" in creds else url
    return parsed.render_as_string(hide_password=True) if parsed.password else url


@dataclass(frozen=True)
class StorageSpec:
    """Where a study lives: an RDB ``url`` (shared) or a journal ``path`` (one host)."""

    url: str = ""
    path: str = ""
    heartbeat_interval: int = 10
    grace_period: int = 30
    artifacts: str = ""  # the artifact store's location (bench.study.artifacts)

    @property
    def shared(self) -> bool:
        """True for an RDB (other hosts may run trials); False for a journal file."""
        return bool(self.url)

    def describe(self) -> str:
        return redact(self.url) if self.url else self.path


def _driver_url(url: str) -> str:
    """``postgresql://`` → ``postgresql+psycopg://`` (psycopg 3 is the driver kdbench installs)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


class _WholeAppends(JournalFileBackend):
    """A journal file whose appends are never cut by Ctrl-C or SIGTERM
    (:mod:`bench.durable.interrupts`): the interrupt is raised when the append is complete."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with deferred_interrupts():
            super().append_logs(logs)


def open_storage(spec: StorageSpec) -> optuna.storages.BaseStorage:
    """The storage of ``spec``, connected; :class:`InputError` (redacted) if it cannot be."""
    if not spec.shared:
        from optuna.storages.journal import JournalStorage

        try:
            return JournalStorage(_WholeAppends(spec.path))
        except Exception as exc:
            raise InputError(
                f"The study journal {spec.path} must be a readable Optuna journal file. "
                f"Got {type(exc).__name__}: {exc}"
            ) from None
    url = spec.url
    shown = redact(url)
    if url.startswith("sqlite"):
        raise InputError(
            f"The storage URL must name a database server (PostgreSQL or MySQL): SQLite breaks "
            f"under concurrent workers; for one host use the default journal file. Got {shown!r}."
        )
    try:
        from sqlalchemy.engine import make_url

        make_url(_driver_url(url))
    except Exception as exc:
        raise InputError(
            f"The storage URL must be a database URL such as postgresql://user@host/db. Got "
            f"{shown!r} instead ({type(exc).__name__})."
        ) from None
    try:
        return _rdb_storage(spec)
    except Exception as exc:
        from sqlalchemy.exc import NoSuchModuleError

        if isinstance(exc, NoSuchModuleError):
            raise InputError(
                f"The storage URL must be a database URL with a known dialect and driver (e.g. "
                f"postgresql://user@host/db). Got {shown!r} instead ({exc})."
            ) from None
        if not isinstance(exc, ImportError):
            raise _unreachable(exc, url, shown) from None
        raise InputError(
            f"The storage URL {shown!r} needs a database driver that is not installed "
            f"({exc}). PostgreSQL support installs with kdbench (psycopg 3); for MySQL "
            "install a driver such as PyMySQL."
        ) from None


def _rdb_storage(spec: StorageSpec) -> optuna.storages.RDBStorage:
    """Workers starting together on an empty database race to create Optuna's tables (a
    UniqueViolation for the losers); once the winner has created them, a retry finds them."""
    import random
    import time

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(8):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    _driver_url(spec.url),
                    engine_kwargs={"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2},
                    heartbeat_interval=spec.heartbeat_interval,
                    grace_period=spec.grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=3
                    ),
                )
        except (IntegrityError, ProgrammingError):
            if attempt == 7:
                raise
            time.sleep(0.2 + random.random() * 0.5 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _unreachable(exc: Exception, url: str, shown: str) -> InputError:
    text = str(exc).replace(url, shown)
    if "@" in url:
        secret = url.split("://", 1)[-1].rsplit("@", 1)[0].partition(":")[2]
        if secret:
            text = text.replace(secret, "***")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return InputError(
        f"The storage {shown!r} must be a reachable database. Got {type(exc).__name__}: {first}"
    )


def study_name(base: str, task: str, phase: str = "search") -> str:
    return f"{base}:{task}" if phase == "search" else f"{base}:{task}:{phase}"


def journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / "study.journal"
