"""Small data and tiny trained library checkpoints, built by the tests themselves (offline):
images whose class is the bright quadrant, texts whose class is a few keywords among filler,
and timm / Hugging Face / ONNX teachers trained on them for a few epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import bench.models  # noqa: F401 — registers the timm: and hf: families
from bench.latency.onnx import onnx_bytes
from kdcore import Distiller, Member

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIDE = 16


def images(n_per_class: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 3, 16, 16]`` pixel values in [0, 255]: class k has a bright patch in quadrant k
    (3 classes) on noise, its colour random."""
    g = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(3):
        x = g.uniform(0, 90, (n_per_class, 3, SIDE, SIDE))
        r, c = divmod(k, 2)
        h = SIDE // 2
        x[:, :, r * h : (r + 1) * h, c * h : (c + 1) * h] += g.uniform(
            100, 160, (n_per_class, 3, 1, 1)
        )
        xs.append(np.clip(x, 0, 255))
        ys.append(np.full(n_per_class, k))
    return np.concatenate(xs), np.concatenate(ys)


def imagenet_normalised(
    x: np.ndarray, mean: tuple = IMAGENET_MEAN, std: tuple = IMAGENET_STD
) -> torch.Tensor:
    """Pixels in [0, 255] as a model trained with ``mean`` and ``std`` on [0, 1] reads them
    (ImageNet's by default, as the image processors saved below state)."""
    m = np.asarray(mean).reshape(1, 3, 1, 1)
    s = np.asarray(std).reshape(1, 3, 1, 1)
    return torch.as_tensor((x / 255.0 - m) / s, dtype=torch.float32)


def timm_normalisation(variant: str) -> tuple[tuple, tuple]:
    """The mean and std of ``variant``'s pretrained config (ViTs: 0.5, ResNets: ImageNet's)."""
    import timm

    cfg = timm.get_pretrained_cfg(variant)
    return tuple(cfg.mean), tuple(cfg.std)


WORDS = {
    0: ["excellent", "wonderful", "superb", "delightful"],
    1: ["terrible", "awful", "dreadful", "horrible"],
    2: ["average", "mediocre", "passable", "ordinary"],
}
FILLER = [
    "the",
    "a",
    "this",
    "film",
    "movie",
    "plot",
    "actor",
    "scene",
    "it",
    "was",
    "is",
    "and",
    "with",
    "story",
    "music",
    "ending",
]


def texts(n_per_class: int = 200, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Short reviews: 6–14 filler words and two of the class's keywords, in random order."""
    g = np.random.default_rng(seed)
    out, ys = [], []
    for k, words in WORDS.items():
        for _ in range(n_per_class):
            tokens = list(g.choice(FILLER, g.integers(6, 15))) + list(g.choice(words, 2))
            g.shuffle(tokens)
            out.append(" ".join(tokens))
            ys.append(k)
    return out, np.asarray(ys)


def _fit(
    family: str,
    arch: dict,
    x: torch.Tensor,
    y: torch.Tensor,
    seeds: range,
    epochs: int,
    lr: float = 3e-3,
    batch_size: int = 32,
):
    cut = int(len(x) * 0.8)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    fit = Distiller(family=family, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr).fit(
        x[:cut], y[:cut], x[cut:], y[cut:], [Member(seed=s) for s in seeds]
    )
    # A teacher at chance would make every test built on it fail for the wrong reason.
    assert min(fit.val_acc_) > 0.6, f"{family} teachers did not learn: {fit.val_acc_}"
    return fit


def timm_checkpoints(
    folder: Path, variant: str, arch: dict, members: int = 2, epochs: int = 4, first_seed: int = 0
) -> list[Path]:
    """``members`` timm models of ``variant`` (shaped by ``arch``) trained on :func:`images`
    as timm's pretrained config normalises them, saved as safetensors state dicts."""
    from safetensors.torch import save_file

    x, y = images()
    fit = _fit(
        f"timm:{variant}",
        arch,
        imagenet_normalised(x, *timm_normalisation(variant)),
        torch.as_tensor(y),
        range(first_seed, first_seed + members),
        epochs,
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, m in enumerate(fit.models_):
        path = folder / f"{variant}-{i}.safetensors"
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
        paths.append(path)
    return paths


def hf_vit_folders(folder: Path, members: int = 2) -> list[Path]:
    """Hugging Face ViT classifiers trained on :func:`images`, each saved with
    ``save_pretrained`` and an image processor (rescale 1/255, ImageNet mean and std)."""
    from transformers import ViTImageProcessor

    x, y = images()
    arch = {"head_width": 8, "heads": 2, "layers": 1, "patch_size": 4}
    # Seed 0 of a ViT this small stays at chance on these 360 images (so does seed 3).
    fit = _fit(
        "hf:vit", arch, imagenet_normalised(x), torch.as_tensor(y), range(1, 1 + members), 15
    )
    out = []
    for i, m in enumerate(fit.models_):
        path = folder / f"vit-{i}"
        m.hf.save_pretrained(str(path))
        ViTImageProcessor(
            do_resize=False, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)
        ).save_pretrained(str(path))
        out.append(path)
    return out


def wordpiece(corpus: list[str], vocab: int = 200):
    from bench.tasks.text import train_wordpiece

    return train_wordpiece(corpus, vocab)


def hf_bert_folders(folder: Path, members: int = 2, length: int = 24) -> list[Path]:
    """Hugging Face BERT classifiers trained on :func:`texts` with a WordPiece tokenizer
    trained here, each folder holding the model (``save_pretrained``) and the tokenizer."""
    from transformers import PreTrainedTokenizerFast

    corpus, y = texts()
    tok = wordpiece(corpus)
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=length)
    tok.enable_truncation(max_length=length)
    ids = torch.tensor([e.ids for e in tok.encode_batch(corpus)])
    # One layer reading [CLS] plateaus at 57-73 % here (so does a plain training loop); two learn.
    arch = {"head_width": 8, "heads": 2, "layers": 2, "vocab_size": tok.get_vocab_size()}
    fit = _fit("hf:bert", arch, ids, torch.as_tensor(y), range(members), 10, 1e-3, 16)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=length,
    )
    out = []
    for i, m in enumerate(fit.models_):
        path = folder / f"bert-{i}"
        m.hf.save_pretrained(str(path))
        fast.save_pretrained(str(path))
        out.append(path)
    return out


def onnx_teachers(folder: Path, members: int = 2) -> list[Path]:
    """kdcore CNNs trained on :func:`images` normalised with ImageNet's mean and std, exported
    to ONNX (dynamic batch): a teacher whose suite states that normalisation."""
    x, y = images()
    fit = _fit(
        "cnn",
        {"channels": 8, "blocks": 2},
        imagenet_normalised(x),
        torch.as_tensor(y),
        range(members),
        6,
    )
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, m in enumerate(fit.models_):
        path = folder / f"cnn-{i}.onnx"
        path.write_bytes(onnx_bytes(m, (3, SIDE, SIDE)))
        out.append(path)
    return out


def write_images(path: Path) -> Path:
    x, y = images()
    np.savez(path, X=x, y=y)
    return path


def write_texts(path: Path) -> Path:
    import pandas as pd

    corpus, y = texts()
    pd.DataFrame({"review": corpus, "label": [f"c{k}" for k in y]}).to_csv(path, index=False)
    return path
