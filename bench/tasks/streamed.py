"""Streamed tasks: ``[task] kind = "images" | "hf" | "webdataset"`` as a :class:`StreamedTask`.

A streamed task is never loaded whole. Its sources (:mod:`bench.tasks.images`,
:mod:`bench.tasks.hf`, :mod:`bench.tasks.shards`) list the examples and their labels; the one
check pass (:func:`bench.tasks.images.scan`) decodes every image once before anything trains,
splits the good ones by stable ids and sums the training split's per-channel statistics. What a
run then holds in memory is the labels, the ids and the statistics; the inputs are decoded in
DataLoader workers (:meth:`StreamedTask.dataset`) each time a split is read.

The normalisation ``(pixel / 255 − mean_c) / std_c`` uses the training split's statistics, or the
teacher's own (:func:`bench.teachers.preprocess.model_normalization`); it is also kept as the
per-feature affine map on raw pixels (``scaler_mean = 255·mean_c``, ``scaler_scale =
255·std_c``), the form an in-memory task's scaler has, so exports carry it unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.errors import InputError
from bench.tasks.base import TaskConfig, read_common
from bench.tasks.images import ImageEntries, Scan, scan
from bench.validation import Table

__all__ = ["HFTask", "ImagesTask", "StreamedTask", "WebdatasetTask", "streamed_from_file"]

SPLITS = ("train", "val", "test")
BAD_EXAMPLE = ("error", "skip")


@dataclass(frozen=True)
class _StreamConfig(TaskConfig):
    """Keys every streamed kind has: the resize, what a bad example does, the loader workers."""

    size: tuple[int, ...] = ()  # [H, W]; () = the images' own (they must then agree)
    on_bad_example: str = "error"
    loader_workers: int = 2  # DataLoader worker processes decoding the inputs
    classes: tuple[str, ...] = ()

    @staticmethod
    def _stream_keys(t: Table) -> dict[str, Any]:
        size = t.ints("size", (), low=1)
        if size and len(size) != 2:
            raise t.fail("size", "[H, W]", list(size))
        classes = t.strings("classes", ())
        return {
            "size": size,
            "on_bad_example": t.choice("on_bad_example", "error", BAD_EXAMPLE),
            "loader_workers": t.number("loader_workers", 2, int, 0, 256),
            "classes": classes,
        }

    def open_stream(self, *, tokenizer: str = "", cache_dir: Path | None = None) -> StreamedTask:
        """The source listed, checked (one decoding pass) and split."""
        entries = self.entries(cache_dir)
        task = self.from_entries(entries, tokenizer=tokenizer)
        return dataclasses.replace(task, cache_dir=str(cache_dir or ""))

    def entries(self, cache_dir: Path | None) -> ImageEntries:
        raise NotImplementedError

    def from_entries(self, entries: ImageEntries, *, tokenizer: str = "") -> StreamedTask:
        found = scan(
            entries,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            size=(self.size[0], self.size[1]) if self.size else None,
            on_bad_example=self.on_bad_example,
            num_workers=self.loader_workers,
        )
        return StreamedTask.of_images(self, found)


@dataclass(frozen=True)
class ImagesTask(_StreamConfig):
    """``kind = "images"``: an image folder (one sub-folder per class) or a CSV/Parquet listing
    (``path_column``, ``target``)."""

    kind: str = "images"
    path: str = ""
    path_column: str = "path"
    target: str = "target"

    def describe(self) -> str:
        return f"task '{self.name}' ({self.path})"

    @classmethod
    def parse(cls, t: Table, base_dir: Path) -> ImagesTask:
        path = _existing_path(t, base_dir, "an existing image folder or .csv/.parquet listing")
        return cls(
            path=str(path),
            path_column=t.string("path_column", "path"),
            target=t.string("target", "target"),
            **cls._stream_keys(t),
            **_common(t, path.stem),
        )

    def entries(self, cache_dir: Path | None) -> ImageEntries:
        from bench.tasks.images import list_images

        return list_images(
            self.path, path_column=self.path_column, target=self.target, classes=self.classes
        )


@dataclass(frozen=True)
class HFTask(_StreamConfig):
    """``kind = "hf"``: a dataset saved with ``save_to_disk`` or Parquet shards, with an image or
    a text column and a label column."""

    kind: str = "hf"
    path: str = ""
    image: str = ""
    text: str = ""
    target: str = "label"
    id_column: str = ""
    split: str = "train"
    tokenizer: str = ""
    max_length: int = 128
    vocab_size: int = 8000

    def describe(self) -> str:
        return f"task '{self.name}' ({self.path})"

    @classmethod
    def parse(cls, t: Table, base_dir: Path) -> HFTask:
        path = _existing_path(t, base_dir, "an existing saved dataset folder or Parquet shards")
        image, text = t.string("image", ""), t.string("text", "")
        if bool(image) == bool(text):
            raise t.fail("image", 'exactly one of image = "column" or text = "column"', image)
        tokenizer = t.string("tokenizer", "")
        for key in ("tokenizer", "max_length", "vocab_size"):
            if t.has(key) and not text:
                raise t.fail(key, "left out unless 'text' names the text column", t.data[key])
        if text and t.has("size"):
            raise t.fail("size", "left out for a text column", t.data["size"])
        return cls(
            path=str(path),
            image=image,
            text=text,
            target=t.string("target", "label"),
            id_column=t.string("id_column", ""),
            split=t.string("split", "train"),
            tokenizer=str((base_dir / Path(tokenizer).expanduser()).resolve()) if tokenizer else "",
            max_length=t.number("max_length", 128, int, 4, 8192),
            vocab_size=t.number("vocab_size", 8000, int, 64, 1_000_000),
            **cls._stream_keys(t),
            **_common(t, path.stem),
        )

    def entries(self, cache_dir: Path | None) -> ImageEntries:
        from bench.tasks.hf import list_hf

        return list_hf(
            self.path,
            target=self.target,
            image=self.image,
            text=self.text,
            classes=self.classes,
            id_column=self.id_column,
            split=self.split,
            cache_dir=None if cache_dir is None else cache_dir / "hf-arrow",
        )

    def from_entries(self, entries: ImageEntries, *, tokenizer: str = "") -> StreamedTask:
        if self.image:
            return super().from_entries(entries, tokenizer=tokenizer)
        from bench.tasks.hf import HFEntries, train_tokenizer
        from bench.tasks.images import split_entries

        assert isinstance(entries, HFEntries)
        splits = split_entries(
            entries,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
        )
        folder = self.tokenizer or tokenizer
        if folder:
            from bench.tasks.text import tokenizer_folder

            hf_tok: Any = tokenizer_folder(folder, "The 'tokenizer' parameter of [task]")
            backend = getattr(hf_tok, "backend_tokenizer", None)
            if backend is None:
                raise InputError(
                    f"The 'tokenizer' parameter of [task] must be a fast tokenizer (a "
                    f"tokenizer.json). Got {folder!r}, which has none."
                )
            tok_json = str(backend.to_str())
        else:
            tok_json = train_tokenizer(entries.subset(splits["train"]), self.vocab_size)
        from tokenizers import Tokenizer

        vocab = int(Tokenizer.from_str(tok_json).get_vocab_size())
        return StreamedTask(
            name=self.name,
            config=self,
            entries=entries,
            splits=splits,
            shape=(self.max_length,),
            input_kind="tokens",
            data_params={"vocab_size": vocab},
            tokenizer_json=tok_json,
            source=_source(self, entries),
        )


@dataclass(frozen=True)
class WebdatasetTask(_StreamConfig):
    """``kind = "webdataset"``: uncompressed tar shards (``urls``, brace-expanded), one image and
    one ``.cls`` (``label_ext``) member per key."""

    kind: str = "webdataset"
    urls: str = ""
    base_dir: str = ""
    label_ext: str = "cls"

    def describe(self) -> str:
        return f"task '{self.name}' ({self.urls})"

    @classmethod
    def parse(cls, t: Table, base_dir: Path) -> WebdatasetTask:
        urls = t.string("urls", "")
        if not urls:
            raise t.fail("urls", 'tar shards, e.g. "shards/train-{000..031}.tar"', urls)
        from bench.tasks.shards import expand_urls

        expand_urls(urls, base_dir)  # every shard named exists, or one line now
        return cls(
            urls=urls,
            base_dir=str(base_dir.resolve()),
            label_ext=t.string("label_ext", "cls"),
            **cls._stream_keys(t),
            **_common(t, Path(urls.split("{")[0]).stem.rstrip("-_") or "shards"),
        )

    def entries(self, cache_dir: Path | None) -> ImageEntries:
        from bench.tasks.shards import list_shards

        return list_shards(self.urls, self.base_dir, label_ext=self.label_ext, classes=self.classes)


def _existing_path(t: Table, base_dir: Path, rule: str) -> Path:
    """``path``, resolved against the suite's folder; one line when it is missing."""
    raw = t.string("path", "")
    path = (base_dir / Path(raw).expanduser()).resolve() if raw else Path()
    if not raw or not path.exists():
        raise t.fail("path", rule, str(path) if raw else raw)
    return path


