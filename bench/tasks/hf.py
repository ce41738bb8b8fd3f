"""A streamed Hugging Face dataset: one saved with ``save_to_disk``, or Parquet shards.

The dataset is opened with the ``datasets`` library, which memory-maps its Arrow files: a row
is read when it is asked for, so memory holds a batch, not the data. Parquet shards (a folder
of ``*.parquet`` files, or one file) are converted once into Arrow files under ``cache_dir``
by ``datasets`` itself (a streaming conversion on disk), then read the same way.

* an **image** column (``image = "..."``): a ``datasets.Image`` feature or raw bytes; decoded
  by PIL here, one example at a time, through :mod:`bench.tasks.images` (the same check pass,
  split and normalisation as an image folder);
* a **text** column (``text = "..."``): tokenized on access (:class:`HFTexts`) with a
  ``tokenizers`` tokenizer — a ``tokenizer.json`` given, or a WordPiece trained on the
  training split's texts, streamed (:func:`train_tokenizer`);
* the **label** column (``target``): a ``ClassLabel`` (its names, in its order), ints or
  strings (sorted, or the order of ``classes``).

Ids: the ``id_column`` when given, else the row's position (a saved dataset's order is part
of it); the split is :func:`bench.tasks.images.split_entries` on those ids.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.errors import InputError
from bench.tasks.images import ImageEntries, encode_labels

__all__ = ["HFEntries", "HFTexts", "list_hf", "train_tokenizer"]


def _open(path: Path, split: str, cache_dir: Path | None) -> Any:
    import datasets

    datasets.disable_progress_bars()
    saved = ("dataset_info.json", "dataset_dict.json")
    if path.is_dir() and any((path / f).exists() for f in saved):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise InputError(
                    f"{path}: the saved dataset has splits {sorted(ds)}; name one with "
                    f'[task] split = "...". Got {split!r} instead.'
                )
            ds = ds[split]
        return ds
    files = sorted(path.glob("**/*.parquet")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise InputError(
            f"{path}: a Hugging Face source must be a folder saved with save_to_disk, or "
            "Parquet shards (a .parquet file or a folder of them). Got neither."
        )
    return datasets.Dataset.from_parquet(
        [str(f) for f in files], cache_dir=str(cache_dir) if cache_dir else None
    )


@dataclasses.dataclass(frozen=True)
class HFEntries(ImageEntries):
    """The rows of a Hugging Face dataset: ``rows[i]`` is example ``i``'s position in ``ds``."""

    ds: Any = None
    rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    column: str = ""

    def subset(self, rows: np.ndarray) -> Self:
        out = super().subset(rows)
        return dataclasses.replace(out, rows=self.rows[rows])

    def where(self, i: int) -> str:
        return f"{self.root} row {int(self.rows[i])} (id {self.ids[i]})"

    def value(self, i: int) -> Any:
        return self.ds[int(self.rows[i])][self.column]

    def open_image(self, i: int) -> Image.Image:
        v = self.value(i)
        if isinstance(v, Image.Image):
            return v
        if isinstance(v, dict) and v.get("bytes") is not None:
            return Image.open(io.BytesIO(v["bytes"]))
        if isinstance(v, dict) and v.get("path"):
            return Image.open(v["path"])
        if isinstance(v, bytes | bytearray):
            return Image.open(io.BytesIO(v))
        raise ValueError(f"the column {self.column!r} holds {type(v).__name__}, not an image")


def list_hf(
    path: str | Path,
    *,
    target: str = "label",
    image: str = "",
    text: str = "",
    classes: Sequence[str] = (),
    id_column: str = "",
    split: str = "train",
    cache_dir: str | Path | None = None,
) -> HFEntries:
    """Open the dataset and read its label (and id) column — nothing else is read."""
    import datasets

    path = Path(path)
    if bool(image) == bool(text):
        raise InputError(
            f'{path}: a Hugging Face source needs exactly one of image = "column" or '
            f'text = "column". Got image={image!r}, text={text!r}.'
        )
    ds = _open(path, split, Path(cache_dir) if cache_dir else None)
    column = image or text
    for col in (target, column, *([id_column] if id_column else [])):
        if col not in ds.column_names:
            raise InputError(
                f"{path}: the dataset must have a column {col!r}. Got columns {ds.column_names}."
            )
    if image and isinstance(ds.features[image], datasets.Image):
        ds = ds.cast_column(image, datasets.Image(decode=False))  # PIL decodes here, checked
    feature = ds.features[target]
    raw = ds.select_columns([target]).to_pandas()[target].to_numpy()
    if isinstance(feature, datasets.ClassLabel):
        names = [feature.names[int(v)] for v in raw]
        labels, order = encode_labels(names, classes or feature.names, str(path))
    else:
        labels, order = encode_labels([str(v) for v in raw], classes, str(path))
    n = len(ds)
    if id_column:
        ids = tuple(str(v) for v in ds.select_columns([id_column]).to_pandas()[id_column])
        if len(set(ids)) != n:
            raise InputError(f"{path}: the id column {id_column!r} must be unique per row.")
    else:
        ids = tuple(str(i) for i in range(n))
    return HFEntries(path, ids, labels, order, ds=ds, rows=np.arange(n), column=column)


def _texts(entries: HFEntries) -> Iterator[str]:
    for i in range(len(entries)):
        yield str(entries.value(i))


def train_tokenizer(entries: HFEntries, vocab_size: int) -> str:
    """A WordPiece tokenizer (as in :mod:`bench.tasks.text`) trained on ``entries``' texts,
    streamed; returned as its JSON, which travels with the task."""
    from bench.tasks.text import train_wordpiece

    return str(train_wordpiece(_texts(entries), vocab_size).to_str())


class HFTexts(Dataset[tuple[torch.Tensor, int]]):
    """Texts tokenized on access: item ``i`` is ``(ids, label)``, int64 ``[max_length]``,
    padded with 0 and truncated (the layout of :mod:`bench.tasks.text`)."""

    def __init__(self, entries: HFEntries, tokenizer_json: str, max_length: int) -> None:
        self.entries, self.tokenizer_json, self.max_length = entries, tokenizer_json, max_length
        self._tok: Any = None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._tok is None:  # built in the worker that reads: a Tokenizer is not forked state
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_str(self.tokenizer_json)
            self._tok.enable_padding(pad_id=0, pad_token="[PAD]", length=self.max_length)
            self._tok.enable_truncation(max_length=self.max_length)
        ids = self._tok.encode(str(self.entries.value(i))).ids
        return torch.tensor(ids, dtype=torch.int64), int(self.entries.labels[i])
