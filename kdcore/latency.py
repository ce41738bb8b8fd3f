"""Latency: the device a model runs on, and the interleaved timing protocol
(:func:`measure_latencies`; CPU via ``torch.utils.benchmark``, CUDA via events)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils import benchmark

from kdcore.exceptions import DeviceUnavailableError, ParameterError

__all__ = ["LatencyResult", "measure_latencies", "measure_latency", "select_device"]


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

    ``p50_ms`` and ``iqr_ms`` are over repeated timed *blocks* (each block times
    ``number_per_block`` back-to-back calls and reports their mean): the typical cost of a
    call, free of the timer's own overhead. ``p90_ms`` and ``p99_ms`` are over ``n_calls``
    individually timed calls: the tail one request sees (with ~0.1 µs of timer per call, and
    at the resolution a few dozen calls allow when a call is longer than a block).
    ``noisy`` is IQR / median > ``noise_threshold``.
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
    n_calls: int
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


Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Timed:
    """One model's state in an interleaved measurement."""

    model: Callable[[torch.Tensor], torch.Tensor]
    number: int = 1
    timer: benchmark.Timer | None = None
    blocks_s: list[float] = field(default_factory=list)
    calls_s: list[float] = field(default_factory=list)
    spent_s: float = 0.0

    def summary(
        self, *, device: str, batch_size: int, threads: int, warmup: int, noise_threshold: float
    ) -> LatencyResult:
        ms = [t * 1e3 for t in self.blocks_s]
        calls = [t * 1e3 for t in self.calls_s]
        p50 = _percentile(ms, 0.5)
        iqr = _percentile(ms, 0.75) - _percentile(ms, 0.25)
        return LatencyResult(
            device=device,
            batch_size=batch_size,
            threads=threads,
            p50_ms=p50,
            p90_ms=_percentile(calls, 0.9),
            p99_ms=_percentile(calls, 0.99),
            iqr_ms=iqr,
            mean_ms=statistics.fmean(ms),
            n_blocks=len(ms),
            number_per_block=self.number,
            n_calls=len(calls),
            warmup=warmup,
            throughput_per_s=batch_size / (p50 / 1e3) if p50 > 0 else float("nan"),
            noisy=bool(p50 > 0 and iqr / p50 > noise_threshold),
        )


def measure_latency(  # noqa: PLR0913 — the timing protocol's settings, keyword-only
    model: Model,
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
    """Latency of ``model(example_input)`` per call: :func:`measure_latencies` of one model."""
    return measure_latencies(
        {"model": model},
        example_input,
        device=device,
        threads=threads,
        warmup=warmup,
        min_run_time=min_run_time,
        min_blocks=min_blocks,
        block_s=block_s,
        noise_threshold=noise_threshold,
    )["model"]


def measure_latencies(  # noqa: PLR0913 — the timing protocol's settings, keyword-only
    models: Mapping[str, Model],
    example_input: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    threads: int = 1,
    warmup: int = 10,
    min_run_time: float = 0.2,
    min_blocks: int = 30,
    block_s: float = 1e-3,
    noise_threshold: float = 0.10,
) -> dict[str, LatencyResult]:
    """Latency per call of each of ``models`` on ``example_input``, timed **interleaved**.

    Protocol. Each model is put in eval mode and called under ``torch.inference_mode()``;
    ``warmup`` untimed calls come first. A *block* is ``number`` back-to-back calls, with
    ``number`` chosen per model so that a block lasts about ``block_s`` (1 when one call is
    longer). Timing goes in rounds: round r times one block and then ``number`` individually
    timed calls of every model, in the order A B C …, rotated by one each round (A B C,
    B C A, …), so machine drift (another job, thermal or frequency changes) reaches every
    model alike and cancels in their ratios; rounds go on until every model has ``min_blocks``
    blocks and ``min_run_time`` seconds of timed blocks. p50/IQR are over block means,
    p90/p99 over the single calls (see :class:`LatencyResult`).

    CPU: ``torch.utils.benchmark.Timer`` with ``num_threads=threads`` (reading
    ``time.perf_counter``) for the blocks and ``time.perf_counter`` around each single call, the thread count fixed for the measurement
    and restored after. CUDA: models and input are moved to the device; a block and each
    single call are bracketed by CUDA events and followed by ``torch.cuda.synchronize``.
    Throughput is ``batch / p50``.
    """
    device = torch.device(device)
    x = example_input.to(device)
    timed: dict[str, _Timed] = {}
    for name, model in models.items():
        if isinstance(model, nn.Module):
            model = model.to(device).eval()
        timed[name] = _Timed(model)
    cuda = device.type == "cuda"
    previous = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for t in timed.values():
                for _ in range(warmup):
                    t.model(x)
                one_s = _one_call_s(t, x, threads, cuda)
                t.number = max(1, math.ceil(block_s / max(one_s, 1e-9)))
            order = list(timed.values())
            r = 0
            while any(len(t.blocks_s) < min_blocks or t.spent_s < min_run_time for t in order):
                for t in order[r % len(order) :] + order[: r % len(order)]:
                    _round(t, x, cuda)
                r += 1
    finally:
        torch.set_num_threads(previous)
    return {
        name: t.summary(
            device=str(device),
            batch_size=int(x.shape[0]),
            threads=threads,
            warmup=warmup,
            noise_threshold=noise_threshold,
        )
        for name, t in timed.items()
    }


def _one_call_s(t: _Timed, x: torch.Tensor, threads: int, cuda: bool) -> float:
    """One call's cost, which sets how many calls make a block."""
    if not cuda:
        # time.perf_counter, not the Timer's default clock: that one asks
        # torch.cuda.is_available() at every reading, ~0.9 µs on a CUDA build of torch without
        # a GPU (the CPU path never needs a device synchronisation)
        t.timer = benchmark.Timer(
            stmt="model(x)",
            globals={"model": t.model, "x": x},
            num_threads=threads,
            timer=time.perf_counter,
        )
        return min(t.timer.timeit(1).median for _ in range(3))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(x.device)
    start.record()
    t.model(x)
    end.record()
    torch.cuda.synchronize(x.device)
    return max(float(start.elapsed_time(end)), 1e-3) / 1e3  # event resolution


def _round(t: _Timed, x: torch.Tensor, cuda: bool) -> None:
    """One block of ``t.number`` calls, then as many single timed calls."""
    if not cuda:
        assert t.timer is not None
        block = float(t.timer.timeit(t.number).median)
        for _ in range(t.number):
            began = time.perf_counter()
            t.model(x)
            t.calls_s.append(time.perf_counter() - began)
    else:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(t.number):
            t.model(x)
        end.record()
        torch.cuda.synchronize(x.device)
        block = start.elapsed_time(end) / 1e3 / t.number
        for _ in range(t.number):
            start.record()
            t.model(x)
            end.record()
            torch.cuda.synchronize(x.device)
            t.calls_s.append(start.elapsed_time(end) / 1e3)
    t.blocks_s.append(block)
    t.spent_s += block * t.number
