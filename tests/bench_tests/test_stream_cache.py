"""Teacher outputs of a streamed split: computed once, keyed by data and teacher, shared."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from bench.teachers.stream_cache import stream_targets, stream_targets_key


class Counting(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Linear(6, 4)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def _data() -> tuple[TensorDataset, tuple[str, ...], np.ndarray]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=g), torch.randint(0, 4, (50,), generator=g)
    return TensorDataset(x, y), tuple(f"img{i}.png" for i in range(50)), y.numpy()


def _key(ids, labels, teacher, **kw) -> str:
    return stream_targets_key(ids, labels, teacher, top_k=kw.get("top_k"), inputs={"size": 6})


def test_outputs_are_computed_once_and_reused(tmp_path: Path) -> None:
    data, ids, labels = _data()
    t = Counting()
    key = _key(ids, labels, t)
    first, wrote = stream_targets(t, data, tmp_path, key, classes=4, batch_size=16)
    assert wrote and t.calls == 4 and first.key == key
    again, wrote = stream_targets(t, data, tmp_path, key, classes=4)
    assert not wrote and t.calls == 4
    assert torch.equal(again.logits(torch.arange(50)), first.logits(torch.arange(50)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]


def test_the_key_follows_the_data_the_teacher_and_top_k() -> None:
    _, ids, labels = _data()
    t = Counting()
    key = _key(ids, labels, t)
    assert _key(ids, labels, Counting()) == key  # same weights, another object
    assert _key(ids, labels, Counting(seed=1)) != key
    assert _key(ids[::-1], labels[::-1], t) != key
    assert _key(ids, np.roll(labels, 1), t) != key
    assert _key(ids, labels, t, top_k=2) != key
    other = stream_targets_key(ids, labels, t, top_k=None, inputs={"size": 7})
    assert other != key


def test_a_damaged_file_is_rewritten(tmp_path: Path) -> None:
    data, ids, labels = _data()
    t = Counting()
    key = _key(ids, labels, t)
    stream_targets(t, data, tmp_path, key, classes=4)
    with open(tmp_path / key / "logits.f16", "r+b") as fh:
        fh.truncate(10)
    fixed, wrote = stream_targets(t, data, tmp_path, key, classes=4)
    assert wrote and fixed.rows == 50


def _worker(args: tuple[Path, str]) -> list[float]:
    root, key = args
    data, _, _ = _data()
    out, _ = stream_targets(Counting(), data, root, key, classes=4, top_k=2)
    return out.topk(torch.arange(50))[1].flatten().tolist()


def test_processes_asking_at_once_share_one_complete_file(tmp_path: Path) -> None:
    _, ids, labels = _data()
    key = _key(ids, labels, Counting(), top_k=2)
    # fresh interpreters: a fork after torch has started its thread pool can deadlock
    with mp.get_context("spawn").Pool(3) as pool:
        results = pool.map(_worker, [(tmp_path, key)] * 6, chunksize=1)
    assert all(r == results[0] for r in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]
