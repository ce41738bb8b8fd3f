"""A streamed image source: an image-folder tree, or a CSV/Parquet file that lists images.

Nothing is loaded whole. The source is a list of ``(path, label)`` entries; images are decoded
one at a time (:class:`ImageFiles`, a ``torch`` dataset, in DataLoader workers), so memory holds
a batch, not the data.

* **Folder**: one sub-folder per class (``root/<class>/**/*.png|jpg|jpeg``), classes in sorted
  order of their folder names (or the order of ``classes``).
* **Listing**: a ``.csv`` or ``.parquet`` with a path column (``path_column``, default
  ``"path"``, relative paths resolved against the listing's folder) and a label column
  (``target``).

**Stable ids and the split.** An example's id is its path relative to the root (the listing's
folder), so ids survive moving the data and do not depend on the order of a directory listing.
The split is stratified: within each class the examples are ordered by
``sha256(f"{seed}:{id}")`` and the first ``round(n·test_fraction)`` (at least one) go to test,
the next ``round(n·val_fraction)`` (at least one) to validation, the rest to training — so
adding images to one class never moves another class's examples, and the same data and seed
always give the same split. A class with fewer than three images cannot be split and is named.

**One checking pass** (:func:`scan`) decodes every image once, in DataLoader workers, before
anything trains: an unreadable or truncated file stops the run naming the file (the default),
or with ``on_bad_example = "skip"`` is left out and counted; images of different sizes without
``size = [H, W]`` are named; and the per-channel mean and standard deviation of the *training*
split are summed in the same pass (float64 sums, one number per channel) for the
normalisation, unless the teacher states its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from bench.errors import InputError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageEntries",
    "ImageFiles",
    "Scan",
    "encode_labels",
    "list_images",
    "pixels",
    "scan",
    "split_entries",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageEntries:
    """The examples of a source: stable ids, labels 0..C−1, class names, and how to read one.

    Here the ids are paths relative to ``root``; other sources (:mod:`bench.tasks.hf`,
    :mod:`bench.tasks.shards`) subclass it and override :meth:`open_image` and :meth:`where`.
    """

    root: Path
    ids: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> Self:
        """The same source restricted to ``rows`` (in that order)."""
        return dataclasses.replace(
            self, ids=tuple(self.ids[i] for i in rows), labels=self.labels[rows]
        )

    def where(self, i: int) -> str:
        """Example ``i`` for an error message (its file, shard member or dataset row)."""
        return str(self.root / self.ids[i])

    def open_image(self, i: int) -> Image.Image:
        """Example ``i`` as a PIL image (not yet decoded: PIL decodes on first access)."""
        return Image.open(self.root / self.ids[i])

    def read(self, i: int, channels: int, size: tuple[int, int] | None) -> np.ndarray:
        """Example ``i`` decoded as uint8 ``[C, H, W]``; OSError/ValueError when it cannot be."""
        with self.open_image(i) as im:
            return pixels(im, channels, size)


def encode_labels(
    names: Sequence[str], classes: Sequence[str], where: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels as 0..C−1: in the order of ``classes`` when given (a label outside it is an
    error naming ``where``), else in sorted order (numeric when every label is an integer:
    ``"10"`` after ``"9"``)."""
    found = sorted(set(names))
    if all(n.lstrip("-").isdigit() for n in found):
        found.sort(key=int)
    if classes:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise InputError(
                f"{where}: every label must be one of classes = {list(classes)}. "
                f"Got {unknown[0]!r} instead."
            )
        order = tuple(classes)
    else:
        order = tuple(found)
    if len(order) < 2:
        raise InputError(
            f"{where}: a classification task needs at least 2 classes. Got {len(order)} instead."
        )
    code = {c: k for k, c in enumerate(order)}
    return np.array([code[n] for n in names], dtype=np.int64), order


