"""The exported student in the formats users deploy: PyTorch, safetensors and ONNX.

* ``torch`` — ``student.pt`` (see :mod:`bench.export`).
* ``safetensors`` — ``student.safetensors`` (the ``state_dict``, read with
  ``safetensors.torch.load_file``) and ``student.json`` beside it: ``family``, ``arch``,
  ``input_shape``, ``num_classes``, ``class_names``, ``preprocessing`` (``mean``/``scale``
  lists, or null) and ``provenance`` — what ``kdcore.build_student`` needs to rebuild it.
* ``onnx`` — ``student.onnx``: a model that takes **raw** feature rows ``[batch, *input_shape]``
  (float32, any batch size: a dynamic batch dimension) and returns logits. The training
  split's standardisation is part of the graph: folded into the first layer where the model
  starts with a linear layer on flat features, exactly ``W' = W / scale`` (per input column)
  and ``b' = b − W'·mean`` (computed in float64); otherwise a standardisation node before the
  model (a convolution's zero padding would not fold exactly). Exported with
  ``torch.onnx.export(dynamo=True)`` and checked with onnxruntime after the export.

Which formats can be written depends on what is installed: :func:`available` says why not.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "FORMATS",
    "RawInput",
    "available",
    "has_dynamic_batch",
    "onnx_bytes",
    "onnx_many",
    "onnx_predict",
    "raw_input_model",
    "safetensors_bytes",
]

FORMATS = ("torch", "safetensors", "onnx")
_NEEDS = {
    "torch": (),
    "safetensors": ("safetensors",),
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
}


def available() -> dict[str, str | None]:
    """Each format → None when it can be written here, else why not (the missing packages)."""
    out: dict[str, str | None] = {}
    for fmt, mods in _NEEDS.items():
        missing = [m for m in mods if importlib.util.find_spec(m) is None]
        out[fmt] = f"needs {', '.join(missing)} (pip install 'kdbench[onnx]')" if missing else None
    return out


class RawInput(nn.Module):
    """``model((x − mean) / scale)`` on raw inputs ``x`` of shape ``[n, *input_shape]``, the
    statistics per flattened feature (as kdbench standardises)."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.mean: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("mean", mean.to(torch.float32).reshape(1, -1))
        self.register_buffer("scale", scale.to(torch.float32).reshape(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = (x.flatten(1) - self.mean) / self.scale
        return self.model(flat.view_as(x))


def raw_input_model(
    model: nn.Module, input_shape: tuple[int, ...], prep: dict[str, Any] | None
) -> tuple[nn.Module, str]:
    """The model on raw inputs and how the standardisation entered it (``"folded"``,
    ``"node"`` or ``"none"``). Folding: a model that is an ``nn.Sequential`` starting with an
    ``nn.Linear`` on flat features gets ``W' = W / scale``, ``b' = b − W'·mean``."""
    model = model.eval()
    if not prep:
        return model, "none"
    mean = torch.as_tensor(np.asarray(prep["mean"], dtype=np.float64))
    scale = torch.as_tensor(np.asarray(prep["scale"], dtype=np.float64))
    first = model[0] if isinstance(model, nn.Sequential) and len(model) else None
    if len(input_shape) == 1 and isinstance(first, nn.Linear):
        import copy

        folded = copy.deepcopy(model)
        assert isinstance(folded, nn.Sequential)
        lin = folded[0]
        assert isinstance(lin, nn.Linear)
        w = lin.weight.detach().to(torch.float64) / scale[None, :]
        b = lin.bias.detach().to(torch.float64) if lin.bias is not None else torch.zeros(len(w))
        with torch.no_grad():
            lin.weight.copy_(w.to(torch.float32))
            if lin.bias is None:
                lin.bias = nn.Parameter(torch.zeros(lin.out_features))
            lin.bias.copy_((b - w @ mean).to(torch.float32))
        return folded, "folded"
    return RawInput(model, mean, scale).eval(), "node"


def safetensors_bytes(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[bytes, str]:
    """``student.safetensors`` (contiguous CPU tensors; metadata names the sidecar) and the
    ``student.json`` sidecar text."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    data = save(tensors, metadata={"format": "pt", "sidecar": "student.json"})
    return data, json.dumps(meta, indent=2) + "\n"


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...], batch: int | None = None) -> bytes:
    """The model as ONNX (input ``x``: float32 ``[batch, *input_shape]``, output ``logits``),
    exported quietly (the exporter prints its steps and logs its guards). ``batch`` None: a
    dynamic batch dimension, which a model whose code fixes the batch (checks that compare
    shapes) may not get (:func:`has_dynamic_batch`); else that batch size, fixed."""
    example = torch.zeros(2 if batch is None else batch, *input_shape)
    dynamic = None if batch is not None else ({0: torch.export.Dim("batch")},)
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        _quiet("torch"),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval(),
            (example,),
            dynamo=True,
            verbose=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes=dynamic,
        )
        assert program is not None
        buf = io.BytesIO()
        program.save(buf)  # type: ignore[arg-type]
    return buf.getvalue()


class _Many(nn.Module):
    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(m(x) for m in self.models)


def onnx_many(models: dict[str, nn.Module], input_shape: tuple[int, ...]) -> dict[str, bytes]:
    """Each model as its own ONNX graph (dynamic batch, input ``x``), from **one** export of
    all of them side by side, each graph then cut out with ``onnx.utils.Extractor``: tracing
    costs ~0.5 s an export whatever the size, so 26 small students take 3 s, not 15. Raises
    when the joint export fails or loses the dynamic batch (then export them one by one)."""
    import onnx
    import onnx.utils

    names = list(models)
    outputs = [f"logits_{i}" for i in range(len(names))]
    example = torch.zeros(2, *input_shape)
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        _quiet("torch"),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _Many([models[n].eval() for n in names]),
            (example,),
            dynamo=True,
            verbose=False,
            input_names=["x"],
            output_names=outputs,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    assert program is not None
    proto = program.model_proto
    if not proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param:
        raise ValueError("the joint export fixed the batch size")
    extractor = onnx.utils.Extractor(proto)
    return {
        n: extractor.extract_model(["x"], [o]).SerializeToString()
        for n, o in zip(names, outputs, strict=True)
    }


def has_dynamic_batch(data: bytes) -> bool:
    """Whether the ONNX model's input ``x`` has a symbolic batch dimension."""
    import onnx

    dim = onnx.load_from_string(data).graph.input[0].type.tensor_type.shape.dim[0]
    return bool(dim.dim_param)


def onnx_predict(data: bytes, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """onnxruntime (CPU) class predictions of the ONNX model ``data`` on raw inputs ``x``."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.asarray(x, dtype=np.float32)
    out = [
        session.run(["logits"], {"x": x[i : i + batch]})[0].argmax(-1)
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@contextlib.contextmanager
def _quiet(name: str) -> Any:
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
