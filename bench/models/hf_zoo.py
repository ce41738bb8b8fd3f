"""Hugging Face transformers as kdbench families, built from a config with random weights:
``[student] family = "hf:bert"`` (text classification) or ``"hf:vit"`` (images).

* ``hf:bert`` — ``BertForSequenceClassification``: ``head_width`` (hidden channels per head,
  ``hidden_size = heads · head_width``; the capacity axis), ``heads``, ``layers`` (encoder
  layers), ``ffn`` (optional: intermediate size as a multiple of the hidden size, 4 by
  default) and ``vocab_size`` (from the task's tokenizer: never searched). Inputs are token
  ids ``[N, length]`` with 0 for padding (the attention mask is ``ids != 0``);
  ``max_position_embeddings`` is the task's length.
* ``hf:vit`` — ``ViTForImageClassification``: ``head_width``, ``heads``, ``layers``, ``ffn``
  and ``patch_size`` (optional: :func:`default_patch`, at most 8 patches along a side).
  Inputs ``[N, C, H, W]``.

:class:`HFClassifier` wraps either so that ``model(x)`` returns the logits tensor, as every
kdbench model does; ``.hf`` is the transformers model itself (``save_pretrained`` works on
it). Building never downloads: the config is made here, weights are random.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kdcore.exceptions import ParameterError, UnknownNameError
from kdcore.families import ArchParam, register_family

__all__ = ["MODELS", "HFClassifier", "default_patch", "quiet_transformers", "resolve"]


def quiet_transformers() -> None:
    """transformers without progress bars or advice on stderr, and never online."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class HFClassifier(nn.Module):
    """A transformers classifier whose ``forward(x)`` returns logits: token ids (0 =
    padding, masked) for text, pixel values for images."""

    def __init__(self, hf: nn.Module, tokens: bool) -> None:
        super().__init__()
        self.hf = hf
        self.tokens = tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            out = self.hf(input_ids=x, attention_mask=(x != 0).long())
        else:
            out = self.hf(pixel_values=x)
        logits: torch.Tensor = out.logits
        return logits


def default_patch(side: int) -> int:
    """A patch side for an image side: the smallest divisor of ``side`` that gives at most 8
    patches along it (28 → 4, 32 → 4, 224 → 28)."""
    return next(p for p in range(1, side + 1) if side % p == 0 and side // p <= 8)


def _hidden(arch: dict[str, Any]) -> tuple[int, int, int, int]:
    heads = int(arch["heads"])
    hidden = heads * int(arch["head_width"])
    return hidden, heads, int(arch["layers"]), round(float(arch.get("ffn", 4.0)) * hidden)


def _bert(input_shape: Sequence[int], num_classes: int, **arch: Any) -> nn.Module:
    quiet_transformers()
    from transformers import BertConfig, BertForSequenceClassification

    (length,) = (int(s) for s in input_shape)
    hidden, heads, layers, ffn = _hidden(arch)
    cfg = BertConfig(  # type: ignore[call-arg]  # num_labels: a PretrainedConfig keyword
        vocab_size=int(arch["vocab_size"]),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=length,
        num_labels=int(num_classes),
        pad_token_id=0,
    )
    return HFClassifier(BertForSequenceClassification(cfg), tokens=True)


def _vit(input_shape: Sequence[int], num_classes: int, **arch: Any) -> nn.Module:
    quiet_transformers()
    from transformers import ViTConfig, ViTForImageClassification

    c, h, w = (int(s) for s in input_shape)
    if h != w:
        raise ParameterError(f"hf:vit needs square images. Got {h} x {w}.")
    patch = int(arch.get("patch_size", default_patch(h)))
    if h % patch:
        raise ParameterError(
            f"hf:vit needs a patch_size that divides the image side {h}. Got {patch} instead."
        )
    hidden, heads, layers, ffn = _hidden(arch)
    cfg = ViTConfig(  # type: ignore[call-arg]  # num_labels: a PretrainedConfig keyword
        image_size=h,
        patch_size=patch,
        num_channels=c,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        num_labels=int(num_classes),
    )
    return HFClassifier(ViTForImageClassification(cfg), tokens=False)


_COMMON = (
    ArchParam(
        "head_width", int, (2, 512), (8, 64), log=True,
        doc="hidden channels per attention head (hidden_size = heads · head_width)",
    ),
    ArchParam("heads", int, (1, 64), (1, 4), doc="attention heads"),
    ArchParam("layers", int, (1, 48), (1, 4), doc="encoder layers"),
    ArchParam(
        "ffn", float, (0.25, 16.0), (1.0, 4.0), optional=True,
        doc="intermediate size / hidden size (optional: 4)",
    ),
)  # fmt: skip
MODELS: dict[str, dict[str, Any]] = {
    "bert": {
        "build": _bert,
        "params": (
            *_COMMON,
            ArchParam(
                "vocab_size",
                int,
                (2, 10_000_000),
                (2, 10_000_000),
                from_data=True,
                doc="the tokenizer's vocabulary (set from the task)",
            ),
        ),
        "input_kind": "tokens",
        "input_ranks": (1,),
        "example": (32,),
        "description": "Hugging Face BERT encoder for text classification (token ids in)",
    },
    "vit": {
        "build": _vit,
        "params": (
            *_COMMON,
            ArchParam(
                "patch_size",
                int,
                (1, 256),
                (4, 16),
                optional=True,
                search=False,
                doc="patch side in pixels (optional: at most 8 patches along a side)",
            ),
        ),
        "input_kind": "features",
        "input_ranks": (3,),
        "example": (3, 32, 32),
        "description": "Hugging Face ViT for image classification",
    },
}


def resolve(name: str) -> None:
    """Register ``hf:<name>`` (called by :func:`kdcore.get_family` on first use)."""
    spec = MODELS.get(name)
    if spec is None:
        raise UnknownNameError(
            f"Unknown model family 'hf:{name}'. Hugging Face families kdbench builds from a "
            f"config: {', '.join('hf:' + n for n in MODELS)}. A teacher from a local Hugging "
            "Face folder of any architecture is [teacher] hf = [...]."
        )
    register_family(
        f"hf:{name}",
        functools.partial(_built, spec["build"]),
        spec["params"],
        spec["description"],
        input_ranks=spec["input_ranks"],
        size_param="head_width",
        example_input_shape=spec["example"],
        input_kind=spec["input_kind"],
        grouping="loop",
        labels={"head_width": "head width"},
        replace=True,
    )


def _built(build: Any, input_shape: Sequence[int], num_classes: int, **arch: Any) -> nn.Module:
    module: nn.Module = build(input_shape, num_classes, **arch)
    return module
