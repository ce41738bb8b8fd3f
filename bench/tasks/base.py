"""What every task kind shares: its config fields, the raw data it loads, the split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.durable import faults
from bench.errors import InputError
from bench.validation import SEED_MAX, Table

__all__ = ["RawData", "TaskConfig", "TaskData", "read_common", "split_task", "task_from_file"]


@dataclass(frozen=True)
class TaskConfig:
    """Fields every task kind has; kinds subclass it with their own."""

    kind: str = "synthetic"
    name: str = ""
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    scale: bool = True

    def describe(self) -> str:
        """Where the data come from, for messages."""
        return f"task '{self.name}' ({self.kind})"


def read_common(t: Table, default_name: str) -> dict[str, Any]:
    """The shared keys: name, split fractions, seed, scale."""
    d = TaskConfig()
    return {
        "name": t.string("name", "") or default_name,
        "val_fraction": t.number("val_fraction", d.val_fraction, float, 0.0, 0.5, low_open=True),
        "test_fraction": t.number("test_fraction", d.test_fraction, float, 0.0, 0.5, low_open=True),
        "seed": t.number("seed", d.seed, int, 0, SEED_MAX),
        "scale": t.boolean("scale", d.scale),
    }


@dataclass(frozen=True)
class RawData:
    """A task before splitting: features ``[N, *input_shape]`` (float64) and labels 0..C-1."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    source: dict[str, Any] = field(default_factory=dict)  # e.g. path and sha256 of a file


