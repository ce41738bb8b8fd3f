"""``manifest.json``: what ran, where, with which data and teacher, and its status."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.errors import InputError
from bench.records.schema import SCHEMA_VERSION, version_hint
from bench.rundir import atomic_write_text

__all__ = ["Manifest"]


@dataclass
class Manifest:
    """``manifest.json``: what ran, where, with which data and teacher, and its status.

    Written by :meth:`write` and read by :meth:`read` only; ``schema_version`` is checked.
    """

    run_id: str
    status: str  # running | complete | interrupted
    suite: dict[str, Any]
    suite_sha256: str
    created_utc: str
    updated_utc: str = ""
    schema_version: int = SCHEMA_VERSION
    suite_source: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    train_device: str = "cpu"
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    study_storage: str = "study.journal"  # a journal file name, or the RDB URL (redacted)
    study: str = ""  # the studies' base name: <study>:<task>[:confirm]
    mode: str = "exclusive"  # exclusive (local run folder) | shared (RDB) | cooperative
    workers: int = 1
    plugins: dict[str, str] = field(default_factory=dict)
    n_trials: int = 0
    pulled_from: str = ""

    def write(self, run_dir: Path) -> None:
        atomic_write_text(
            Path(run_dir) / "manifest.json", json.dumps(asdict(self), indent=2, default=str)
        )

    @classmethod
    def read(cls, run_dir: Path) -> Manifest:
        path = Path(run_dir) / "manifest.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(
                f"The run folder {run_dir} must hold manifest.json. It does not."
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"The manifest {path} must be valid JSON. Got: {exc}.") from None
        if not isinstance(data, dict):
            raise InputError(
                f"The manifest {path} must be a JSON object. Got {type(data).__name__}."
            )
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"The manifest {path} must have schema_version {SCHEMA_VERSION} (this kdbench). "
                f"Got {version!r} instead: {version_hint(version)}."
            )
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "The manifest") -> Manifest:
        known = {f.name for f in fields(cls)}
        required = ("run_id", "status", "suite", "suite_sha256", "created_utc")
        absent = [k for k in required if k not in data]
        if absent:
            raise InputError(f"The manifest {where} must have the key {absent[0]!r}. It does not.")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
