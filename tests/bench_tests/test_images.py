"""The streamed image source: folders and listings of PNG/JPEG files, the split, the check pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from bench.errors import InputError
from bench.tasks.images import list_images, scan, split_entries
from kdcore.stream import StreamDistiller, write_targets


def _folder(root: Path, per_class: int = 10, size: int = 8, mode: str = "L") -> Path:
    """Three classes told apart by brightness (dark, mid, bright), with noise."""
    g = np.random.default_rng(0)
    for name in ("bright", "dark", "mid"):
        (root / name).mkdir(parents=True, exist_ok=True)
        level = {"dark": 40, "mid": 128, "bright": 215}[name]
        for i in range(per_class):
            shape = (size, size) if mode == "L" else (size, size, 3)
            a = np.clip(level + g.normal(0, 20, shape), 0, 255).astype(np.uint8)
            Image.fromarray(a, mode).save(root / name / f"img{i:03d}.png")
    return root


def test_a_folder_lists_classes_in_order_and_ids_relative_to_the_root(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=4)
    (root / "dark" / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "dark" / "sub" / "deep.jpg")
    (root / "dark" / "notes.txt").write_text("not an image")
    e = list_images(root)
    assert e.class_names == ("bright", "dark", "mid")
    assert len(e) == 13 and "dark/sub/deep.jpg" in e.ids
    assert e.labels[e.ids.index("dark/sub/deep.jpg")] == 1
    ordered = list_images(root, classes=["dark", "mid", "bright"])
    assert ordered.labels[ordered.ids.index("bright/img000.png")] == 2
    with pytest.raises(
        InputError, match=r"must be one of classes = \['dark', 'mid'\]. Got 'bright'"
    ):
        list_images(root, classes=["dark", "mid"])


def test_a_listing_gives_the_same_entries_as_the_folder(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=4)
    e = list_images(root)
    pd.DataFrame({"file": list(e.ids), "label": [e.class_names[k] for k in e.labels]}).to_csv(
        root / "list.csv", index=False
    )
    pd.read_csv(root / "list.csv").to_parquet(root / "list.parquet")
    for name in ("list.csv", "list.parquet"):
        listed = list_images(root / name, path_column="file", target="label")
        assert listed.ids == e.ids and (listed.labels == e.labels).all()
    with pytest.raises(InputError, match=r"list.csv: the listing must have a column 'path'"):
        list_images(root / "list.csv")


def test_the_split_is_stratified_stable_and_local_to_a_class(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=20)
    e = list_images(root)
    s = split_entries(e, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(60))
    for k in range(3):
        assert [int((e.labels[s[p]] == k).sum()) for p in ("train", "val", "test")] == [12, 4, 4]
    ids = {p: {e.ids[r] for r in s[p]} for p in s}
    # more images of one class move none of the others', and the same seed gives the same split
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "dark" / "img999.png")
    e2 = list_images(root)
    s2 = split_entries(e2, val_fraction=0.2, test_fraction=0.2, seed=0)
    for p in s:
        assert {i for i in (e2.ids[r] for r in s2[p]) if not i.startswith("dark/")} == {
            i for i in ids[p] if not i.startswith("dark/")
        }
    other = split_entries(e, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert {e.ids[r] for r in other["test"]} != ids["test"]


def test_a_class_too_small_to_split_is_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=5)
    for f in sorted((root / "mid").iterdir())[2:]:
        f.unlink()
    with pytest.raises(InputError, match=r"class 'mid' must have at least 3 images .* Got 2"):
        split_entries(list_images(root), val_fraction=0.2, test_fraction=0.2, seed=0)


def test_the_check_pass_normalises_with_the_training_split_only(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=10, mode="RGB")
    sc = scan(list_images(root), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert sc.shape == (3, 8, 8) and not sc.skipped
    raw = torch.stack([x for x, _ in sc.dataset("train", normalise=False)])
    assert np.allclose(sc.mean, raw.mean((0, 2, 3)).numpy(), atol=1e-6)
    assert np.allclose(sc.std, raw.std((0, 2, 3), unbiased=False).numpy(), atol=1e-6)
    norm = torch.stack([x for x, _ in sc.dataset("train")])
    assert norm.mean().abs() < 1e-5 and abs(float(norm.std()) - 1) < 1e-2
    imagenet = sc.dataset("train", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    x0 = (raw[0] - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
        [0.229, 0.224, 0.225]
    )[:, None, None]
    assert torch.allclose(imagenet[0][0], x0, atol=1e-6)
    with pytest.raises(InputError, match=r"one value per channel \(3\)"):
        sc.dataset("train", mean=(0.5,), std=(0.5,))
    ys = [y for _, y in sc.dataset("test")]
    assert sorted(ys) == [0, 0, 1, 1, 2, 2]


def test_a_truncated_image_stops_the_run_naming_it_or_is_skipped_and_counted(
    tmp_path: Path,
) -> None:
    root = _folder(tmp_path / "data", per_class=6)
    bad = root / "mid" / "img003.png"
    bad.write_bytes(bad.read_bytes()[:40])
    e = list_images(root)
    with pytest.raises(InputError, match=r"mid/img003.png: every image must decode"):
        scan(e, val_fraction=0.2, test_fraction=0.2, seed=0, num_workers=0)
    sc = scan(e, val_fraction=0.2, test_fraction=0.2, seed=0, on_bad_example="skip")
    assert list(sc.skipped) == ["mid/img003.png"] and len(sc.entries) == 17
    assert "mid/img003.png" not in sc.entries.ids


def test_images_of_different_sizes_are_named_unless_a_size_is_given(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=5)
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "mid" / "odd.png")
    e = list_images(root)
    with pytest.raises(InputError, match=r"mid/odd.png: images must all have one size.*\[12, 10\]"):
        scan(e, val_fraction=0.2, test_fraction=0.2, seed=0)
    sc = scan(e, val_fraction=0.2, test_fraction=0.2, seed=0, size=(6, 6), num_workers=2)
    assert sc.shape == (1, 6, 6)
    assert sc.dataset("val")[0][0].shape == (1, 6, 6)


@pytest.mark.slow
def test_a_png_folder_streams_through_the_teacher_file_into_a_student(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=40)
    sc = scan(list_images(root), val_fraction=0.2, test_fraction=0.2, seed=0, num_workers=2)
    train, val = sc.dataset("train"), sc.dataset("val")
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    StreamDistiller(epochs=15, batch_size=16, lr=1e-2).fit(lambda: teacher, train, val)
    t = write_targets(
        teacher.eval(),
        DataLoader(train, batch_size=32, num_workers=2),
        tmp_path / "targets" / "train",
        rows=len(train),
        classes=3,
        top_k=2,
    )
    assert (t.argmax() == np.array([y for _, y in train])).mean() > 0.9

    def student() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))

    s = StreamDistiller(
        epochs=12, batch_size=16, lr=1e-2, temperature=2.0, alpha=0.8, num_workers=2
    )
    s.fit(student, train, val, t)
    assert s.channels_last_ and s.best_val_acc_ > 0.9
