"""``kdbench data SUITE --out DIR``: what a user needs to train a compatible teacher, or to
check any number of a run independently, written per task into ``DIR/<task>/``:

* ``rows.csv`` — ``row`` (the example's index in the source: the user's file, in file order,
  or ``data.npz`` for a built-in task), ``split`` (``train`` / ``val`` / ``test``), ``label``
  (the encoded class, 0..C-1), ``class`` (its name as written in the data) and ``transfer``
  (whether the students learn from the row: the labelled rows of the ``[transfer]`` set, every
  training row without one);
* ``encoding.json`` — the class order (class ``k`` is ``classes[k]``) and how it was chosen;
* ``scaler.json`` — the training-split standardisation, per flattened feature:
  ``x_scaled = (x - mean) / scale``, or ``null`` with ``[task] scale = false``;
* ``data.npz`` — built-in tasks only: the generated features ``X`` (unscaled, ``[N, ...]``) and
  labels ``y`` (encoded), rows in ``row`` order;
* ``README.md`` — the same, in words, with the split sizes.

A streamed task (``images``, ``hf``, ``webdataset``) gets ``rows.csv`` with an ``id`` column
instead of ``row`` (the example's path relative to the folder or listing, its id column or row
position, its shard key), ``scaler.json`` as the per-channel ``mean`` and ``std`` of
``pixel / 255`` (or the teacher's) and ``skipped.json``, the files ``on_bad_example = "skip"``
left out with the reason; no ``data.npz`` (the data stay where they are). A run writes the same
``rows.csv`` into its folder as ``splits-<task>.csv``.

The files come from the same code a run uses (the task's loader and
:func:`bench.tasks.base.split_task`), so a student or
teacher evaluated on the ``test`` rows with this scaler reproduces the run's numbers (tested).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import fmt
from bench.config.suite import Suite
from bench.durable.rundir import atomic_write_bytes, atomic_write_text, check_writable, inside
from bench.group.augment import channel_scaled
from bench.group.transfer import apply_transfer
from bench.tasks import StreamedTask, TaskData
from bench.tasks.base import RawData, split_task
from bench.teachers.preprocess import model_normalization

__all__ = ["write_data_files"]

SPLITS = ("train", "val", "test")


def _rows_csv(task: TaskData) -> str:
    import pandas as pd

    parts = [
        pd.DataFrame({"row": task.rows[s], "split": s, "label": task.split(s)[1].numpy()})
        for s in SPLITS
    ]
    learnt = np.zeros(len(task.y_train), dtype=bool)
    learnt[task.transfer if task.transfer is not None else slice(None)] = True
    parts[0]["transfer"] = learnt
    for part in parts[1:]:
        part["transfer"] = False
    frame = pd.concat(parts).sort_values("row").reset_index(drop=True)
    frame["class"] = [task.class_names[k] for k in frame["label"]]
    return frame.to_csv(index=False)


def _write_streamed(task: StreamedTask, folder: Path) -> None:
    mean, std = task.channel_norm
    atomic_write_text(folder / "rows.csv", task.rows_csv())
    atomic_write_text(folder / "encoding.json", json.dumps(_encoding(task), indent=2) + "\n")  # type: ignore[arg-type]
    scaler = (
        None
        if task.input_kind == "tokens"
        else {"mean": list(mean), "std": list(std), "on": "pixel / 255, per channel"}
    )
    atomic_write_text(folder / "scaler.json", json.dumps(scaler, indent=2) + "\n")
    atomic_write_text(folder / "skipped.json", json.dumps(task.skipped, indent=2) + "\n")
    sizes = task.sizes()
    atomic_write_text(
        folder / "README.md",
        "\n".join(
            [
                f"# The data of task '{task.name}' as kdbench splits and encodes it (streamed)",
                "",
                f"* Rows: `rows.csv` gives each kept example's `id` in "
                f"`{task.source.get('path', '')}`, its `split` (train {fmt.count(sizes['train'])}, "
                f"val {fmt.count(sizes['val'])}, test {fmt.count(sizes['test'])}; stratified by "
                f"sha256(seed:id) within each class, seed {task.config.seed}), its encoded "
                "`label` and its `class`.",
                "* Classes: `encoding.json`: "
                + ", ".join(f"{k} = {n!r}" for k, n in enumerate(task.class_names))
                + ".",
                "* Preprocessing: `scaler.json`: `(pixel / 255 - mean_c) / std_c` per channel "
                f"({task.source.get('normalised_by', 'the training split')}).",
                f"* Left out: `skipped.json` ({len(task.skipped)} file(s) that did not decode, "
                'with [task] on_bad_example = "skip").',
                "",
            ]
        ),
    )


def _encoding(task: TaskData) -> dict[str, object]:
    classes = getattr(task.config, "classes", ())
    if classes:
        rule = "the order of [task] classes"
    elif task.config.kind == "file":
        rule = "sorted order of the label values"
    elif isinstance(task, StreamedTask):
        rule = "the source's order: class folders and label values sorted, a ClassLabel's own"
    else:
        rule = "the built-in task's own order"
    return {"classes": list(task.class_names), "rule": rule}


def _readme(task: TaskData, built_in: bool) -> str:
    sizes = task.sizes()
    source = (
        "`data.npz` (the generated data: `X` unscaled, `y` encoded)"
        if built_in
        else f"`{task.source.get('path', task.config.describe())}` (rows in file order, from 0)"
    )
    scale = (
        "`scaler.json`: standardise each flattened feature with the training split's statistics, "
        "`x_scaled = (x - mean) / scale`"
        if task.scaler_mean is not None
        else "`scaler.json` is `null`: features are used as they are (`[task] scale = false`)"
    )
    return "\n".join(
        [
            f"# The data of task '{task.name}' as kdbench splits and encodes it",
            "",
            f"* Rows: `rows.csv` gives each example's `row` in {source}, its `split` "
            f"(train {fmt.count(sizes['train'])}, val {fmt.count(sizes['val'])}, test {fmt.count(sizes['test'])}; "
            f"stratified, seed {task.config.seed}), its encoded `label` and its `class`.",
            f"* Classes: `encoding.json` ({_encoding(task)['rule']}): "
            + ", ".join(f"{k} = {n!r}" for k, n in enumerate(task.class_names))
            + ".",
            "* Transfer set: `transfer` marks the rows the students learn from (with a "
            "`[transfer]` table a subset of `train`, plus the unlabeled file's rows, which are "
            "not rows of the source; without one every `train` row).",
            f"* Preprocessing: {scale}. kdbench fits it on `train` only; apply the same to every "
            "split.",
            "* A compatible teacher: train on the `train` rows, choose on `val`, never on `test`; "
            "its outputs (offline logits `[K, N, C]` over every row, in `row` order) must follow "
            "the class order above.",
            "",
        ]
    )


def write_data_files(suite: Suite, out: Path) -> list[Path]:
    """Write the files above for every task of ``suite``; return the task folders."""
    out = Path(out)
    check_writable(out, "The output folder (--out)")
    loaded: list[tuple[Any, Any]] = []
    for cfg in suite.tasks:  # every task checked before any write
        if hasattr(cfg, "open_stream"):
            stream: StreamedTask = cfg.open_stream()
            norm = model_normalization(suite.teacher, stream)  # type: ignore[arg-type]
            loaded.append((stream.with_normalization(norm) if norm else stream, None))
            continue
        raw = cfg.load()  # type: ignore[attr-defined]
        task = channel_scaled(split_task(cfg, raw), suite)
        task = apply_transfer(task, suite.transfer, suite.teacher)
        loaded.append((task, raw))
    folders = []
    for task, raw in loaded:
        folder = inside(out, task.name)
        if isinstance(task, StreamedTask):
            _write_streamed(task, folder)
            folders.append(folder)
            continue
        built_in = task.config.kind != "file"
        atomic_write_text(folder / "rows.csv", _rows_csv(task))
        atomic_write_text(folder / "encoding.json", json.dumps(_encoding(task), indent=2) + "\n")
        atomic_write_text(folder / "scaler.json", json.dumps(task.preprocessing(), indent=2) + "\n")
        if built_in:
            atomic_write_bytes(folder / "data.npz", _raw_npz(raw))
        atomic_write_text(folder / "README.md", _readme(task, built_in))
        folders.append(folder)
    return folders


def _raw_npz(raw: RawData) -> bytes:
    """The generated examples in row order, unscaled, exactly as the run generated them."""
    buf = io.BytesIO()
    np.savez(buf, X=raw.x, y=np.asarray(raw.y, dtype=np.int64))
    return buf.getvalue()
