"""An ONNX file as a teacher member: run in onnxruntime, never trained.

:func:`load_onnx_member` checks the graph against the task before anything runs: one input
whose fixed dimensions match a sample's shape (a fixed batch dimension is run row by row),
float inputs for features or integer ids for text, and one ``[N, C]`` output with the task's
class count. ``n_params`` counts the graph's initializers (the teacher's parameter column);
its FLOPs are not counted (NaN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["OnnxMember", "OnnxMismatch", "load_onnx_member"]

_FLOAT = {"tensor(float)", "tensor(double)", "tensor(float16)"}
_INT = {"tensor(int64)", "tensor(int32)"}


class OnnxMismatch(ValueError):
    """The graph does not fit the task (the message says how)."""


class OnnxMember(nn.Module):
    """``forward(x)`` runs the ONNX graph on ``x`` (no gradients): logits ``[N, C]``."""

    def __init__(self, session: Any, input_name: str, int_input: bool, row_by_row: bool) -> None:
        super().__init__()
        self.session = session
        self.input_name = input_name
        self.int_input = int_input
        self.row_by_row = row_by_row
        self.n_params = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy()
        arr = arr.astype(np.int64 if self.int_input else np.float32)
        if self.row_by_row:
            outs = [
                self.session.run(None, {self.input_name: arr[i : i + 1]})[0]
                for i in range(len(arr))
            ]
            out = np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
        else:
            out = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def load_onnx_member(
    path: Path, input_shape: tuple[int, ...], num_classes: int, tokens: bool
) -> OnnxMember:
    """The member of ``path`` for samples of ``input_shape``; :class:`OnnxMismatch` when the
    graph does not fit; any other exception when the file is not a loadable ONNX model."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    n_params = sum(int(np.prod(t.dims)) if t.dims else 1 for t in model.graph.initializer)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise OnnxMismatch(
            f"must take one input (the sample). Its inputs are: {[i.name for i in inputs]}"
        )
    inp = inputs[0]
    shape = list(inp.shape)
    if shape and isinstance(shape[0], int) and shape[0] != 1:
        raise OnnxMismatch(
            f"must take a dynamic batch (or batches of 1). Its input {inp.name!r} has shape {shape}"
        )
    if len(shape) != 1 + len(input_shape):
        raise OnnxMismatch(
            f"must take inputs [N, {', '.join(map(str, input_shape))}]. Its input "
            f"{inp.name!r} has shape {shape}"
        )
    for got, want in zip(shape[1:], input_shape, strict=True):
        if isinstance(got, int) and got != want:
            raise OnnxMismatch(
                f"must take inputs [N, {', '.join(map(str, input_shape))}] (the task's sample "
                f"shape). Its input {inp.name!r} has shape {shape}"
            )
    wanted = _INT if tokens else _FLOAT
    if inp.type not in wanted:
        kind = "integer token ids" if tokens else "float features"
        raise OnnxMismatch(f"must take {kind}. Its input {inp.name!r} is {inp.type}")
    out_shape = list(outputs[0].shape)
    if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != num_classes):
        raise OnnxMismatch(
            f"must output [N, {num_classes}] logits (the task's {num_classes} classes). Its "
            f"output {outputs[0].name!r} has shape {out_shape}"
        )
    member = OnnxMember(session, inp.name, tokens, isinstance(shape[0], int) and shape[0] == 1)
    member.n_params = n_params
    return member
