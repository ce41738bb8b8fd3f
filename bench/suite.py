"""Suite files (TOML) → validated, frozen configuration objects.

Every rule lives here. A violation raises :class:`SuiteError` whose message names the key,
the rule and the value received, e.g. ``The 'width.low' parameter of [search] must be an int
in [1, 4096]. Got -3 instead.``; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdcore import COMBINE_MODES, get_family, list_families

__all__ = [
    "BudgetConfig",
    "ConfirmConfig",
    "MeasureConfig",
    "Range",
    "SearchSpace",
    "StudentTraining",
    "Suite",
    "SuiteError",
    "TaskConfig",
    "TeacherConfig",
    "load_suite",
    "parse_suite",
]

TASK_KINDS = ("synthetic", "digits", "csv")
SAMPLERS = ("tpe", "random")
OBJECTIVES = ("pareto", "val_acc")


class SuiteError(ValueError):
    """A suite file breaks a rule; the message names key, rule and value."""


# ---------------------------------------------------------------------- config objects
@dataclass(frozen=True)
class Range:
    """A search range; ``low == high`` means a fixed value."""

    low: float
    high: float
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high


@dataclass(frozen=True)
class TaskConfig:
    kind: str = "synthetic"
    name: str = ""
    n_samples: int = 20000
    n_features: int = 20
    n_informative: int = 10
    n_redundant: int = 5
    n_classes: int = 2
    n_clusters_per_class: int = 2
    class_sep: float = 1.0
    flip_y: float = 0.01
    path: str = ""
    target: str = ""
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class TeacherConfig:
    family: str = "seed_teacher"
    members: int = 5
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    combine: str = "mean_prob"
    checkpoint: str = ""
    seed: int = 1000


@dataclass(frozen=True)
class StudentTraining:
    family: str = "mlp"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 0
    grouped: bool = True


@dataclass(frozen=True)
class SearchSpace:
    width: Range = Range(4, 512, True)
    depth: Range = Range(1, 4)
    temperature: Range = Range(1.0, 20.0, True)
    alpha: Range = Range(0.5, 1.0)


@dataclass(frozen=True)
class ConfirmConfig:
    top_k: int = 0
    seeds: int = 5
    max_val_gap_pp: float = 1.0


@dataclass(frozen=True)
class BudgetConfig:
    trials: int = 40
    seeds: int = 1
    sampler: str = "tpe"
    sampler_seed: int = 0
    objective: str = "pareto"
    storage: str = ""
    group_size: int = 1
    prune: bool = False


@dataclass(frozen=True)
class MeasureConfig:
    device: str = "auto"
    threads: int = 1
    multi_thread: bool = True
    batch: int = 256
    min_run_time: float = 0.1
    warmup: int = 10
    train_threads: int = 0


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[TaskConfig, ...]
    teacher: TeacherConfig = TeacherConfig()
    student: StudentTraining = StudentTraining()
    search: SearchSpace = SearchSpace()
    budget: BudgetConfig = BudgetConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    measure: MeasureConfig = MeasureConfig()
    description: str = ""
    source: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        return data

    def digest(self) -> str:
        """sha256 of the canonical JSON of the validated suite (what actually runs)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------- validation helpers
def _describe_type(kind: type | tuple[type, ...]) -> str:
    names = {int: "an int", float: "a number", str: "a string", bool: "a boolean"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


class _Table:
    """Reads one TOML table, checking each key against a rule; unknown keys are refused."""

    def __init__(self, data: Any, section: str) -> None:
        if not isinstance(data, dict):
            raise SuiteError(f"[{section}] must be a table. Got {data!r} instead.")
        self.data = data
        self.section = section
        self.seen: set[str] = set()

    def _fail(self, key: str, rule: str, value: Any) -> SuiteError:
        return SuiteError(
            f"The '{key}' parameter of [{self.section}] must be {rule}. Got {value!r} instead."
        )

    def number(
        self,
        key: str,
        default: Any,
        kind: type = float,
        low: float = -math.inf,
        high: float = math.inf,
        *,
        low_open: bool = False,
    ) -> Any:
        self.seen.add(key)
        value = self.data.get(key, default)
        lo_br = "(" if low_open else "["
        rule = f"{_describe_type(kind)} in {lo_br}{_fmt(low)}, {_fmt(high)}]"
        ok_type = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type:
            raise self._fail(key, rule, value)
        if not (low < value if low_open else low <= value) or not value <= high:
            raise self._fail(key, rule, value)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        self.seen.add(key)
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean (true or false)", value)
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...] | list[str]) -> str:
        self.seen.add(key)
        value = self.data.get(key, default)
        if value not in choices:
            raise self._fail(key, f"one of {', '.join(map(repr, choices))}", value)
        return value

    def string(self, key: str, default: str) -> str:
        self.seen.add(key)
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def table(self, key: str) -> _Table:
        self.seen.add(key)
        return _Table(self.data.get(key, {}), f"{self.section}.{key}" if self.section else key)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            where = f"[{self.section}]" if self.section else "the top level"
            raise SuiteError(
                f"Unknown key '{unknown[0]}' in {where}. Valid keys: {', '.join(sorted(self.seen))}."
            )


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return str(int(x)) if float(x).is_integer() else str(x)


