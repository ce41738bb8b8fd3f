"""The exported student in the formats users deploy: PyTorch, safetensors and ONNX.

* ``torch`` — ``student.pt`` (see :mod:`bench.ship.export`).
* ``safetensors`` — ``student.safetensors`` (the ``state_dict``, read with
  ``safetensors.torch.load_file``) and ``student.json`` beside it: ``family``, ``arch``,
  ``input_shape``, ``num_classes``, ``class_names``, ``preprocessing`` (``mean``/``scale``
  lists, or null) and ``provenance`` — what ``kdcore.build_student`` needs to rebuild it.
* ``onnx`` — ``student.onnx``: a model that takes **raw** feature rows ``[batch, *input_shape]``
  (float32, any batch size: a dynamic batch dimension) and returns logits, the
  standardisation in the graph (:mod:`bench.latency.onnx`); checked with onnxruntime after
  the export.

Which formats can be written depends on what is installed: :func:`available` says why not.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import torch

from bench.latency.onnx import onnx_missing

__all__ = ["FORMATS", "available", "safetensors_bytes"]

FORMATS = ("torch", "safetensors", "onnx")


def available() -> dict[str, str | None]:
    """Each format → None when it can be written here, else why not (the missing packages)."""
    safetensors = importlib.util.find_spec("safetensors") is None
    return {
        "torch": None,
        "safetensors": "needs safetensors (pip install 'kdbench[onnx]')" if safetensors else None,
        "onnx": onnx_missing(),
    }


def safetensors_bytes(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[bytes, str]:
    """``student.safetensors`` (contiguous CPU tensors; metadata names the sidecar) and the
    ``student.json`` sidecar text."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    data = save(tensors, metadata={"format": "pt", "sidecar": "student.json"})
    return data, json.dumps(meta, indent=2) + "\n"
