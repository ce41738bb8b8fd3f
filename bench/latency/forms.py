"""The deployed forms of a student: its fp32 ONNX graph as onnxruntime's own tools turn it into
what a user ships (``[ship] forms``).

* ``fp32`` — the graph ``torch.onnx.export`` writes (:func:`bench.latency.onnx.onnx_bytes`).
* ``int8_dynamic`` — ``onnxruntime.quantization.quantize_dynamic``: int8 weights (per
  channel), activations quantised per batch at run time; no data needed.
* ``int8_static`` — ``quantize_static`` in the QDQ format, int8 weights (per channel) and
  activations, the activation ranges calibrated (MinMax) on ``calibration_rows`` rows drawn,
  seeded and stratified by nothing but the seed, from the **training** split — never from
  validation or test, which judge the form.
* ``fp16`` — ``onnxruntime.transformers.float16.convert_float_to_float16`` with float32
  inputs and outputs kept; it runs on onnxruntime's CUDA execution provider, so it is
  refused where that provider is missing (:func:`form_missing`).

Every form is evaluated and timed in onnxruntime, on the execution provider named by
:func:`form_provider`; the certificate is about that form's predictions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.config.suite import FORMS
from bench.latency.onnx import onnx_missing

__all__ = [
    "FORMS",
    "FormModel",
    "build_form",
    "calibration_rows",
    "form_missing",
    "form_provider",
    "task_calibration",
    "task_logits",
    "with_standardisation",
]


def form_provider(form: str) -> str:
    """The onnxruntime execution provider a form is run and timed on."""
    return "CUDAExecutionProvider" if form == "fp16" else "CPUExecutionProvider"


def form_missing(form: str) -> str | None:
    """None when this machine can produce and run ``form``, else why not (one clause)."""
    if form == "fp32":
        return None
    missing = onnx_missing()
    if missing is not None:
        return missing
    import onnxruntime as ort

    provider = form_provider(form)
    available = ort.get_available_providers()
    if provider not in available:
        return (
            f"it runs on onnxruntime's {provider} (onnxruntime-gpu on a CUDA machine), and "
            f"this onnxruntime {ort.__version__} offers only {', '.join(available)}"
        )
    return None


def calibration_rows(x_train: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training rows (all when fewer), drawn without replacement with ``seed``."""
    g = np.random.default_rng(seed)
    take = g.choice(len(x_train), size=min(n, len(x_train)), replace=False)
    return np.asarray(x_train[np.sort(take)])


def task_calibration(task: Any, n: int, seed: int = 0) -> np.ndarray:
    """:func:`calibration_rows` of a task's training split: the same rows for an in-memory
    task and a streamed one (read from its dataset, normalised as the students saw them)."""
    if getattr(task, "streamed", False):
        size = len(task.y_train)
        take = np.random.default_rng(seed).choice(size, size=min(n, size), replace=False)
        return np.asarray(task.take(np.sort(take)).numpy())
    return calibration_rows(task.x_train.numpy(), n, seed)


def task_logits(model: FormModel, task: Any, split: str, batch: int = 256) -> np.ndarray:
    """A form's logits on a task's split: the tensor in memory, or a streamed split read
    through a DataLoader, batch by batch (the form's own batching rule applies within)."""
    if not getattr(task, "streamed", False):
        return model.logits(task.split(split)[0].numpy())
    from torch.utils.data import DataLoader

    workers = int(getattr(task.config, "loader_workers", 0))
    loader = DataLoader(task.dataset(split), batch_size=batch, num_workers=workers)
    return np.concatenate([model.logits(x.numpy()) for x, _ in loader])


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over rows, in batches."""

    def __init__(self, rows: np.ndarray, batch: int = 64) -> None:
        self._batches = iter([rows[i : i + batch] for i in range(0, len(rows), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        part = next(self._batches, None)
        return None if part is None else {"x": part}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantiser logs a line per node and recommends pre-processing: keep the run's
    output to kdbench's own lines."""
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.setLevel(level)


def build_form(fp32: bytes, form: str, calibration: np.ndarray | None = None) -> bytes:
    """``form`` of the fp32 ONNX graph ``fp32`` (input ``x``, output ``logits``), as ONNX bytes.
    ``calibration``: the training rows ``int8_static`` calibrates its activation ranges on."""
    if form == "fp32":
        return fp32
    import onnx

    model = onnx.load_from_string(fp32)
    # The exporter's intermediate shape annotations can disagree with ONNX's own inference
    # (a transposed weight's dims), which the quantiser re-runs: let it infer them afresh.
    del model.graph.value_info[:]
    if form == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with _quiet():
            return convert_float_to_float16(model, keep_io_types=True).SerializeToString()
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        out = Path(tmp) / f"{form}.onnx"
        if form == "int8_dynamic":
            quantize_dynamic(model, out, per_channel=True, weight_type=QuantType.QInt8)
        elif form == "int8_static":
            if calibration is None or not len(calibration):
                raise ValueError("int8_static needs calibration rows from the training split")
            quantize_static(
                model,
                out,
                _Reader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
        else:
            raise ValueError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
        return out.read_bytes()


class FormModel:
    """A form in an onnxruntime session on its execution provider: logits of rows.

    ``int8_dynamic`` quantises activations with ranges computed over each call's whole input,
    so a row's prediction depends on the rows called with it (measured: a ResNet's 95.5 %
    one row per call fell to 52.5 % with the 1,000 test rows in one call). Its predictions
    are therefore taken one row per call, as a model answering requests runs it, and the
    card says so; the other forms' do not depend on the batch."""

    def __init__(self, data: bytes, form: str, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # the quantised graphs' optimiser notes
        self.form = form
        self.session = ort.InferenceSession(data, opts, providers=[form_provider(form)])

    def logits(self, x: Any, batch: int = 4096) -> np.ndarray:
        if self.form == "int8_dynamic":
            batch = 1
        x = np.asarray(x)
        x = x.astype(np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32)
        parts = [
            self.session.run(["logits"], {"x": x[i : i + batch]})[0]
            for i in range(0, len(x), batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def with_standardisation(
    graph: bytes, input_shape: tuple[int, ...], prep: dict[str, Any] | None
) -> bytes:
    """``graph`` (on standardised rows, as certification ran it) behind a float32
    ``(x − mean) / scale`` graph: the same form on raw rows, as ``student.onnx`` ships. The
    form's own nodes are unchanged (``onnx.compose.merge_models``)."""
    if not prep:
        return graph
    import onnx
    import onnx.compose
    import torch

    from bench.latency.onnx import RawInput, onnx_bytes

    mean = torch.as_tensor(np.asarray(prep["mean"], dtype=np.float64))
    scale = torch.as_tensor(np.asarray(prep["scale"], dtype=np.float64))
    front = onnx.load_from_string(
        onnx_bytes(RawInput(torch.nn.Identity(), mean, scale), input_shape)
    )
    model = onnx.load_from_string(graph)
    merged = onnx.compose.merge_models(
        front, model, io_map=[(front.graph.output[0].name, "x")], prefix1="raw_"
    )
    for node in merged.graph.node:  # the merged input keeps the name users feed: x
        for i, name in enumerate(node.input):
            if name == "raw_x":
                node.input[i] = "x"
    merged.graph.input[0].name = "x"
    return merged.SerializeToString()