def _range(
    table: _Table, key: str, default: Range, kind: type, low: float, high: float, *, low_open: bool
) -> Range:
    table.seen.add(key)
    raw = table.data.get(key)
    if raw is None:
        return default
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        v = table.number(key, raw, kind, low, high, low_open=low_open)
        return Range(v, v, False)
    if not isinstance(raw, dict):
        raise table._fail(
            key, f"a fixed value or a table {{low, high, log}} of {_describe_type(kind)}", raw
        )
    sub = _Table(raw, table.section)
    lo = sub.number("low", raw.get("low", default.low), kind, low, high, low_open=low_open)
    hi = sub.number(
        "high",
        raw.get("high", default.high),
        kind,
        low,
        high,
        low_open=low_open,
    )
    log = sub.boolean("log", default.log)
    extra = sorted(set(raw) - {"low", "high", "log"})
    if extra:
        raise SuiteError(
            f"Unknown key '{key}.{extra[0]}' in [{table.section}]. Valid keys: low, high, log."
        )
    if lo > hi:
        raise SuiteError(
            f"The '{key}.low' parameter of [{table.section}] must be <= '{key}.high' ({_fmt(hi)}). "
            f"Got {lo!r} instead."
        )
    return Range(lo, hi, log)


def _rename_range_errors(key: str, fn: Any) -> Any:
    try:
        return fn()
    except SuiteError as exc:
        msg = str(exc)
        msg = msg.replace("The 'low' parameter", f"The '{key}.low' parameter")
        msg = msg.replace("The 'high' parameter", f"The '{key}.high' parameter")
        msg = msg.replace("The 'log' parameter", f"The '{key}.log' parameter")
        raise SuiteError(msg) from None


# ---------------------------------------------------------------------- sections
def _task(data: Any, section: str) -> TaskConfig:
    t = _Table(data, section)
    d = TaskConfig()
    kind = t.choice("kind", d.kind, TASK_KINDS)
    name = t.string("name", "")
    if kind == "synthetic":
        n_features = t.number("n_features", d.n_features, int, 2, 10_000)
        n_classes = t.number("n_classes", d.n_classes, int, 2, 1000)
        cfg = TaskConfig(
            kind=kind,
            name=name or "synthetic",
            n_samples=t.number("n_samples", d.n_samples, int, 100, 10_000_000),
            n_features=n_features,
            n_informative=t.number("n_informative", d.n_informative, int, 1, n_features),
            n_redundant=t.number("n_redundant", d.n_redundant, int, 0, n_features),
            n_classes=n_classes,
            n_clusters_per_class=t.number(
                "n_clusters_per_class", d.n_clusters_per_class, int, 1, 100
            ),
            class_sep=t.number("class_sep", d.class_sep, float, 0.0, 100.0, low_open=True),
            flip_y=t.number("flip_y", d.flip_y, float, 0.0, 1.0),
            val_fraction=t.number("val_fraction", d.val_fraction, float, 0.0, 0.5, low_open=True),
            test_fraction=t.number(
                "test_fraction", d.test_fraction, float, 0.0, 0.5, low_open=True
            ),
            seed=t.number("seed", d.seed, int, 0, 2**31 - 1),
        )
        if cfg.n_informative + cfg.n_redundant > cfg.n_features:
            raise SuiteError(
                f"The 'n_redundant' parameter of [{section}] must be <= n_features - n_informative "
                f"({cfg.n_features - cfg.n_informative}). Got {cfg.n_redundant} instead."
            )
        if cfg.n_classes * cfg.n_clusters_per_class > 2**cfg.n_informative:
            raise SuiteError(
                f"The 'n_clusters_per_class' parameter of [{section}] must satisfy n_classes x "
                f"n_clusters_per_class <= 2**n_informative ({2**cfg.n_informative}). "
                f"Got {cfg.n_clusters_per_class} instead."
            )
    elif kind == "digits":
        cfg = TaskConfig(
            kind=kind,
            name=name or "digits",
            n_samples=1797,
            n_features=64,
            n_classes=10,
            val_fraction=t.number("val_fraction", d.val_fraction, float, 0.0, 0.5, low_open=True),
            test_fraction=t.number(
                "test_fraction", d.test_fraction, float, 0.0, 0.5, low_open=True
            ),
            seed=t.number("seed", d.seed, int, 0, 2**31 - 1),
        )
    else:  # csv
        path = t.string("path", "")
        if not path:
            raise SuiteError(
                f"The 'path' parameter of [{section}] must be a CSV file path. Got '' instead."
            )
        cfg = TaskConfig(
            kind=kind,
            name=name or Path(path).stem,
            path=path,
            target=t.string("target", "target"),
            val_fraction=t.number("val_fraction", d.val_fraction, float, 0.0, 0.5, low_open=True),
            test_fraction=t.number(
                "test_fraction", d.test_fraction, float, 0.0, 0.5, low_open=True
            ),
            seed=t.number("seed", d.seed, int, 0, 2**31 - 1),
        )
    t.finish()
    return cfg


