"""Latency measurements of a student or the ensemble into record columns.

Every model is timed with :func:`kdcore.measure_latency` (protocol in its docstring) at
batch 1 and at the suite's large batch N, on the CPU with ``measure.threads`` threads, on the
CPU with all cores (``multi_thread``), and on the GPU when one is used. Columns for what is not
measured stay NaN.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from bench.suite import MeasureConfig
from kdcore import LatencyResult, TeacherEnsemble, measure_latency

__all__ = [
    "all_cores",
    "architecture_latency",
    "ensemble_latency_columns",
    "student_latency_columns",
]


def all_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _inputs(input_shape: tuple[int, ...], batch: int) -> torch.Tensor:
    return torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(batch))


def _time(
    model: nn.Module, x: torch.Tensor, cfg: MeasureConfig, device: str, threads: int
) -> LatencyResult:
    return measure_latency(
        model,
        x,
        device=device,
        threads=threads,
        warmup=cfg.warmup,
        min_run_time=cfg.min_run_time,
        block_s=cfg.block_ms / 1e3,
    )


def student_latency_columns(
    model: nn.Module, input_shape: tuple[int, ...], cfg: MeasureConfig, gpu: torch.device | None
) -> dict[str, object]:
    cols: dict[str, object] = {
        "latency_threads": cfg.threads,
        "latency_batch_n": cfg.batch,
        "latency_mt_threads": all_cores() if cfg.multi_thread else None,
    }
    for tag, batch in (("b1", 1), ("bN", cfg.batch)):
        x = _inputs(input_shape, batch)
        res = _time(model, x, cfg, "cpu", cfg.threads)
        cols.update(_stats("cpu", tag, res))
        if tag == "bN":
            cols["throughput_cpu_bN_per_s"] = res.throughput_per_s
        if cfg.multi_thread:
            mt = _time(model, x, cfg, "cpu", all_cores())
            cols[f"latency_cpu_mt_{tag}_p50_ms"] = mt.p50_ms
            if tag == "bN":
                cols["throughput_cpu_mt_bN_per_s"] = mt.throughput_per_s
        if gpu is not None:
            res = _time(model, x, cfg, str(gpu), cfg.threads)
            cols.update(_stats("gpu", tag, res))
            if tag == "bN":
                cols["throughput_gpu_bN_per_s"] = res.throughput_per_s
    model.to("cpu")
    return cols


def _stats(dev: str, tag: str, res: LatencyResult) -> dict[str, object]:
    return {
        f"latency_{dev}_{tag}_p50_ms": res.p50_ms,
        f"latency_{dev}_{tag}_p90_ms": res.p90_ms,
        f"latency_{dev}_{tag}_p99_ms": res.p99_ms,
        f"latency_{dev}_{tag}_iqr_ms": res.iqr_ms,
        f"latency_{dev}_{tag}_noisy": res.noisy,
    }


def ensemble_latency_columns(
    ensemble: TeacherEnsemble | None,
    input_shape: tuple[int, ...],
    cfg: MeasureConfig,
    gpu: torch.device | None,
) -> tuple[dict[str, object], dict[str, object]]:
    """The ensemble as a Python loop over members and fused into batched ops.

    Returns the p50 record columns and the full statistics (p50/p90/p99/IQR, noise flag,
    throughput; also with all cores) for the manifest. Nothing (NaN columns) for a teacher
    whose architecture is unknown (offline logits). Members of different architectures (a
    specialist system) have no fused form (NaN); a specialist system's generalist alone is
    timed too (``generalist_*`` in the details: the system's extra cost)."""
    cols: dict[str, object] = {}
    detail: dict[str, object] = {}
    if ensemble is None:
        return cols, detail
    forms: dict[str, torch.nn.Module] = {"loop": ensemble.eval()}
    if ensemble.can_fuse:
        forms["fused"] = ensemble.fused().eval()
    if getattr(ensemble, "specialist_info", None) is not None:
        forms["generalist"] = ensemble.members[0].eval()
    for form, model in forms.items():
        for tag, batch in (("b1", 1), ("bN", cfg.batch)):
            x = _inputs(input_shape, batch)
            res = _time(model, x, cfg, "cpu", cfg.threads)
            if form != "generalist":
                cols[f"ensemble_{form}_latency_cpu_{tag}_p50_ms"] = res.p50_ms
            detail[f"{form}_cpu_{tag}"] = res.as_dict()
            if cfg.multi_thread:
                detail[f"{form}_cpu_mt_{tag}"] = _time(model, x, cfg, "cpu", all_cores()).as_dict()
            if gpu is not None:
                res = _time(model, x, cfg, str(gpu), cfg.threads)
                if form != "generalist":
                    cols[f"ensemble_{form}_latency_gpu_{tag}_p50_ms"] = res.p50_ms
                detail[f"{form}_gpu_{tag}"] = res.as_dict()
        model.to("cpu")
    return cols, detail


def speedups(row: dict[str, object]) -> dict[str, float]:
    """Ensemble / student latency at batch 1 against each ensemble form and the faster one."""
    nan = float("nan")

    def ratio(a: object, b: object) -> float:
        try:
            a_f, b_f = float(a), float(b)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return nan
        return a_f / b_f if b_f > 0 else nan

    student = row.get("latency_cpu_b1_p50_ms")
    loop = row.get("ensemble_loop_latency_cpu_b1_p50_ms")
    fused = row.get("ensemble_fused_latency_cpu_b1_p50_ms")
    out = {
        "speedup_cpu_b1_vs_loop": ratio(loop, student),
        "speedup_cpu_b1_vs_fused": ratio(fused, student),
    }
    finite = [v for v in out.values() if not math.isnan(v)]
    out["speedup_cpu_b1"] = min(finite) if finite else nan
    g_loop = row.get("ensemble_loop_latency_gpu_b1_p50_ms", nan)
    g_fused = row.get("ensemble_fused_latency_gpu_b1_p50_ms", nan)
    gpu = [
        r
        for r in (
            ratio(g_loop, row.get("latency_gpu_b1_p50_ms", nan)),
            ratio(g_fused, row.get("latency_gpu_b1_p50_ms", nan)),
        )
        if not math.isnan(r)
    ]
    out["speedup_gpu_b1"] = min(gpu) if gpu else nan
    return out


def architecture_latency(
    family: str,
    arch: dict[str, int | float],
    input_shape: tuple[int, ...],
    num_classes: int,
    cfg: MeasureConfig,
    gpu: torch.device | None,
) -> dict[str, object]:
    """The latency columns of one architecture: a model of it (seeded; the weights do not
    change the cost of a dense forward pass) timed with the protocol of this module. Run once
    per distinct architecture after the search, with no training running beside it."""
    from kdcore import build_student

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_student(family, input_shape, num_classes, **arch)
    return student_latency_columns(model, input_shape, cfg, gpu)
