"""The Optuna side of a run: sampler, storage, study identity, heartbeats, trial records.

**The study holds the truth.** A trial's whole record — its row, its per-seed rows and the
scratch baselines it trained — is stored in the trial itself as one JSON user attribute
(:data:`RECORD`), written in one storage operation (one fsync'd line of a journal file, one
transaction of an RDB) *before* the trial is told. The run folder's tables are views rebuilt
from the study (:func:`study_rows`), so a crash at any instant leaves a trial's record
entirely or not at all, and ``kdbench pull`` rebuilds a run folder from the storage alone.

**Sampling is a function of the trial number.** :class:`TrialSeededSampler` gives each trial
a fresh sampler seeded from (sampler seed, trial number), so what trial *n* samples depends
only on *n* and the study's history — not on how many trials this process asked before. A
resumed run therefore continues the search an uninterrupted run would have made, and
workers never replay one another's random sequence.

**Storages.** A journal file in the run folder (one host), or an RDB URL (PostgreSQL via
psycopg 3; several hosts) with heartbeats: a trial whose worker stops beating for
``grace_period`` seconds is failed and re-queued with the same parameters
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`). Passwords in URLs are never
written anywhere (:func:`redact`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from bench.errors import InputError
from bench.faults import fault_point
from bench.stats import pareto_mask

__all__ = [
    "RECORD",
    "RUNGS",
    "AskLock",
    "Heartbeat",
    "StorageSpec",
    "TrialSeededSampler",
    "decode_record",
    "encode_record",
    "json_safe",
    "make_sampler",
    "open_storage",
    "promoted",
    "pruning_callback",
    "redact",
    "rung_epochs",
    "study_name",
]

log = logging.getLogger(__name__)
RECORD = "kdbench_record"  # trial user attribute: the trial's whole record (JSON)
GROUP = "kdbench_group"  # trial user attribute: {"leader", "size", "members", "scratch_seeds"}
WORKER = "kdbench_worker"  # trial user attribute: "host:pid" of the process that asked it
MANIFEST = "kdbench_manifest"  # study user attribute: the run's manifest (redacted)
WEIGHTS = "kdbench_weights"  # confirm trial user attribute: {"seed", "state_dict"} to ship
IDENTITY = "kdbench_identity"  # study user attribute: suite digest + data/teacher fingerprints


# ---------------------------------------------------------------------- sampler
def _derived_seed(seed: int, number: int, param: str | None = None) -> int:
    key = [seed, number] if param is None else [seed, number, zlib.crc32(param.encode())]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Delegate each trial to a fresh sampler built by ``factory(seed_for_this_trial)``.

    TPE and random sampling keep no state across trials except their random generator, so a
    fresh instance per trial — seeded from (``seed``, trial number) — samples exactly what a
    long-lived one would, given the same history, while making trial *n*'s randomness
    independent of the process that asks it (resume, several workers). Each independently
    sampled parameter gets its own instance seeded from (``seed``, trial number, parameter
    name): a trial interrupted between two of its parameters (``ask`` writes them one at a
    time) is completed on resume with the values it would have had.
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = seed
        self._inner: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        inner = self._inner.get(trial.number)
        if inner is None:
            if len(self._inner) > 256:
                self._inner.clear()
            inner = self._inner[trial.number] = self._factory(
                _derived_seed(self._seed, trial.number)
            )
        return inner

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        fault_point("param")
        inner = self._factory(_derived_seed(self._seed, trial.number, param_name))
        return inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)
        self._inner.pop(trial.number, None)

    def reseed_rng(self) -> None:  # randomness is a function of the trial number
        pass


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "tpe":
        return TrialSeededSampler(lambda s: optuna.samplers.TPESampler(seed=s), seed)
    return TrialSeededSampler(lambda s: optuna.samplers.RandomSampler(seed=s), seed)


# ---------------------------------------------------------------------- storage
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


def open_storage(spec: StorageSpec) -> optuna.storages.BaseStorage:
    """The storage of ``spec``, connected; :class:`InputError` (redacted) if it cannot be."""
    if not spec.shared:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(spec.path))
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


class AskLock:
    """Serialises "count the study, then ask" across workers, so the budget is exact.

    Without it two workers can both see one free slot and both ask, and the study ends with
    more trials than the suite's budget. PostgreSQL: a session advisory lock keyed by the
    study name; a journal file: ``flock`` on ``<journal>.asklock``; other databases: none
    (the budget may then be exceeded by up to workers − 1 trials).
    """

    def __init__(self, storage: optuna.storages.BaseStorage, spec: StorageSpec, name: str) -> None:
        import hashlib

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


def study_name(base: str, task: str, phase: str = "search") -> str:
    return f"{base}:{task}" if phase == "search" else f"{base}:{task}:{phase}"


# ---------------------------------------------------------------------- records
def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    try:
        import pandas as pd

        if value is pd.NA:
            return None
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def encode_record(
    number: int,
    row: dict[str, Any],
    seed_rows: list[dict[str, Any]],
    scratch: dict[str, dict[str, float]],
) -> str:
    """Trial ``number``'s record as strict JSON (NaN → null)."""
    return json.dumps(
        json_safe({"trial_number": number, "row": row, "seeds": seed_rows, "scratch": scratch}),
        allow_nan=False,  # insertion order kept: it orders the arch_<name> columns
    )