def _teacher(t: _Table) -> TeacherConfig:
    d = TeacherConfig()
    cfg = TeacherConfig(
        family=t.choice(
            "family", d.family, [f for f in list_families() if not get_family(f).arch_params]
        ),
        members=t.number("members", d.members, int, 1, 64),
        epochs=t.number("epochs", d.epochs, int, 1, 10_000),
        batch_size=t.number("batch_size", d.batch_size, int, 1, 1_000_000),
        lr=t.number("lr", d.lr, float, 0.0, 10.0, low_open=True),
        weight_decay=t.number("weight_decay", d.weight_decay, float, 0.0, 1.0),
        combine=t.choice("combine", d.combine, COMBINE_MODES),
        checkpoint=t.string("checkpoint", d.checkpoint),
        seed=t.number("seed", d.seed, int, 0, 2**31 - 1),
    )
    t.finish()
    return cfg


def _student(t: _Table) -> StudentTraining:
    d = StudentTraining()
    cfg = StudentTraining(
        family=t.choice("family", d.family, list_families()),
        epochs=t.number("epochs", d.epochs, int, 1, 10_000),
        batch_size=t.number("batch_size", d.batch_size, int, 1, 1_000_000),
        lr=t.number("lr", d.lr, float, 0.0, 1e30, low_open=True),
        weight_decay=t.number("weight_decay", d.weight_decay, float, 0.0, 1.0),
        patience=t.number("patience", d.patience, int, 0, 10_000),
        grouped=t.boolean("grouped", d.grouped),
    )
    t.finish()
    return cfg


def _search(t: _Table) -> SearchSpace:
    d = SearchSpace()
    cfg = SearchSpace(
        width=_rename_range_errors(
            "width", lambda: _range(t, "width", d.width, int, 1, 4096, low_open=False)
        ),
        depth=_rename_range_errors(
            "depth", lambda: _range(t, "depth", d.depth, int, 1, 16, low_open=False)
        ),
        temperature=_rename_range_errors(
            "temperature",
            lambda: _range(t, "temperature", d.temperature, float, 0.0, 1000.0, low_open=True),
        ),
        alpha=_rename_range_errors(
            "alpha", lambda: _range(t, "alpha", d.alpha, float, 0.0, 1.0, low_open=False)
        ),
    )
    t.finish()
    return cfg


def _budget(t: _Table) -> BudgetConfig:
    d = BudgetConfig()
    cfg = BudgetConfig(
        trials=t.number("trials", d.trials, int, 1, 100_000),
        seeds=t.number("seeds", d.seeds, int, 1, 100),
        sampler=t.choice("sampler", d.sampler, SAMPLERS),
        sampler_seed=t.number("sampler_seed", d.sampler_seed, int, 0, 2**31 - 1),
        objective=t.choice("objective", d.objective, OBJECTIVES),
        storage=t.string("storage", d.storage),
        group_size=t.number("group_size", d.group_size, int, 1, 64),
        prune=t.boolean("prune", d.prune),
    )
    t.finish()
    if cfg.prune and cfg.group_size > 1:
        raise SuiteError(
            "The 'prune' parameter of [budget] must be false when group_size > 1 (a group trains "
            "several trials at once and cannot drop one mid-way). Got True instead."
        )
    if cfg.prune and cfg.objective != "val_acc":
        raise SuiteError(
            "The 'prune' parameter of [budget] must be false unless objective = 'val_acc' "
            "(Optuna pruners do not support multi-objective studies). Got True instead."
        )
    return cfg


