"""The webdataset source: tar shards indexed once, read by offset; a vanished shard, resumed."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from torch import nn

from bench.errors import InputError
from bench.tasks.images import scan
from bench.tasks.shards import list_shards
from kdcore.stream import StreamDistiller


def _png(level: int, g: np.random.Generator) -> bytes:
    a = np.clip(level + g.normal(0, 15, (8, 8)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "L").save(buf, "PNG")
    return buf.getvalue()


def _shards(folder: Path, shards: int = 3, per_shard: int = 20, names: bool = False) -> Path:
    """Examples of 3 classes (dark, mid, bright) spread over ``shards`` tar files."""
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    i = 0
    for s in range(shards):
        with wds.TarWriter(str(folder / f"train-{s:03d}.tar")) as sink:
            for _ in range(per_shard):
                k = i % 3
                label = ["dark", "mid", "bright"][k] if names else str(k)
                sink.write({"__key__": f"{i:06d}", "png": _png(40 + 85 * k, g), "cls": label})
                i += 1
    return folder


def test_shards_are_indexed_once_and_read_by_offset(tmp_path: Path) -> None:
    _shards(tmp_path / "s")
    e = list_shards("s/train-{000..002}.tar", tmp_path)
    assert len(e) == 60 and e.class_names == ("0", "1", "2")
    assert e.ids[:3] == ("000000", "000001", "000002") and list(e.labels[:3]) == [0, 1, 2]
    assert list(np.bincount(e.shard)) == [20, 20, 20]
    # the bytes at the offset are the PNG that was written
    with tarfile.open(tmp_path / "s" / "train-001.tar") as tar:
        want = tar.extractfile("000025.png").read()
    assert e.open_image(25).tobytes() == Image.open(io.BytesIO(want)).tobytes()
    sc = scan(e, val_fraction=0.2, test_fraction=0.2, seed=0, num_workers=2)
    assert sc.shape == (1, 8, 8) and len(sc.splits["test"]) == 12
    named = list_shards("s/train-{000..002}.tar", tmp_path, classes=["2", "1", "0"])
    assert list(named.labels[:3]) == [2, 1, 0]


def test_bad_shards_are_named(tmp_path: Path) -> None:
    _shards(tmp_path / "s", shards=1, per_shard=6)
    with pytest.raises(InputError, match=r"must name existing tar shards. Got 1 missing"):
        list_shards("s/train-{000..001}.tar", tmp_path)
    with tarfile.open(tmp_path / "s" / "train-000.tar") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    with tarfile.open(tmp_path / "s" / "gz-000.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "x", arcname=".")
    with pytest.raises(InputError, match=r"gz-000.tar.gz: shards must be uncompressed"):
        list_shards("s/gz-000.tar.gz", tmp_path)
    (tmp_path / "x" / "000003.cls").unlink()
    with tarfile.open(tmp_path / "s" / "nolabel.tar", "w") as tar:
        for f in sorted((tmp_path / "x").iterdir()):
            tar.add(f, arcname=f.name)
    with pytest.raises(InputError, match=r"\.cls member. Got \['png'\] for key '000003'"):
        list_shards("s/nolabel.tar", tmp_path)
    shutil.copy(tmp_path / "s" / "train-000.tar", tmp_path / "s" / "copy.tar")
    with pytest.raises(InputError, match=r"keys must be unique across shards; '000000'"):
        list_shards("s/{train-000,copy}.tar", tmp_path)


def test_integer_labels_sort_as_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    g = np.random.default_rng(0)
    with wds.TarWriter(str(folder / "a.tar")) as sink:
        for i in range(12):
            sink.write({"__key__": f"k{i}", "png": _png(100, g), "cls": str([2, 10, 9][i % 3])})
    assert list_shards("s/a.tar", tmp_path).class_names == ("2", "9", "10")


class _Vanishing(torch.utils.data.Dataset):
    """A split whose shard is moved away after ``after`` items (a disk that disappears)."""

    def __init__(self, data, shard: Path, after: int) -> None:
        self.data, self.shard, self.after, self.seen = data, shard, after, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        self.seen += 1
        if self.seen == self.after:
            from bench.tasks import shards

            self.shard.rename(self.shard.with_suffix(".away"))
            shards._HANDLES.clear()  # a new worker process would open it afresh
        return self.data[i]


@pytest.mark.slow
def test_a_shard_that_vanishes_mid_trial_stops_it_and_the_trial_resumes_exactly(
    tmp_path: Path,
) -> None:
    _shards(tmp_path / "s", shards=2, per_shard=30, names=True)
    e = list_shards("s/train-{000..001}.tar", tmp_path)
    sc = scan(e, val_fraction=0.2, test_fraction=0.2, seed=0)
    train, val = sc.dataset("train"), sc.dataset("val")

    def student() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

    kw = dict(epochs=4, batch_size=8, lr=1e-2, seed=1)
    whole = StreamDistiller(**kw).fit(student, train, val)
    ckpt = tmp_path / "trial.pt"
    shard = tmp_path / "s" / "train-001.tar"
    with pytest.raises(FileNotFoundError, match=r"train-001\.tar"):
        StreamDistiller(**kw, checkpoint=ckpt).fit(
            student, _Vanishing(train, shard, 2 * 36 + 5), val
        )
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    shard.with_suffix(".away").rename(shard)
    resumed = StreamDistiller(**kw, checkpoint=ckpt).fit(student, train, val)
    assert resumed.resumed_from_ == 2
    for p, q in zip(whole.model_.parameters(), resumed.model_.parameters(), strict=True):
        assert torch.equal(p, q)