def list_images(
    path: str | Path,
    *,
    path_column: str = "path",
    target: str = "target",
    classes: Sequence[str] = (),
) -> ImageEntries:
    """The entries of an image folder (one sub-folder per class) or of a CSV/Parquet listing."""
    path = Path(path)
    if path.is_dir():
        folders = sorted(p for p in path.iterdir() if p.is_dir())
        paths: list[str] = []
        names: list[str] = []
        for folder in folders:
            files = sorted(
                f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
            )
            paths += [f.relative_to(path).as_posix() for f in files]
            names += [folder.name] * len(files)
        if not paths:
            raise InputError(
                f"{path}: an image folder must hold one sub-folder per class with "
                f"{'/'.join(IMAGE_SUFFIXES)} files. Got none instead."
            )
        labels, order = encode_labels(names, classes, str(path))
        return ImageEntries(path, tuple(paths), labels, order)
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise InputError(
            f"{path}: the images must be a folder or a .csv/.parquet listing. Got neither."
        )
    if not path.exists():
        raise InputError(f"{path}: the image listing does not exist")
    import pandas as pd

    frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    for col in (path_column, target):
        if col not in frame.columns:
            raise InputError(
                f"{path}: the listing must have a column {col!r}. Got columns {list(frame.columns)}."
            )
    labels, order = encode_labels([str(v) for v in frame[target]], classes, str(path))
    ids = tuple(str(p) for p in frame[path_column])
    return ImageEntries(path.parent, ids, labels, order)


