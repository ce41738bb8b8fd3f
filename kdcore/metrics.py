"""Metrics: accuracy and fidelity, parameter and FLOP counts, latency.

Conventions (stated in every run's manifest):

* FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass,
  divided by the batch size (per sample), with 2 FLOPs per multiply-add; MACs = FLOPs / 2.
  Only operators the counter knows (matmul, conv, attention …) are counted; element-wise
  ops (ReLU, bias adds, softmax) are not.
* Latency: see :func:`measure_latency`.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from kdcore.exceptions import DeviceUnavailableError, ParameterError

__all__ = [
    "LatencyResult",
    "accuracy",
    "agreement",
    "count_flops",
    "count_params",
    "expected_calibration_error",
    "kl_to_teacher",
    "mean_max_prob",
    "measure_latency",
    "select_device",
]


# ---------------------------------------------------------------------- accuracy & fidelity
def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy as a fraction in [0, 1] (``logits`` may be log-probabilities)."""
    return float((logits.argmax(-1) == labels).float().mean())


def agreement(a_logits: torch.Tensor, b_logits: torch.Tensor) -> float:
    """Fraction of samples on which the two models' top-1 predictions agree."""
    return float((a_logits.argmax(-1) == b_logits.argmax(-1)).float().mean())


def kl_to_teacher(teacher_log_probs: torch.Tensor, student_logits: torch.Tensor) -> float:
    """KL(teacher ‖ student) at T = 1 in nats, summed over classes, averaged over samples."""
    log_q = F.log_softmax(student_logits, dim=-1)
    return float(F.kl_div(log_q, teacher_log_probs, log_target=True, reduction="batchmean"))


def mean_max_prob(log_probs: torch.Tensor) -> float:
    """Mean over samples of the largest class probability (how one-hot the targets are)."""
    return float(log_probs.exp().max(dim=-1).values.mean())


def expected_calibration_error(
    logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15
) -> float:
    """ECE with ``n_bins`` equal-width confidence bins: Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|."""
    probs = F.softmax(logits.float(), dim=-1)
    conf, pred = probs.max(dim=-1)
    correct = (pred == labels).float()
    edges = torch.linspace(0.0, 1.0, n_bins + 1)
    ece = torch.zeros(())
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return float(ece)


# ---------------------------------------------------------------------- size
def count_params(model: nn.Module) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Forward FLOPs **per sample**: FlopCounterMode total / batch size, 2 per multiply-add.

    Raises ``ValueError`` when the counter sees no FLOPs in a model that has parameters: its
    operators are unknown to the counter, and reporting 0 would be a lie.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(example_input)
    finally:
        model.train(was_training)
    total = counter.get_total_flops()
    if total == 0 and count_params(model) > 0:
        raise ParameterError(
            f"FlopCounterMode counted 0 FLOPs for {type(model).__name__}: its operators are "
            "not covered by torch.utils.flop_counter (only matmul/conv/attention-like ops are). "
            "Express the model with nn.Linear/matmul/conv, or register a FLOP formula."
        )
    return round(total / example_input.shape[0])


# ---------------------------------------------------------------------- latency
def select_device(requested: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without CUDA raises a clear error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {requested!r} was requested but CUDA is not available."
        )
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda[:N]'. Got {requested!r}.")
    return torch.device(requested)


@dataclass(frozen=True)
class LatencyResult:
    """Per-call latency statistics of one (model, device, batch, threads) measurement, in ms.

    Percentiles are taken over repeated timed *blocks* (each block times ``number_per_block``
    back-to-back calls and reports their mean); ``noisy`` is IQR / median > ``noise_threshold``.
    """

    device: str
    batch_size: int
    threads: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    iqr_ms: float
    mean_ms: float
    n_blocks: int
    number_per_block: int
    warmup: int
    throughput_per_s: float
    noisy: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _summarise(
    times_s: list[float],
    *,
    device: str,
    batch_size: int,
    threads: int,
    number: int,
    warmup: int,
    noise_threshold: float,
) -> LatencyResult:
    ms = [t * 1e3 for t in times_s]
    p50 = _percentile(ms, 0.5)
    iqr = _percentile(ms, 0.75) - _percentile(ms, 0.25)
    return LatencyResult(
        device=device,
        batch_size=batch_size,
        threads=threads,
        p50_ms=p50,
        p90_ms=_percentile(ms, 0.9),
        p99_ms=_percentile(ms, 0.99),
        iqr_ms=iqr,
        mean_ms=statistics.fmean(ms),
        n_blocks=len(ms),
        number_per_block=number,
        warmup=warmup,
        throughput_per_s=batch_size / (p50 / 1e3) if p50 > 0 else float("nan"),
        noisy=bool(p50 > 0 and iqr / p50 > noise_threshold),
    )


def measure_latency(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    example_input: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    threads: int = 1,
    warmup: int = 10,
    min_run_time: float = 0.2,
    min_blocks: int = 30,
    block_s: float = 1e-3,
    noise_threshold: float = 0.10,
) -> LatencyResult:
    """Latency of ``model(example_input)`` per call.

    Protocol. The model is put in eval mode and called under ``torch.inference_mode()``.
    ``warmup`` untimed calls come first. A *block* is ``number`` back-to-back calls, with
    ``number`` chosen so that a block lasts about ``block_s`` (1 when one call is longer);
    blocks are timed until both ``min_blocks`` blocks and ``min_run_time`` seconds are
    reached, and p50/p90/p99/IQR are over the per-call mean of each block. CPU:
    ``torch.utils.benchmark.Timer`` with ``num_threads=threads`` (fixed for the measurement,
    restored after). CUDA: model and input are moved to the device, each block is bracketed by
    CUDA events and followed by ``torch.cuda.synchronize``. Throughput is ``batch / p50``.
    """
    device = torch.device(device)
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    x = example_input.to(device)
    batch = int(x.shape[0])
    kwargs: dict[str, Any] = {
        "device": str(device),
        "batch_size": batch,
        "threads": threads,
        "warmup": warmup,
        "noise_threshold": noise_threshold,
    }
    if device.type == "cuda":
        return _measure_cuda(
            model, x, min_run_time=min_run_time, min_blocks=min_blocks, block_s=block_s, **kwargs
        )
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            timer = benchmark.Timer(
                stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads
            )
            one_s = min(timer.timeit(1).median for _ in range(3))
            number = max(1, math.ceil(block_s / max(one_s, 1e-9)))
            times: list[float] = []
            began = time.perf_counter()
            while len(times) < min_blocks or time.perf_counter() - began < min_run_time:
                times.append(timer.timeit(number).median)
    finally:
        torch.set_num_threads(previous)
    return _summarise(times, number=number, **kwargs)


def _measure_cuda(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    min_run_time: float,
    min_blocks: int,
    block_s: float,
    warmup: int,
    **kwargs: object,
) -> LatencyResult:
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        torch.cuda.synchronize(x.device)
        # One call's cost sets how many calls make a block of ~block_s (event resolution).
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(x)
        end.record()
        torch.cuda.synchronize(x.device)
        one_ms = max(start.elapsed_time(end), 1e-3)
        number = max(1, math.ceil(block_s * 1e3 / one_ms))
        times: list[float] = []
        began = time.perf_counter()
        while len(times) < min_blocks or time.perf_counter() - began < min_run_time:
            start.record()
            for _ in range(number):
                model(x)
            end.record()
            torch.cuda.synchronize(x.device)
            times.append(start.elapsed_time(end) / 1e3 / number)
    return _summarise(times, number=number, warmup=warmup, **kwargs)  # type: ignore[arg-type]