@dataclass(frozen=True)
class TaskData:
    """The three splits of a task as float32 features (or, for text, int64 token ids, 0 =
    padding) and int64 labels.

    ``rows`` holds, per split, the row indices into the task's source (the generated data or
    the user's file), which is how offline teacher logits are aligned with the splits.
    ``data_params`` are the architecture values the data fix (``vocab_size`` of a text task:
    :attr:`kdcore.ArchParam.from_data`); ``tokenizer_json`` the tokenizer a text task used;
    ``normalization`` says how images were normalised when a model stated it
    (:mod:`bench.teachers.preprocess`; the scaler then holds the same affine map per feature).
    """

    name: str
    config: TaskConfig
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    rows: dict[str, np.ndarray]
    n_rows: int
    source: dict[str, Any] = field(default_factory=dict)
    scaler_mean: np.ndarray | None = None  # per flattened feature, fitted on train; None: scale off
    scaler_scale: np.ndarray | None = None
    # [transfer] (bench.group.transfer): the labelled transfer rows (indices into the training
    # split; None: all of it), the extra unlabeled rows (scaled like train), the omitted classes
    transfer: np.ndarray | None = None
    x_unlabeled: torch.Tensor | None = None
    omitted: tuple[int, ...] = ()
    input_kind: str = "features"  # or "tokens"
    data_params: dict[str, int] = field(default_factory=dict)
    tokenizer_json: str = ""
    normalization: dict[str, Any] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def inputs(self) -> dict[str, torch.Tensor]:
        """The features a teacher runs on: every split, and a transfer set's unlabeled rows
        (``"unlabeled"``) when there are some."""
        out = {s: self.split(s)[0] for s in ("train", "val", "test")}
        if self.x_unlabeled is not None:
            out["unlabeled"] = self.x_unlabeled
        return out

    def fingerprint(self) -> str:
        """sha256 of the split data themselves (not of their config): keys the teacher cache."""
        h = hashlib.sha256(repr((self.input_shape, self.class_names)).encode())
        for s in ("train", "val", "test"):
            x, y = self.split(s)
            h.update(x.numpy().tobytes())
            h.update(y.numpy().tobytes())
        return h.hexdigest()

    def data_sha256(self) -> str:
        """The data's identity for a run: the source file's sha256 where there is one, else
        :meth:`fingerprint` (a resumed or joined run must see the same)."""
        return str(self.source.get("sha256") or self.fingerprint())

    def preprocessing(self) -> dict[str, list[float]] | None:
        """The training-split scaler as plain lists (``mean``, ``scale``), or None (scale off)."""
        if self.scaler_mean is None or self.scaler_scale is None:
            return None
        return {"mean": self.scaler_mean.tolist(), "scale": self.scaler_scale.tolist()}

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    @property
    def transfer_is_subset(self) -> bool:
        """Whether the transfer set's labelled rows are fewer than the training split's."""
        return self.transfer is not None and len(self.transfer) < len(self.y_train)

    def transfer_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled rows of the transfer set (the whole training split without one)."""
        if self.transfer is None:
            return self.x_train, self.y_train
        rows = torch.as_tensor(self.transfer)
        return self.x_train[rows], self.y_train[rows]

    def save(self, path: Path) -> None:
        """The loaded splits as one tensor file (for local workers: :func:`task_from_file`
        reads it back without loading the data again or importing scikit-learn)."""
        torch.save(
            {
                "name": self.name,
                "splits": {s: list(self.split(s)) for s in ("train", "val", "test")},
                "num_classes": self.num_classes,
                "class_names": list(self.class_names),
                "rows": {k: torch.from_numpy(np.asarray(v)) for k, v in self.rows.items()},
                "n_rows": self.n_rows,
                "source": json.dumps(self.source, default=str),
                "scaler": None
                if self.scaler_mean is None or self.scaler_scale is None
                else [torch.from_numpy(self.scaler_mean), torch.from_numpy(self.scaler_scale)],
                "transfer": None if self.transfer is None else torch.from_numpy(self.transfer),
                "x_unlabeled": self.x_unlabeled,
                "omitted": list(self.omitted),
                "input_kind": self.input_kind,
                "data_params": dict(self.data_params),
                "tokenizer_json": self.tokenizer_json,
                "normalization": json.dumps(self.normalization),
            },
            path,
        )


def task_from_file(path: Path, cfg: TaskConfig) -> TaskData:
    """A :class:`TaskData` written by :meth:`TaskData.save` (loaded with weights_only)."""
    d = torch.load(path, weights_only=True)
    (xt, yt), (xv, yv), (xs, ys) = (d["splits"][s] for s in ("train", "val", "test"))
    scaler = d["scaler"]
    return TaskData(
        name=d["name"],
        config=cfg,
        x_train=xt,
        y_train=yt,
        x_val=xv,
        y_val=yv,
        x_test=xs,
        y_test=ys,
        num_classes=int(d["num_classes"]),
        class_names=tuple(d["class_names"]),
        rows={k: v.numpy() for k, v in d["rows"].items()},
        n_rows=int(d["n_rows"]),
        source=json.loads(d["source"]),
        scaler_mean=None if scaler is None else scaler[0].numpy(),
        scaler_scale=None if scaler is None else scaler[1].numpy(),
        transfer=None if d.get("transfer") is None else d["transfer"].numpy(),
        x_unlabeled=d.get("x_unlabeled"),
        omitted=tuple(int(k) for k in d.get("omitted", ())),
        input_kind=str(d.get("input_kind", "features")),
        data_params={k: int(v) for k, v in d.get("data_params", {}).items()},
        tokenizer_json=str(d.get("tokenizer_json", "")),
        normalization=json.loads(d.get("normalization") or "null"),
    )


def _split_rows(
    cfg: TaskConfig, raw: RawData, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded train / val / test row indices, or one line on why they cannot be."""
    where = cfg.describe()
    num_classes = len(raw.class_names)
    if num_classes < 2:
        raise InputError(f"The data of {where} must have at least 2 classes. Got {num_classes}.")
    counts = np.bincount(y, minlength=num_classes)
    holdout = cfg.val_fraction + cfg.test_fraction
    # Each class needs a row in train, val and test: at least 1/min(fraction) rows, and 3.
    need = max(3, int(np.ceil(1.0 / min(cfg.val_fraction, cfg.test_fraction, 1 - holdout))))
    thin = int(np.argmin(counts))
    if counts[thin] < need:
        raise InputError(
            f"The data of {where} must have at least {need} rows per class for a stratified "
            f"train/val/test split ({cfg.val_fraction:g}/{cfg.test_fraction:g}). Got "
            f"{int(counts[thin])} rows of class {raw.class_names[thin]!r} instead."
        )
    from sklearn.model_selection import train_test_split  # here: workers never need it

    index = np.arange(len(y))
    try:
        i_train, i_rest = train_test_split(
            index, test_size=holdout, stratify=y, random_state=cfg.seed
        )
        i_val, i_test = train_test_split(
            i_rest,
            test_size=cfg.test_fraction / holdout,
            stratify=y[i_rest],
            random_state=cfg.seed,
        )
    except ValueError as exc:
        raise InputError(
            f"The data of {where} must allow a stratified split with val_fraction "
            f"{cfg.val_fraction:g} and test_fraction {cfg.test_fraction:g} "
            f"(rows per class: {dict(zip(raw.class_names, counts.tolist(), strict=True))}). "
            f"Got: {exc}"
        ) from None
    return i_train, i_val, i_test


