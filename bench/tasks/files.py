"""Tasks from the user's own data files: CSV, Parquet or NPZ, chosen by the file extension.

* CSV / Parquet: one row per example; ``target`` names the label column; the other columns
  (or those listed in ``features``) are the features and must be numeric and finite. pandas
  (≥ 3) parses CSV floats exactly, so the same data as CSV, Parquet or NPZ give identical
  features (tested).
* NPZ: features in the array ``x_key`` (default ``X``), ``[N, ...]``; labels in ``y_key``
  (default ``y``), ``[N]``. Loaded with ``allow_pickle=False``.

Labels may be ints or strings. They are encoded in sorted order (of the values, so ``"eight"``
is class 0 of the ten digit names), or in the order of ``classes = [...]`` when given: class
``k`` is ``classes[k]``, which is how a teacher whose outputs follow another order is matched.
The encoding is in the manifest (``class_names``) and the report. ``shape = [C, H, W]`` reshapes flat features for image families. Relative paths
are resolved against the suite file's folder, and the resolved path is named in every error.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import InputError
from bench.tasks.base import RawData, TaskConfig, read_common
from bench.validation import Table

__all__ = ["FORMATS", "FileTask", "file_sha256"]

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class FileTask(TaskConfig):
    kind: str = "file"
    path: str = ""
    target: str = "target"
    features: tuple[str, ...] = ()
    x_key: str = "X"
    y_key: str = "y"
    shape: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()  # the label order (class k = classes[k]); () = sorted
    # text classification (bench.tasks.text): the text column, the tokenizer folder ("": a
    # WordPiece trained on the training split), the token length, the trained vocabulary
    text: str = ""
    tokenizer: str = ""
    max_length: int = 128
    vocab_size: int = 8000

    def describe(self) -> str:
        return f"task '{self.name}' ({self.path})"

    @classmethod
    def parse(cls, t: Table, base_dir: Path) -> FileTask:
        d = cls()
        raw_path = t.string("path", "")
        if not raw_path:
            raise t.fail("path", "the path of a .csv, .parquet or .npz file", raw_path)
        path = (base_dir / Path(raw_path).expanduser()).resolve()
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise t.fail("path", "a file ending in .csv, .parquet or .npz", str(path))
        target = t.string("target", d.target)
        features = t.strings("features", ())
        if target in features:
            raise t.fail(
                "features",
                f"a list of feature columns without the target {target!r}",
                list(features),
            )
        x_key, y_key = t.string("x_key", d.x_key), t.string("y_key", d.y_key)
        if fmt == "npz" and x_key == y_key:
            raise t.fail("y_key", f"an array name other than x_key ({x_key!r})", y_key)
        shape = t.ints("shape", (), low=1)
        classes = _classes(t)
        if shape and len(shape) not in (1, 2, 3):
            raise t.fail("shape", "[C, H, W], [H, W] or [D]", list(shape))
        text = t.string("text", "")
        if text and fmt == "npz":
            raise t.fail("text", "left out for an .npz file (texts come from a table)", text)
        if text and (features or shape):
            raise t.fail(
                "text", "given without 'features' or 'shape' (the text is the input)", text
            )
        tokenizer = t.string("tokenizer", "")
        text_keys = {
            "tokenizer": str((base_dir / Path(tokenizer).expanduser()).resolve())
            if tokenizer
            else "",
            "max_length": t.number("max_length", d.max_length, int, 4, 8192),
            "vocab_size": t.number("vocab_size", d.vocab_size, int, 64, 1_000_000),
        }
        for key in ("tokenizer", "max_length", "vocab_size"):
            if t.has(key) and not text:
                raise t.fail(key, "left out unless 'text' names the text column", t.data[key])
        return cls(
            path=str(path),
            target=target,
            features=features,
            x_key=x_key,
            y_key=y_key,
            shape=shape,
            classes=classes,
            text=text,
            **text_keys,
            **read_common(t, path.stem),
        )

    # ------------------------------------------------------------------ loading
    def _fail(self, problem: str) -> InputError:
        return InputError(f"The data file {self.path} of task '{self.name}' {problem}")

    def load(self) -> RawData:
        path = Path(self.path)
        if not path.is_file():
            raise self._fail("must exist and be a file. It does not.")
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise self._fail(f"must be readable. Got {type(exc).__name__}: {exc}.") from None
        fmt = FORMATS[path.suffix.lower()]
        source: dict[str, Any] = {"path": str(path), "format": fmt, "sha256": digest}
        if fmt == "npz":
            x, labels = self._read_npz(path)
        else:  # the feature names: what an unlabeled transfer file must have too
            x, labels, source["features"] = self._read_table(path, fmt)
        x = self._reshape(x)
        y, names = self._encode(labels)
        return RawData(x, y, names, source)

    def _read_table(self, path: Path, fmt: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        import pandas as pd

        if fmt == "parquet":  # before reading: pyarrow cannot read a repeated name into pandas
            try:
                names = self._header(path, fmt)
            except Exception:
                names = []  # unreadable: read_parquet below says why
            self._check_header(names)
        try:
            frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        except UnicodeDecodeError as exc:
            raise self._fail(
                f"must be UTF-8 text to be read as CSV. Got {exc.reason} at byte {exc.start}."
            ) from None
        except Exception as exc:  # pandas/pyarrow raise many types for unparseable files
            what = "CSV" if fmt == "csv" else "Parquet"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self._fail(
                f"must be a valid {what} file. Got {type(exc).__name__}: {first}"
            ) from None
        if fmt == "csv":
            self._check_header(self._header(path, fmt))
        columns = [str(c) for c in frame.columns]
        frame.columns = columns
        if self.target not in columns:
            raise self._fail(
                f"must have the label column 'target' = {self.target!r}. Its columns are: "
                f"{', '.join(columns) or '(none)'}."
            )
        if self.text:
            return self._read_texts(frame, columns)
        features = list(self.features) or [c for c in columns if c != self.target]
        missing = [c for c in features if c not in columns]
        if missing:
            raise self._fail(
                f"must have the feature column {missing[0]!r} named in 'features'. It does not."
            )
        if not features:
            raise self._fail("must have at least one feature column besides the target.")
        bad = [
            c
            for c in features
            if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
        ]
        if bad:
            raise self._fail(
                f"must have numeric feature columns. Got non-numeric column {bad[0]!r} ({frame[bad[0]].dtype})."
            )
        x = frame[features].to_numpy(dtype=np.float64)
        self._check_finite(x, features)
        return x, frame[self.target].to_numpy(), features

    def _read_texts(
        self, frame: Any, columns: list[str]
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The text column as strings (an empty or missing text is refused)."""
        if self.text not in columns:
            raise self._fail(
                f"must have the text column 'text' = {self.text!r}. Its columns are: "
                f"{', '.join(columns)}."
            )
        col = frame[self.text]
        empty = col.isna() | (col.astype(str).str.strip() == "")
        if empty.any():
            raise self._fail(
                f"must have a text in every row of column {self.text!r}. Got {int(empty.sum())} "
                f"empty row(s) (first: row {int(np.flatnonzero(empty.to_numpy())[0])})."
            )
        return col.astype(str).to_numpy(dtype=object), frame[self.target].to_numpy(), [self.text]

    @staticmethod
    def _header(path: Path, fmt: str) -> list[str]:
        """The column names as the file has them (pandas renames a repeated CSV name to
        ``name.1`` and an empty one to ``Unnamed: k``, so they are read from the file)."""
        if fmt == "csv":
            import csv

            with path.open(newline="", encoding="utf-8") as f:
                return next(csv.reader(f), [])
        import pyarrow.parquet as pq

        return [str(n) for n in pq.read_schema(path).names]

    def _check_header(self, names: list[str]) -> None:
        """Refuse a header that names a column twice or leaves one unnamed: pandas would
        rename the copy, and a label read as a feature is a silent wrong result."""
        seen: set[str] = set()
        for i, name in enumerate(names):
            if not name.strip():
                raise self._fail(
                    f"must name every column of its header. Column {i + 1} has no name."
                )
            if name in seen:
                raise self._fail(f"must name each column once in its header. Got {name!r} twice.")
            seen.add(name)

    def _read_npz(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                for key in (self.x_key, self.y_key):
                    if key not in keys:
                        raise self._fail(
                            f"must hold an array named {key!r}. Its arrays are: {', '.join(keys) or '(none)'}."
                        )
                x, y = archive[self.x_key], archive[self.y_key]
        except InputError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self._fail(
                f"must be a valid NPZ archive of plain arrays. Got {type(exc).__name__}: {first}"
            ) from None
        if y.ndim != 1 or x.ndim < 2 or len(x) != len(y):
            raise self._fail(
                f"must hold {self.x_key!r} as [N, ...] and {self.y_key!r} as [N]. "
                f"Got shapes {list(x.shape)} and {list(y.shape)}."
            )
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise self._fail(f"must hold numeric features in {self.x_key!r}. Got dtype {x.dtype}.")
        x = x.astype(np.float64)
        self._check_finite(x.reshape(len(x), -1), None)
        return x, y

    def _check_finite(self, x: np.ndarray, columns: list[str] | None) -> None:
        finite = np.isfinite(x)
        if finite.all():
            return
        bad_rows = int((~finite).any(axis=1).sum())
        col = int(np.argmin(finite.all(axis=0)))
        name = repr(columns[col]) if columns is not None else f"feature {col}"
        raise self._fail(
            f"must have finite features (no NaN or inf). Got {bad_rows} row(s) with missing or "
            f"infinite values, first in column {name}."
        )

    def _reshape(self, x: np.ndarray) -> np.ndarray:
        if not self.shape or self.text:
            return x
        per_row = math.prod(x.shape[1:])
        if math.prod(self.shape) != per_row:
            raise InputError(
                f"The 'shape' parameter of task '{self.name}' must have as many values as a row "
                f"of {self.path} has features ({per_row}). Got {list(self.shape)} instead."
            )
        return x.reshape(len(x), *self.shape)

    def _encode(self, labels: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        import pandas as pd

        series = pd.Series(labels)
        missing = series.isna() | (series.astype(str).str.strip() == "")
        if missing.any():
            raise self._fail(
                f"must have a label in every row. Got {int(missing.sum())} row(s) without one "
                f"(first: row {int(np.flatnonzero(missing.to_numpy())[0])})."
            )
        values: Any = series.to_numpy()
        if np.issubdtype(values.dtype, np.floating):
            if not np.all(np.equal(np.mod(values, 1), 0)):
                raise self._fail("must have integer or string labels. Got fractional numbers.")
            values = values.astype(np.int64)
        codes, uniques = pd.factorize(pd.Series(values), sort=True)
        names = tuple(str(u) for u in uniques)
        if not self.classes:
            return codes.astype(np.int64), names
        unknown = [n for n in names if n not in self.classes]
        if unknown:
            raise InputError(
                f"The 'classes' parameter of task '{self.name}' must list every label of "
                f"{self.path}. Got {list(self.classes)}, without {unknown[0]!r}."
            )
        absent = [c for c in self.classes if c not in names]
        if absent:
            raise InputError(
                f"The 'classes' parameter of task '{self.name}' must list only labels that "
                f"{self.path} has. Got {absent[0]!r}, which no row has."
            )
        order = np.array([self.classes.index(n) for n in names], dtype=np.int64)
        return order[codes], self.classes


def _classes(t: Table) -> tuple[str, ...]:
    """``classes``: the labels as written in the data (strings or ints), each once."""
    names = t.labels("classes", "an array of the labels as written in the data")
    if len(names) == 1:
        raise t.fail("classes", "at least two labels", t.data["classes"])
    return names