def _confirm(t: _Table) -> ConfirmConfig:
    d = ConfirmConfig()
    cfg = ConfirmConfig(
        top_k=t.number("top_k", d.top_k, int, 0, 1000),
        seeds=t.number("seeds", d.seeds, int, 2, 100),
        max_val_gap_pp=t.number("max_val_gap_pp", d.max_val_gap_pp, float, 0.0, 100.0),
    )
    t.finish()
    return cfg


def _measure(t: _Table) -> MeasureConfig:
    d = MeasureConfig()
    device = t.string("device", d.device)
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise t._fail("device", "one of 'auto', 'cpu', 'cuda' or 'cuda:N'", device)
    cfg = MeasureConfig(
        device=device,
        threads=t.number("threads", d.threads, int, 1, 1024),
        multi_thread=t.boolean("multi_thread", d.multi_thread),
        batch=t.number("batch", d.batch, int, 1, 1_000_000),
        min_run_time=t.number("min_run_time", d.min_run_time, float, 0.0, 60.0, low_open=True),
        warmup=t.number("warmup", d.warmup, int, 0, 100_000),
        train_threads=t.number("train_threads", d.train_threads, int, 0, 1024),
    )
    t.finish()
    return cfg


def parse_suite(data: dict[str, Any], name: str = "suite", source: str = "") -> Suite:
    """Validate a parsed TOML document; raise :class:`SuiteError` on the first problem."""
    top = _Table(data, "")
    suite_name = top.string("name", name)
    if not suite_name or not all(c.isalnum() or c in "-_." for c in suite_name):
        raise SuiteError(
            "The 'name' parameter of [suite] must be a non-empty string of letters, digits, "
            f"'-', '_' or '.'. Got {suite_name!r} instead."
        )
    description = top.string("description", "")
    top.seen.update({"task", "tasks"})
    if "task" in data and "tasks" in data:
        raise SuiteError(
            "A suite must give either [task] or [[tasks]], not both. Got both instead."
        )
    if "tasks" in data:
        raw_tasks = data["tasks"]
        if not isinstance(raw_tasks, list) or not raw_tasks:
            raise SuiteError(
                f"The 'tasks' parameter of [suite] must be a non-empty array of tables. Got {raw_tasks!r} instead."
            )
        tasks = tuple(_task(t, f"tasks.{i}") for i, t in enumerate(raw_tasks))
    else:
        tasks = (_task(data.get("task", {}), "task"),)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise SuiteError(
            f"The 'name' parameter of [tasks] must be unique per task. Got {names!r} instead."
        )
    suite = Suite(
        name=suite_name,
        description=description,
        tasks=tasks,
        teacher=_teacher(top.table("teacher")),
        student=_student(top.table("student")),
        search=_search(top.table("search")),
        budget=_budget(top.table("budget")),
        confirm=_confirm(top.table("confirm")),
        measure=_measure(top.table("measure")),
        source=source,
    )
    top.finish()
    return suite


def load_suite(path: str | Path) -> Suite:
    """Read and validate a TOML suite file."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"The suite file must exist. Got {str(path)!r} instead.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"The suite file {str(path)!r} must be valid TOML: {exc}.") from None
    return parse_suite(data, name=path.stem, source=str(path))


def suite_from_dict(data: dict[str, Any]) -> Suite:
    """Rebuild a Suite from :meth:`Suite.to_dict` output (as stored in a manifest)."""

    def rng(d: dict[str, Any]) -> Range:
        return Range(**d)

    return Suite(
        name=data["name"],
        description=data.get("description", ""),
        tasks=tuple(TaskConfig(**t) for t in data["tasks"]),
        teacher=TeacherConfig(**data["teacher"]),
        student=StudentTraining(**data["student"]),
        search=SearchSpace(**{k: rng(v) for k, v in data["search"].items()}),
        budget=BudgetConfig(**data["budget"]),
        confirm=ConfirmConfig(**data["confirm"]),
        measure=MeasureConfig(**data["measure"]),
    )