def _common(t: Table, default_name: str) -> dict[str, Any]:
    out = read_common(t, default_name)
    if t.has("scale"):  # always per channel on the training split, or the teacher's
        raise t.fail(
            "scale",
            "left out for a streamed task (images are normalised per channel on the training "
            "split, or as the teacher states)",
            t.data["scale"],
        )
    return out


def _source(cfg: TaskConfig, entries: ImageEntries) -> dict[str, Any]:
    where = getattr(cfg, "path", "") or getattr(cfg, "urls", "")
    return {"path": str(where), "examples": len(entries), "root": str(entries.root)}


@dataclass(frozen=True)
class StreamedTask:
    """A task whose inputs stay on disk: what :class:`bench.tasks.TaskData` is for in-memory
    data, less the input tensors. ``splits`` are rows of ``entries`` (the examples kept by
    the check pass); labels, ids and the statistics are in memory, inputs are read through
    :meth:`dataset`. ``skipped``: the files left out by ``on_bad_example = "skip"`` and why."""

    name: str
    config: TaskConfig
    entries: ImageEntries
    splits: dict[str, np.ndarray]
    shape: tuple[int, ...]
    mean: tuple[float, ...] = ()  # of pixel/255 per channel (images)
    std: tuple[float, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    input_kind: str = "features"
    data_params: dict[str, int] = field(default_factory=dict)
    tokenizer_json: str = ""
    normalization: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    # an in-memory task's [transfer] fields: never set for a streamed task (refused)
    transfer: None = None
    x_unlabeled: None = None
    omitted: tuple[int, ...] = ()
    streamed: bool = True
    cache_dir: str = ""  # where an HF source's Parquet shards were converted (workers reuse it)

    @classmethod
    def of_images(cls, cfg: TaskConfig, found: Scan) -> StreamedTask:
        return cls(
            name=cfg.name,
            config=cfg,
            entries=found.entries,
            splits=found.splits,
            shape=found.shape,
            mean=found.mean,
            std=found.std,
            skipped=dict(found.skipped),
            source=_source(cfg, found.entries)
            | {
                "skipped": len(found.skipped),
                # the first 100 files left out, with the reason (all of them: the count)
                "skipped_files": dict(list(found.skipped.items())[:100]),
                "normalised_by": "the training split",
            },
        )

    # --- what in-memory tasks also have -----------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.shape)

    @property
    def num_classes(self) -> int:
        return len(self.entries.class_names)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.entries.class_names)

    @property
    def rows(self) -> dict[str, np.ndarray]:
        """Per split, the rows of the kept examples (``ids(split)`` names them)."""
        return self.splits

    @property
    def n_rows(self) -> int:
        return len(self.entries)

    def labels(self, split: str) -> torch.Tensor:
        return torch.as_tensor(self.entries.labels[self.splits[split]], dtype=torch.int64)

    @property
    def y_train(self) -> torch.Tensor:
        return self.labels("train")

    @property
    def y_val(self) -> torch.Tensor:
        return self.labels("val")

    @property
    def y_test(self) -> torch.Tensor:
        return self.labels("test")

    def ids(self, split: str) -> list[str]:
        return [self.entries.ids[i] for i in self.splits[split]]

    def sizes(self) -> dict[str, int]:
        return {s: len(self.splits[s]) for s in SPLITS}

    @property
    def transfer_is_subset(self) -> bool:
        return False

    @property
    def channel_norm(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per channel, the mean and std ``dataset`` subtracts and divides by (of pixel/255)."""
        if self.normalization is None:
            return self.mean, self.std
        r = float(self.normalization.get("pixel_range", 255.0)) / 255.0
        n = self.normalization
        return tuple(float(m) * r for m in n["mean"]), tuple(float(s) * r for s in n["std"])

    @property
    def scaler_mean(self) -> np.ndarray | None:
        """The normalisation as the per-feature affine map on raw pixel values (0–255)."""
        if self.input_kind == "tokens":
            return None
        per = int(np.prod(self.shape[1:]))
        return np.repeat(np.asarray(self.channel_norm[0], dtype=np.float64) * 255.0, per)

    @property
    def scaler_scale(self) -> np.ndarray | None:
        if self.input_kind == "tokens":
            return None
        per = int(np.prod(self.shape[1:]))
        return np.repeat(np.asarray(self.channel_norm[1], dtype=np.float64) * 255.0, per)

    def preprocessing(self) -> dict[str, list[float]] | None:
        mean, scale = self.scaler_mean, self.scaler_scale
        if mean is None or scale is None:
            return None
        return {"mean": mean.tolist(), "scale": scale.tolist()}

    def dataset(self, split: str) -> Dataset[tuple[torch.Tensor, int]]:
        """The split as a ``torch`` dataset: ``(x, label)``, decoded on access."""
        part = self.entries.subset(self.splits[split])
        if self.input_kind == "tokens":
            from bench.tasks.hf import HFEntries, HFTexts

            assert isinstance(part, HFEntries)
            return HFTexts(part, self.tokenizer_json, self.shape[0])
        from bench.tasks.images import ImageFiles

        mean, std = self.channel_norm
        c, h, w = self.shape
        return ImageFiles(part, channels=c, size=(h, w), mean=mean, std=std)

    def sample(self, n: int = 1, split: str = "train") -> torch.Tensor:
        """The first ``n`` inputs of ``split`` as one tensor (FLOPs counting, calibration)."""
        data = self.dataset(split)
        return torch.stack([data[i][0] for i in range(min(n, len(data)))])  # type: ignore[arg-type]

    def take(self, rows: np.ndarray, split: str = "train") -> torch.Tensor:
        """The inputs of ``split``'s ``rows`` as one tensor (a few hundred at most)."""
        data = self.dataset(split)
        return torch.stack([data[int(i)][0] for i in rows])

    def fingerprint(self) -> str:
        """sha256 of what the splits are: ids and labels per split, the input shape, the
        classes, the normalisation and the tokenizer (keys the teacher cache)."""
        h = hashlib.sha256(
            json.dumps(
                [
                    self.input_shape,
                    self.class_names,
                    self.channel_norm,
                    hashlib.sha256(self.tokenizer_json.encode()).hexdigest(),
                ]
            ).encode()
        )
        for s in SPLITS:
            h.update("\n".join(self.ids(s)).encode())
            h.update(self.labels(s).numpy().tobytes())
        return h.hexdigest()

    def data_sha256(self) -> str:
        return self.fingerprint()

    def with_normalization(self, norm: dict[str, Any]) -> StreamedTask:
        """Normalised as the teacher states (``mean``, ``std``, ``pixel_range``)."""
        return dataclasses.replace(
            self,
            normalization=dict(norm),
            source=self.source | {"normalised_by": str(norm.get("source", "the teacher"))},
        )

    def rows_csv(self) -> str:
        """The split as CSV: ``id, split, label, class, transfer`` per kept example (what a
        run writes as ``splits-<task>.csv`` and ``kdbench data`` as ``rows.csv``)."""
        import pandas as pd

        parts = [
            pd.DataFrame(
                {
                    "id": self.ids(s),
                    "split": s,
                    "label": self.labels(s).numpy(),
                    "transfer": s == "train",
                }
            )
            for s in SPLITS
        ]
        frame = pd.concat(parts).sort_values("id", kind="stable").reset_index(drop=True)
        frame["class"] = [self.class_names[k] for k in frame["label"]]
        return str(frame[["id", "split", "label", "class", "transfer"]].to_csv(index=False))

    def save(self, path: Path) -> None:
        """What a local worker needs to open the same task without the check pass: the kept
        ids, the splits, the statistics, the tokenizer (read back by
        :func:`streamed_from_file`, which re-lists the source and checks the ids agree)."""
        torch.save(
            {
                "streamed": True,
                "ids": "\n".join(self.entries.ids),
                "splits": {s: torch.from_numpy(v) for s, v in self.splits.items()},
                "shape": list(self.shape),
                "mean": list(self.mean),
                "std": list(self.std),
                "skipped": json.dumps(self.skipped),
                "input_kind": self.input_kind,
                "data_params": dict(self.data_params),
                "tokenizer_json": self.tokenizer_json,
                "normalization": json.dumps(self.normalization),
                "source": json.dumps(self.source, default=str),
                "cache_dir": self.cache_dir,
            },
            path,
        )


def streamed_from_file(path: Path, cfg: _StreamConfig) -> StreamedTask:
    """The task :meth:`StreamedTask.save` wrote, its source listed again; the kept examples
    must be the same ones."""
    d = torch.load(path, weights_only=True)
    cache = str(d.get("cache_dir") or "")
    listed = cfg.entries(Path(cache) if cache else None)
    index = {k: i for i, k in enumerate(listed.ids)}
    ids = d["ids"].split("\n") if d["ids"] else []
    try:
        keep = np.asarray([index[k] for k in ids], dtype=np.int64)
    except KeyError as exc:
        raise InputError(
            f"{cfg.describe()}: example {exc.args[0]!r} is no longer in the source; the data "
            "changed since the run checked it"
        ) from None
    return StreamedTask(
        name=cfg.name,
        config=cfg,
        entries=listed.subset(keep),
        splits={s: v.numpy() for s, v in d["splits"].items()},
        shape=tuple(int(v) for v in d["shape"]),
        mean=tuple(float(v) for v in d["mean"]),
        std=tuple(float(v) for v in d["std"]),
        skipped=json.loads(d["skipped"]),
        input_kind=str(d["input_kind"]),
        data_params={k: int(v) for k, v in d["data_params"].items()},
        tokenizer_json=str(d["tokenizer_json"]),
        normalization=json.loads(d["normalization"]),
        source=json.loads(d["source"]),
        cache_dir=cache,
    )
