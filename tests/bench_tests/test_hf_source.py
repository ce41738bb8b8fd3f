"""The streamed Hugging Face source: a dataset saved with save_to_disk, Parquet shards, text."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from bench.errors import InputError
from bench.tasks.hf import HFTexts, list_hf, train_tokenizer
from bench.tasks.images import scan, split_entries
from kdcore.stream import StreamDistiller, write_targets

NAMES = ["cat", "dog", "fox"]


def _images(n_per_class: int = 12) -> tuple[list[Image.Image], list[int]]:
    g = np.random.default_rng(0)
    ims, labels = [], []
    for k in range(3):
        for _ in range(n_per_class):
            a = np.clip(60 + 70 * k + g.normal(0, 15, (8, 8, 3)), 0, 255).astype(np.uint8)
            ims.append(Image.fromarray(a, "RGB"))
            labels.append(k)
    return ims, labels


def _saved(tmp_path: Path, n_per_class: int = 12) -> Path:
    ims, labels = _images(n_per_class)
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)}
    )
    ds = datasets.Dataset.from_dict({"img": ims, "label": labels}, features=features)
    ds.save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def test_a_saved_image_dataset_streams_like_an_image_folder(tmp_path: Path) -> None:
    e = list_hf(_saved(tmp_path), image="img")
    assert e.class_names == tuple(NAMES) and len(e) == 36
    sc = scan(e, val_fraction=0.25, test_fraction=0.25, seed=0)
    assert sc.shape == (3, 8, 8)
    assert [int((sc.entries.labels[sc.splits["test"]] == k).sum()) for k in range(3)] == [3, 3, 3]
    x, y = sc.dataset("val")[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y in (0, 1, 2)
    # the pixels are the saved ones
    raw = sc.dataset("train", normalise=False)
    row = int(sc.entries.rows[sc.splits["train"][0]])
    want = np.asarray(_images()[0][row], dtype=np.float32).transpose(2, 0, 1) / 255
    assert np.allclose(raw[0][0].numpy(), want)


def test_parquet_shards_give_the_same_examples_as_the_saved_dataset(tmp_path: Path) -> None:
    saved = _saved(tmp_path)
    ds = datasets.load_from_disk(str(saved))
    shards = tmp_path / "shards"
    shards.mkdir()
    ds.select(range(20)).to_parquet(str(shards / "train-000.parquet"))
    ds.select(range(20, 36)).to_parquet(str(shards / "train-001.parquet"))
    a = list_hf(saved, image="img")
    b = list_hf(shards, image="img", cache_dir=tmp_path / "cache")
    assert a.ids == b.ids and (a.labels == b.labels).all() and b.class_names == tuple(NAMES)
    for i in (0, 17, 35):
        assert np.array_equal(a.read(i, 3, None), b.read(i, 3, None))


def test_a_dataset_dict_needs_its_split_and_bad_columns_are_named(tmp_path: Path) -> None:
    ims, labels = _images(4)
    d = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"img": ims, "label": labels}),
            "extra": datasets.Dataset.from_dict({"img": ims[::4], "label": labels[::4]}),
        }
    )
    d.save_to_disk(str(tmp_path / "dict"))
    assert len(list_hf(tmp_path / "dict", image="img")) == 12
    assert len(list_hf(tmp_path / "dict", image="img", split="extra")) == 3
    with pytest.raises(InputError, match=r"has splits \['extra', 'train'\].*Got 'test'"):
        list_hf(tmp_path / "dict", image="img", split="test")
    with pytest.raises(InputError, match=r"must have a column 'picture'"):
        list_hf(tmp_path / "dict", image="picture")
    with pytest.raises(InputError, match=r"exactly one of image"):
        list_hf(tmp_path / "dict")
    with pytest.raises(InputError, match=r"save_to_disk, or Parquet shards"):
        list_hf(tmp_path / "nothing", image="img")


def test_a_corrupt_image_row_is_named_or_skipped(tmp_path: Path) -> None:
    ims, labels = _images(5)
    blobs = []
    for im in ims:
        buf = io.BytesIO()
        im.save(buf, "PNG")
        blobs.append(buf.getvalue())
    blobs[7] = blobs[7][:30]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {"img": [{"bytes": b, "path": None} for b in blobs], "label": [NAMES[k] for k in labels]},
        features=features,
    )
    ds.save_to_disk(str(tmp_path / "s"))
    e = list_hf(tmp_path / "s", image="img")
    assert e.class_names == tuple(NAMES)
    with pytest.raises(InputError, match=r"s row 7 \(id 7\): every image must decode"):
        scan(e, val_fraction=0.2, test_fraction=0.2, seed=0)
    sc = scan(e, val_fraction=0.2, test_fraction=0.2, seed=0, on_bad_example="skip")
    assert list(sc.skipped) == ["7"] and len(sc.entries) == 14


@pytest.mark.slow
def test_a_text_dataset_trains_its_tokenizer_on_train_and_distils(tmp_path: Path) -> None:
    g = np.random.default_rng(0)
    words = {0: ["good", "great", "fine"], 1: ["bad", "awful", "poor"]}
    texts, labels = [], []
    for i in range(120):
        k = i % 2
        texts.append(" ".join(g.choice(words[k], 3)) + f" item{i:03d}")
        labels.append(["neg", "pos"][1 - k])
    datasets.Dataset.from_dict(
        {"review": texts, "stars": labels, "uid": [f"u{i}" for i in range(120)]}
    ).save_to_disk(str(tmp_path / "t"))
    e = list_hf(tmp_path / "t", text="review", target="stars", id_column="uid")
    assert e.class_names == ("neg", "pos") and e.ids[0] == "u0"
    s = split_entries(e, val_fraction=0.2, test_fraction=0.2, seed=0)
    tok = train_tokenizer(e.subset(s["train"]), vocab_size=200)
    train = HFTexts(e.subset(s["train"]), tok, max_length=8)
    val = HFTexts(e.subset(s["val"]), tok, max_length=8)
    x, _ = train[0]
    assert x.shape == (8,) and x.dtype == torch.int64 and x[0] != 0
    # no validation-only word is in the vocabulary
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_str(tok).get_vocab()
    val_only = {f"item{int(r):03d}" for r in s["val"]}
    assert not val_only & set(vocab)
    assert {f"item{int(r):03d}" for r in s["train"]} & set(vocab)  # the check can fail

    def student() -> nn.Module:
        return nn.Sequential(nn.Embedding(200, 8), nn.Flatten(), nn.Linear(64, 2))

    torch.manual_seed(0)
    teacher = StreamDistiller(epochs=10, batch_size=16, lr=1e-2).fit(student, train, val).model_
    t = write_targets(
        teacher, DataLoader(train, batch_size=32), tmp_path / "tt", rows=len(train), classes=2
    )
    kd = StreamDistiller(epochs=10, batch_size=16, lr=1e-2, temperature=2.0, alpha=0.5)
    kd.fit(student, train, val, t)
    assert kd.best_val_acc_ > 0.9 and not kd.channels_last_