def split_entries(
    entries: ImageEntries, *, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Stratified split by stable ids (see the module's text): rows of ``entries`` per split."""
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for k, name in enumerate(entries.class_names):
        rows = np.flatnonzero(entries.labels == k)
        if len(rows) < 3:
            raise InputError(
                f"{entries.root}: class {name!r} must have at least 3 images for the stratified "
                f"train/val/test split. Got {len(rows)} instead."
            )
        key = [hashlib.sha256(f"{seed}:{entries.ids[r]}".encode()).hexdigest() for r in rows]
        rows = rows[np.argsort(key, kind="stable")]
        n_test = max(1, round(len(rows) * test_fraction))
        n_val = max(1, round(len(rows) * val_fraction))
        n_test, n_val = min(n_test, len(rows) - 2), min(n_val, len(rows) - 2)
        out["test"] += rows[:n_test].tolist()
        out["val"] += rows[n_test : n_test + n_val].tolist()
        out["train"] += rows[n_test + n_val :].tolist()
    return {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in out.items()}


def pixels(im: Image.Image, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """A PIL image as uint8 ``[C, H, W]``: grey (1) or RGB (3), resized (bilinear) to
    ``size = (H, W)`` when given; OSError/ValueError for a truncated or unreadable file."""
    im = im.convert("L" if channels == 1 else "RGB")
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    a = np.array(im, dtype=np.uint8)  # a writable copy (torch.from_numpy)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


class ImageFiles(Dataset[tuple[torch.Tensor, int]]):
    """Images decoded on demand: item ``i`` is ``(x, label)`` with ``x`` float32 ``[C, H, W]``,
    ``(pixel/255 − mean) / std`` per channel (no normalisation when ``mean`` is None)."""

    def __init__(
        self,
        entries: ImageEntries,
        *,
        channels: int,
        size: tuple[int, int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.entries, self.channels, self.size = entries, channels, size
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        e = self.entries
        x = torch.from_numpy(e.read(i, self.channels, self.size)).float() / 255.0
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x, int(e.labels[i])


class _Check(Dataset[tuple[int, str, Any, Any]]):
    """Decodes one image for :func:`scan`: its shape and per-channel sums, or why it failed."""

    def __init__(self, entries: ImageEntries, channels: int, size: tuple[int, int] | None):
        self.entries, self.channels, self.size = entries, channels, size

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[int, str, Any, Any]:
        try:
            a = self.entries.read(i, self.channels, self.size)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            return i, f"{type(e).__name__}: {e}", None, None
        v = a.reshape(a.shape[0], -1).astype(np.float64) / 255.0
        return i, "", a.shape, np.stack([v.sum(1), (v * v).sum(1)])


@dataclass(frozen=True)
class Scan:
    """What :func:`scan` found: the kept entries, the rows of each split (into them), the
    channels and image shape ``[C, H, W]``, the training split's per-channel mean and standard
    deviation (of pixel/255), and the files left out with the reason."""

    entries: ImageEntries
    splits: dict[str, np.ndarray]
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    def dataset(
        self,
        split: str,
        *,
        normalise: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> ImageFiles:
        """The split as a dataset, normalised with the training split's statistics, or with
        ``mean``/``std`` when given (a teacher's own: timm's ``pretrained_cfg``, an HF image
        processor's), or not at all (``normalise=False``)."""
        c, h, w = self.shape
        if (mean is None) != (std is None) or (mean is not None and len(mean) != c):
            raise InputError(
                f"mean and std must be given together, one value per channel ({c}). "
                f"Got mean={mean!r}, std={std!r}."
            )
        if mean is None:
            mean, std = self.mean, self.std
        return ImageFiles(
            self.entries.subset(self.splits[split]),
            channels=c,
            size=(h, w),
            mean=mean if normalise else None,
            std=std if normalise else None,
        )


def _channels_of(entries: ImageEntries) -> int:
    with entries.open_image(0) as im:
        return 1 if im.mode in ("1", "L", "I", "I;16", "F", "LA") else 3


def scan(  # noqa: PLR0913 — the source's settings, as the suite states them
    entries: ImageEntries,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    on_bad_example: str = "error",
    num_workers: int = 0,
    batch_size: int = 64,
) -> Scan:
    """Decode every image once (see the module's text) and split the good ones.

    ``channels`` None takes the first image's (grey → 1, else 3). Raises :class:`InputError`
    naming the file for an unreadable image (``on_bad_example = "error"``) or for an image whose
    size differs from the first one's when ``size`` is not given.
    """
    if on_bad_example not in ("error", "skip"):
        raise InputError(
            f"on_bad_example must be 'error' or 'skip'. Got {on_bad_example!r} instead."
        )
    try:
        c = channels or _channels_of(entries)
    except (OSError, ValueError) as e:
        raise InputError(f"{entries.where(0)}: cannot read the image ({e})") from e
    loader = DataLoader(
        _Check(entries, c, size),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=lambda items: items,
    )
    # per image: sum and sum of squares per channel (48 bytes an image for RGB)
    stats = np.zeros((len(entries), 2, c), dtype=np.float64)
    ok = np.zeros(len(entries), dtype=bool)
    bad: dict[str, str] = {}
    first: tuple[str, tuple[int, ...]] | None = None
    for items in loader:
        for i, why, shape, s in items:
            if why:
                file = entries.where(i)
                if on_bad_example == "error":
                    raise InputError(
                        f"{file}: every image must decode ({why}); set "
                        '[task] on_bad_example = "skip" to leave such files out'
                    )
                bad[entries.ids[i]] = why
                continue
            if first is None:
                first = (entries.ids[i], shape)
            elif shape != first[1]:
                raise InputError(
                    f"{entries.where(i)}: images must all have one size, or set "
                    f"[task] size = [H, W]. Got {list(shape[1:])} here and "
                    f"{list(first[1][1:])} in {first[0]}"
                )
            stats[i], ok[i] = s, True
    if first is None:
        raise InputError(f"{entries.root}: no image could be decoded")
    keep = np.flatnonzero(ok)
    kept = entries.subset(keep)
    splits = split_entries(kept, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    train = stats[keep[splits["train"]]].sum(0)
    c_, h, w = first[1]
    n = len(splits["train"]) * h * w
    mean = train[0] / n
    std = np.sqrt(np.maximum(train[1] / n - mean**2, 1e-12))
    return Scan(
        kept,
        splits,
        (int(c_), int(h), int(w)),
        tuple(float(m) for m in mean),
        tuple(float(s) for s in std),
        bad,
    )
