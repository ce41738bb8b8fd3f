"""Heartbeats for trials that kdbench asks and tells itself (RDB storages only)."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

__all__ = ["Heartbeat", "quiet_heartbeat_warning"]

log = logging.getLogger(__name__)


class Heartbeat:
    """Beats for this worker's running trials of an RDB storage (no-op for journals).

    Optuna only beats inside ``Study.optimize``; kdbench asks and tells trials itself (to
    train several at once), so it beats itself. The first beat is recorded at once: a
    RUNNING trial without any beat is never considered stale by Optuna.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, interval: int) -> None:
        self._storage = storage
        self._interval = interval
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.enabled = hasattr(storage, "record_heartbeat") and bool(
            getattr(storage, "get_heartbeat_interval", lambda: None)()
        )

    def add(self, study: optuna.Study, number: int) -> None:
        if not self.enabled:
            return
        trial_id = self._storage.get_trial_id_from_study_id_trial_number(
            self._storage.get_study_id_from_name(study.study_name), number
        )
        self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        with self._lock:
            self._ids.add(trial_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kdbench-heartbeat", daemon=True)
            self._thread.start()

    def done(self, study: optuna.Study, number: int) -> None:
        if not self.enabled:
            return
        trial_id = self._storage.get_trial_id_from_study_id_trial_number(
            self._storage.get_study_id_from_name(study.study_name), number
        )
        with self._lock:
            self._ids.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
                except Exception as exc:  # a missed beat is retried at the next interval
                    log.warning("heartbeat for trial id %s failed: %s", trial_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextmanager
def quiet_heartbeat_warning() -> Iterator[None]:
    """Optuna warns that heartbeats are meant for ``optimize``; kdbench beats itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