def decode_record(trial: FrozenTrial) -> dict[str, Any] | None:
    """The trial's own record, or None. A retried trial inherits its failed original's user
    attributes: a record whose trial number is not this trial's is not its own."""
    text = trial.user_attrs.get(RECORD)
    if not isinstance(text, str):
        return None
    record = json.loads(text)
    if record.get("trial_number") != trial.number:
        return None
    return record


# ---------------------------------------------------------------------- heartbeats
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


def pruning_callback(trial: optuna.Trial, n_seeds: int) -> Callable[[int, torch.Tensor], None]:
    """Report the mean validation accuracy of the first ``n_seeds`` members (the trial's
    distilled students) each epoch; raise ``optuna.TrialPruned`` when the pruner says so."""

    def on_epoch(epoch: int, val_acc: torch.Tensor) -> None:
        trial.report(float(val_acc[:n_seeds].mean()), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} on validation accuracy")

    return on_epoch


RUNGS = "kdbench_rungs"  # trial user attribute: {epoch: [val_acc, flops]} at each rung reached


def rung_epochs(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """The epochs at which successive halving decides: ``min_epochs · eta^k ≤ max_epochs /
    eta``, so that stopping at a rung saves at least (1 − 1/eta) of a trial's epochs (with 30
    epochs: 3 and 9; a rung at 27 would stop nearly finished trials to save 3 epochs)."""
    out, r = [], min_epochs
    while r * eta <= max_epochs:
        out.append(r)
        r *= eta
    return out


def _fronts(acc: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """Non-dominated sorting rank (0 = Pareto front) for max ``acc``, min ``flops``."""
    rank = np.full(len(acc), -1)
    left = np.arange(len(acc))
    front = 0
    while len(left):
        mask = pareto_mask(-acc[left], flops[left])
        rank[left[mask]] = front
        left = left[~mask]
        front += 1
    return rank


def promoted(
    me: tuple[float, float], peers: Sequence[tuple[float, float]], eta: int, pareto: bool
) -> bool:
    """The rung rule of kdbench's successive halving (one rung, one trial).

    ``me`` and each of ``peers`` (the earlier trials that reached this rung) are (validation
    accuracy, FLOPs). The trial goes on when fewer than ``eta`` peers exist (warm-up), when —
    with ``pareto`` — no peer is at least as accurate with no more FLOPs (the capacity
    frontier at the rung is never halved: early in training small students trail the larger
    ones they later match, so ranking them against larger peers stops the very students the
    question is about), or when it ranks within the top ⌈n/eta⌉ of the n = len(peers) + 1
    trials. Ranking (NSGA-II's):
    Pareto front index by non-dominated sorting (max accuracy, min FLOPs) when ``pareto``,
    then larger crowding distance within the front (on accuracy and log FLOPs: a front's two
    ends — the smallest and the most accurate student — always rank first, so the small end
    of the capacity curve is not halved away), then higher accuracy; a peer with the same
    values ranks first. With the single objective it is plain accuracy (the 1-D case).
    """
    if len(peers) < eta:
        return True
    pts = [*peers, me]
    acc = np.array([p[0] for p in pts], float)
    flops = np.array([p[1] for p in pts], float) if pareto else np.zeros(len(pts))
    front = _fronts(acc, flops)
    if pareto and front[-1] == 0:
        return True
    crowd = np.zeros(len(pts))
    for f in set(front.tolist()):
        idx = np.flatnonzero(front == f)
        crowd[idx] = _crowding(acc[idx], np.log(np.maximum(flops[idx], 1.0))) if pareto else 0.0
    order = sorted(range(len(pts)), key=lambda i: (front[i], -crowd[i], -acc[i], i))
    return order.index(len(pts) - 1) < math.ceil(len(pts) / eta)


def _crowding(*objectives: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the points of one front (ends: infinite)."""
    n = len(objectives[0])
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for v in objectives:
        order = np.argsort(v, kind="stable")
        span = v[order[-1]] - v[order[0]]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (v[order[2:]] - v[order[:-2]]) / span
    return dist


def journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / "study.journal"
