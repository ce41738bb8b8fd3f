"""ONNX forms of a model and onnxruntime sessions: what ``kdbench export`` ships as
``student.onnx`` and what the latency pass times in onnxruntime.

A model on **raw** feature rows: the training split's standardisation is part of the graph,
folded into the first layer where the model starts with a linear layer on flat features,
exactly ``W' = W / scale`` (per input column) and ``b' = b − W'·mean`` (computed in float64);
otherwise a standardisation node before the model (a convolution's zero padding would not fold
exactly). Exported with ``torch.onnx.export(dynamo=True)``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "ONNX_PACKAGES",
    "OrtModel",
    "RawInput",
    "example_batch",
    "has_dynamic_batch",
    "onnx_bytes",
    "onnx_many",
    "onnx_missing",
    "onnx_predict",
    "ort_models",
    "raw_input_model",
]

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def example_batch(
    input_shape: tuple[int, ...], batch: int, vocab: int | None = None, *, seed: int | None = None
) -> torch.Tensor:
    """An input batch for export or timing: zeros (``seed`` None) or seeded standard-normal
    features; with ``vocab`` (a text model's vocabulary), token ids — ones, or seeded ids in
    ``[1, vocab)`` (0 is padding)."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    if vocab is not None:
        if g is None:
            return torch.ones(batch, *input_shape, dtype=torch.long)
        return torch.randint(1, max(int(vocab), 2), (batch, *input_shape), generator=g)
    return (
        torch.zeros(batch, *input_shape)
        if g is None
        else torch.randn(batch, *input_shape, generator=g)
    )


def onnx_missing() -> str | None:
    """None when ONNX export and onnxruntime work here, else what is missing."""
    missing = [m for m in ONNX_PACKAGES if importlib.util.find_spec(m) is None]
    return f"needs {', '.join(missing)} (pip install 'kdbench[onnx]')" if missing else None


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


def onnx_bytes(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch: int | None = None,
    vocab: int | None = None,
) -> bytes:
    """The model as ONNX (input ``x``: float32 ``[batch, *input_shape]``, or int64 token ids
    with ``vocab``; output ``logits``), exported quietly (the exporter prints its steps and
    logs its guards). ``batch`` None: a dynamic batch dimension, which a model whose code
    fixes the batch (checks that compare shapes) may not get (:func:`has_dynamic_batch`);
    else that batch size, fixed."""
    example = example_batch(input_shape, 2 if batch is None else batch, vocab)
    dynamic = None if batch is not None else ({0: torch.export.Dim("batch")},)
    with _quiet_export():
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


def onnx_many(
    models: dict[str, nn.Module], input_shape: tuple[int, ...], vocab: int | None = None
) -> dict[str, bytes]:
    """Each model as its own ONNX graph (dynamic batch, input ``x``), from **one** export of
    all of them side by side, each graph then cut out with ``onnx.utils.Extractor``: tracing
    costs ~0.5 s an export whatever the size, so 26 small students take 3 s, not 15. Raises
    when the joint export fails or loses the dynamic batch (then export them one by one)."""
    import onnx
    import onnx.utils

    names = list(models)
    outputs = [f"logits_{i}" for i in range(len(names))]
    example = example_batch(input_shape, 2, vocab)
    with _quiet_export():
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
    x = np.asarray(
        x, dtype=np.int64 if np.issubdtype(np.asarray(x).dtype, np.integer) else np.float32
    )
    out = [
        session.run(["logits"], {"x": x[i : i + batch]})[0].argmax(-1)
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """torch.onnx.export without its noise: it prints its steps, warns, and logs its guards."""
    log = logging.getLogger("torch")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


class OrtModel:
    """A model exported to ONNX and run by onnxruntime on the CPU, called like a module on a
    torch tensor (the numpy view of an input is made once per input tensor, as a caller
    holding numpy rows would have them). ``graphs``: batch size → ONNX model (None: a graph
    with a dynamic batch, for every batch size)."""

    def __init__(self, graphs: Mapping[int | None, bytes], threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sessions = {
            b: ort.InferenceSession(g, opts, providers=["CPUExecutionProvider"])
            for b, g in graphs.items()
        }
        self._x: torch.Tensor | None = None
        self._run: Any = None
        self._feed: dict[str, Any] = {}

    def __call__(self, x: torch.Tensor) -> Any:
        if x is not self._x:
            session = self.sessions.get(None) or self.sessions[int(x.shape[0])]
            self._x, self._run, self._feed = x, session.run, {"x": x.numpy()}
        return self._run(None, self._feed)[0]


def ort_models(
    models: Mapping[str, nn.Module],
    input_shape: tuple[int, ...],
    threads: int,
    batch: int,
    vocab: int | None = None,
) -> tuple[dict[str, OrtModel], dict[str, str]]:
    """Each model exported to ONNX with the exporter ``kdbench export`` ships with (all at once
    by :func:`onnx_many`; else one by one, :func:`onnx_bytes`: one
    graph with a dynamic batch, or, for a model whose code fixes the batch, one graph per
    timed batch size) in an onnxruntime session with ``threads`` threads; and, per model
    that could not be exported, why."""
    out: dict[str, OrtModel] = {}
    errors: dict[str, str] = {}
    try:  # one joint export (fast); one by one when a model breaks it
        return {
            n: OrtModel({None: g}, threads)
            for n, g in onnx_many(dict(models), input_shape, vocab).items()
        }, {}
    except Exception:  # the one-by-one path below names each model's failure
        pass
    for name, model in models.items():
        try:
            graph = onnx_bytes(model, input_shape, vocab=vocab)
            graphs: dict[int | None, bytes] = (
                {None: graph}
                if has_dynamic_batch(graph)
                else {b: onnx_bytes(model, input_shape, b, vocab) for b in (1, batch)}
            )
            out[name] = OrtModel(graphs, threads)
        except Exception as exc:  # a plug-in family torch.onnx cannot export: NaN, and why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            errors[name] = f"ONNX export failed: {type(exc).__name__}: {first[:200]}"
    return out, errors
