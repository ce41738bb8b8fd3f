"""``manifest.json``: what ran, where, with which data and teacher, and its status."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.durable.jsonsafe import json_safe
from bench.durable.rundir import atomic_write_text
from bench.errors import InputError
from bench.fmt import to_float
from bench.records.schema import SCHEMA_VERSION, version_hint

__all__ = ["Manifest", "TaskEntry", "TeacherSummary", "task_entry"]


def _typed(cls: type, data: Mapping[str, Any], floats: frozenset[str]) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    return {k: (to_float(v) if k in floats else v) for k, v in data.items() if k in known}


@dataclass(frozen=True)
class TeacherSummary:
    """``tasks.<task>.teacher`` of the manifest: the teacher as evaluated (accuracies are
    fractions; NaN where not known, e.g. the parameters of offline logits)."""

    kind: str = "train"  # the source: train | checkpoint | checkpoints | logits
    source: str = ""  # the file(s), or the cache entry, it came from
    reused: bool = False
    arch: str = "?"
    members: int = 0
    combine: str = "?"
    params: float = math.nan
    flops: float = math.nan
    ensemble_acc: float = math.nan
    ensemble_val_acc: float = math.nan
    best_member_acc: float = math.nan
    mean_member_acc: float = math.nan
    member_val_acc: tuple[float, ...] = ()
    member_test_acc: tuple[float, ...] = ()
    ensemble_ece: float = math.nan
    mean_max_prob_train: float = math.nan
    key: str = ""
    sha256: str = ""
    outputs_sha256: str = ""
    train_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def specialists(self) -> dict[str, Any] | None:
        """What a specialist system adds (``bench.teachers.specialist_summary``), or None."""
        spec = self.extra.get("specialists")
        return spec if isinstance(spec, dict) else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TeacherSummary:
        floats = frozenset(
            f.name for f in fields(cls) if f.type == "float" and f.name != "train_time_s"
        )
        values = _typed(cls, data, floats)
        for name in ("member_val_acc", "member_test_acc"):
            values[name] = tuple(to_float(v) for v in values.get(name) or ())
        return cls(**values)


@dataclass(frozen=True)
class TaskEntry:
    """``tasks.<task>`` of the manifest: the task's data, its teacher and its timings."""

    config: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = ()
    data_sha256: str = ""
    data_source: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, list[float]] | None = None
    # how images were normalised when the teacher's model stated it (bench.teachers.preprocess)
    normalization: dict[str, Any] | None = None
    input_kind: str = "features"  # or "tokens" (a text task)
    data_params: dict[str, int] = field(default_factory=dict)  # e.g. a text task's vocab_size
    tokenizer: str = ""  # a text task's tokenizer, a file in the run folder
    splits: str = ""  # a streamed task's split (ids, split, label): a file in the run folder
    transfer: dict[str, Any] = field(default_factory=dict)  # bench.group.transfer.transfer_summary
    teacher: TeacherSummary = field(default_factory=TeacherSummary)
    warnings: tuple[str, ...] = ()
    ensemble_latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    ensemble_columns: dict[str, Any] = field(default_factory=dict)
    runtimes: dict[str, str] = field(default_factory=dict)  # runtime -> measured, or why not
    timings_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskEntry:
        values = _typed(cls, data, frozenset())
        values["teacher"] = TeacherSummary.from_dict(data.get("teacher") or {})
        for name in ("class_names", "input_shape", "warnings"):
            values[name] = tuple(values.get(name) or ())
        values["data_source"] = dict(values.get("data_source") or {})
        return cls(**values)


def task_entry(manifest: Mapping[str, Any], task: str) -> TaskEntry:
    """The typed entry of ``task`` in a manifest's dict form (empty when it has none)."""
    return TaskEntry.from_dict((manifest.get("tasks") or {}).get(task) or {})


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
    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    study_storage: str = "study.journal"  # a journal file name, or the RDB URL (redacted)
    study: str = ""  # the studies' base name: <study>:<task>[:certify[-N]]
    mode: str = "exclusive"  # exclusive (local run folder) | shared (RDB) | cooperative
    workers: int = 1
    plugins: dict[str, str] = field(default_factory=dict)
    n_trials: int = 0
    pulled_from: str = ""
    certify_rounds: list[float] = field(default_factory=list)  # each round's tolerance (a fraction)

    def write(self, run_dir: Path) -> None:
        """``manifest.json`` in strict JSON (NaN as null), atomically."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        atomic_write_text(Path(run_dir) / "manifest.json", text)

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
        values = {k: v for k, v in data.items() if k in known}
        values["tasks"] = {
            name: entry if isinstance(entry, TaskEntry) else TaskEntry.from_dict(entry or {})
            for name, entry in (data.get("tasks") or {}).items()
        }
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as strict-JSON-ready values (NaN as None)."""
        out: dict[str, Any] = json_safe(asdict(self))
        return out

    def task(self, name: str) -> TaskEntry:
        """The typed entry of task ``name`` (empty when the manifest has none)."""
        return self.tasks.get(name) or TaskEntry()