def _tokenized(
    cfg: TaskConfig,
    raw: RawData,
    i_train: np.ndarray,
    tokenizer: str,
    tokenizer_json: str,
    cache_dir: Path | None,
) -> tuple[RawData, dict[str, Any]]:
    """A text task's token ids (as the raw data) and the TaskData fields they set."""
    from bench.tasks.text import tokenize

    tok = tokenize(
        raw.x,
        i_train,
        max_length=int(getattr(cfg, "max_length", 128)),
        vocab_size=int(getattr(cfg, "vocab_size", 8000)),
        tokenizer=tokenizer or str(getattr(cfg, "tokenizer", "")),
        tokenizer_json=tokenizer_json,
        cache_dir=cache_dir,
    )
    extra = {
        "input_kind": "tokens",
        "data_params": {"vocab_size": tok.vocab_size},
        "tokenizer_json": tok.tokenizer_json,
    }
    return RawData(tok.ids, raw.y, raw.class_names, {**raw.source, "tokenizer": tok.source}), extra


def split_task(
    cfg: TaskConfig,
    raw: RawData,
    *,
    tokenizer: str = "",
    tokenizer_json: str = "",
    cache_dir: Path | None = None,
) -> TaskData:
    """Stratified, seeded train/val/test split; the scaler (per feature) is fitted on train
    only. Texts are tokenized (:mod:`bench.tasks.text`: ``tokenizer``, a folder, overrides the
    task's own; without either a WordPiece is trained on the training split), not scaled."""
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(raw.y, dtype=np.int64)
    i_train, i_val, i_test = _split_rows(cfg, raw, y)
    y_test = y[i_test]
    if faults.active("permute", "test_labels"):  # a test seam (bench.durable.faults)
        y_test = np.random.default_rng(0).permutation(y_test)
    extra: dict[str, Any] = {}
    if raw.x.dtype == object:  # texts
        raw, extra = _tokenized(cfg, raw, i_train, tokenizer, tokenizer_json, cache_dir)
    x = raw.x
    num_classes = len(raw.class_names)
    flat = x.reshape(len(x), -1)
    tokens = bool(extra)
    scaler = StandardScaler().fit(flat[i_train]) if cfg.scale and not tokens else None
    shape = x.shape[1:]

    def tensor(rows: np.ndarray) -> torch.Tensor:
        part = flat[rows]
        if scaler is not None:
            part = scaler.transform(part)
        dtype = torch.int64 if tokens else torch.float32
        return torch.as_tensor(part, dtype=dtype).reshape(len(rows), *shape)

    return TaskData(
        name=cfg.name,
        config=cfg,
        x_train=tensor(i_train),
        y_train=torch.as_tensor(y[i_train]),
        x_val=tensor(i_val),
        y_val=torch.as_tensor(y[i_val]),
        x_test=tensor(i_test),
        y_test=torch.as_tensor(y_test),
        num_classes=num_classes,
        class_names=tuple(raw.class_names),
        rows={"train": i_train, "val": i_val, "test": i_test},
        n_rows=len(y),
        source=dict(raw.source),
        scaler_mean=None if scaler is None else scaler.mean_.copy(),
        scaler_scale=None if scaler is None else scaler.scale_.copy(),
        **extra,
    )
