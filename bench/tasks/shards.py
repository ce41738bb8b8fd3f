"""A streamed webdataset source: images in tar shards (``urls = "shards/train-{000..031}.tar"``).

The layout is webdataset's: the members of a tar that share a key (the member's path up to
the first dot of its file name) form one example — ``000123.png`` (or ``.jpg``/``.jpeg``)
and ``000123.cls`` (the label: an integer or a class name, as text). Shards are written with
``webdataset.TarWriter`` or plain ``tar``.

**Read by index, not as a stream.** One pass over the shards' headers (the label members are
read, the images are not) records, per example, its shard, the byte offset and the size of
its image; an image is then read with one ``seek`` and decoded by PIL in a DataLoader worker.
So an epoch is an exact permutation fixed by ``(seed, epoch)`` — what makes a resumed trial
identical to an uninterrupted one, and what a shuffle buffer over a stream cannot give — and
the split is :func:`bench.tasks.images.split_entries` on the keys, stratified and stable.
Compressed shards (``.tar.gz``) cannot be read by offset and are refused with that reason.
A shard that disappears while a trial reads it raises ``FileNotFoundError`` naming it: the
trial stops like an interrupted one, and once the shard is back it resumes from its last
checkpointed epoch.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from PIL import Image

from bench.errors import InputError
from bench.tasks.images import IMAGE_SUFFIXES, ImageEntries, encode_labels

__all__ = ["ShardEntries", "expand_urls", "list_shards"]


def expand_urls(urls: str, base_dir: Path) -> list[Path]:
    """The shard files of a brace pattern (``train-{000..031}.tar``), relative to
    ``base_dir``; every one must exist."""
    from braceexpand import braceexpand

    files = [(base_dir / Path(u).expanduser()).resolve() for u in braceexpand(urls)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputError(
            f"urls = {urls!r} must name existing tar shards. Got {len(missing)} missing, "
            f"the first {missing[0]}."
        )
    return files


def _split_name(name: str) -> tuple[str, str]:
    """webdataset's key and extension: the path up to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext if dot else "")


@dataclasses.dataclass(frozen=True)
class ShardEntries(ImageEntries):
    """Examples in tar shards: ``shard[i]`` indexes ``files``; the image's bytes lie at
    ``offset[i]``, ``size[i]`` long."""

    files: tuple[Path, ...] = ()
    shard: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    offset: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    size: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def subset(self, rows: np.ndarray) -> Self:
        out = super().subset(rows)
        return dataclasses.replace(
            out, shard=self.shard[rows], offset=self.offset[rows], size=self.size[rows]
        )

    def where(self, i: int) -> str:
        return f"{self.files[int(self.shard[i])]} member {self.ids[i]}"

    def open_image(self, i: int) -> Image.Image:
        file = self.files[int(self.shard[i])]
        fh = _handle(file)
        fh.seek(int(self.offset[i]))
        data = fh.read(int(self.size[i]))
        if len(data) != int(self.size[i]):
            raise OSError(f"{file}: the shard ends before member {self.ids[i]} (truncated?)")
        return Image.open(io.BytesIO(data))


_HANDLES: dict[tuple[int, Path], Any] = {}


def _handle(file: Path) -> Any:
    """One open file per shard and process (DataLoader workers are forked: a handle opened
    before the fork would share its offset with the parent's)."""
    key = (os.getpid(), file)
    fh = _HANDLES.get(key)
    if fh is None:
        # FileNotFoundError names the shard: a shard that disappeared stops the trial
        fh = _HANDLES[key] = open(file, "rb")  # noqa: SIM115 — kept open for the process
    return fh


def list_shards(
    urls: str,
    base_dir: str | Path = ".",
    *,
    label_ext: str = "cls",
    classes: Sequence[str] = (),
) -> ShardEntries:
    """Index the shards: one pass over their headers (see the module's text)."""
    files = expand_urls(urls, Path(base_dir))
    keys: list[str] = []
    names: list[str] = []
    where: list[tuple[int, int, int]] = []
    seen: dict[str, Path] = {}
    for s, file in enumerate(files):
        if file.suffix in (".gz", ".tgz", ".bz2", ".xz", ".zst"):
            raise InputError(
                f"{file}: shards must be uncompressed tar files (read by offset, so that an "
                "epoch is an exact permutation and a trial resumes exactly). Got a compressed one."
            )
        try:
            tar = tarfile.open(file, "r:")  # noqa: SIM115 — closed by the with below
        except tarfile.TarError as e:
            raise InputError(f"{file}: must be a tar file ({e})") from None
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        with tar:
            for m in tar:
                if m.isfile():
                    key, ext = _split_name(m.name)
                    groups.setdefault(key, {})[ext.lower()] = m
            for key, members in groups.items():
                image = next((members[e] for e in ("png", "jpg", "jpeg") if e in members), None)
                label = members.get(label_ext)
                if image is None or label is None:
                    raise InputError(
                        f"{file}: every example must have an image ({'/'.join(IMAGE_SUFFIXES)}) "
                        f"and a .{label_ext} member. Got {sorted(members)} for key {key!r}."
                    )
                if key in seen:
                    raise InputError(
                        f"{file}: keys must be unique across shards; {key!r} is also in "
                        f"{seen[key]}."
                    )
                seen[key] = file
                fh = tar.extractfile(label)
                text = fh.read().decode().strip() if fh is not None else ""
                keys.append(key)
                names.append(text)
                where.append((s, image.offset_data, image.size))
    if not keys:
        raise InputError(f"urls = {urls!r}: the shards hold no examples")
    labels, order = encode_labels(names, classes, urls)
    w = np.asarray(where, dtype=np.int64)
    return ShardEntries(
        Path(base_dir),
        tuple(keys),
        labels,
        order,
        files=tuple(files),
        shard=w[:, 0],
        offset=w[:, 1],
        size=w[:, 2],
    )
