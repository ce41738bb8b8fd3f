"""Latency measurements of a student or the ensemble into record columns.

The ensemble's forms and the students of a task are timed together, interleaved, with
:func:`kdcore.measure_latencies` (protocol in its docstring), at batch 1 and at the suite's
large batch N, on the CPU with ``measure.threads`` threads, on the CPU with all cores
(``multi_thread``), and on the GPU when one is used. Columns for what is not measured stay
NaN.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping

import torch
from torch import nn

from bench.config.suite import MeasureConfig
from bench.fmt import to_float
from bench.latency.onnx import OrtModel, example_batch
from bench.threads import all_cores
from kdcore import TeacherEnsemble
from kdcore.latency import LatencyResult, measure_latencies

log = logging.getLogger(__name__)

__all__ = [
    "architecture_model",
    "ensemble_forms",
    "ensemble_latency_columns",
    "latency_pass",
    "speedups",
    "student_latency_columns",
]


def latency_pass(
    models: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    input_shape: tuple[int, ...],
    cfg: MeasureConfig,
    gpu: torch.device | None,
    ort: Mapping[str, OrtModel] | None = None,
    vocab: int | None = None,
) -> dict[str, dict[str, LatencyResult]]:
    """Every model timed **interleaved** (:func:`kdcore.measure_latencies`) at each setting:
    batch 1 and batch N on the CPU with ``cfg.threads`` threads, with all cores when
    ``cfg.multi_thread``, and on ``gpu``; the ``ort`` sessions (keyed like ``models``) in the
    same rounds as the CPU setting. Returns, per model, ``{"cpu_b1", "cpu_mt_b1", "gpu_b1",
    "ort_cpu_b1", "cpu_bN", ...}`` → result; models end on the CPU. ``vocab``: a text
    model's vocabulary (inputs are then token ids)."""
    ort = ort or {}
    out: dict[str, dict[str, LatencyResult]] = {name: {} for name in models}
    settings = [("cpu", "cpu", cfg.threads)]
    if cfg.multi_thread:
        settings.append(("cpu_mt", "cpu", all_cores()))
    if gpu is not None:
        settings.append(("gpu", str(gpu), cfg.threads))
    try:
        for tag, batch in (("b1", 1), ("bN", cfg.batch)):
            x = example_batch(input_shape, batch, vocab, seed=batch)
            for key, device, threads in settings:
                extra = {f"{n}@ort": m for n, m in ort.items()} if key == "cpu" else {}
                timed = measure_latencies(
                    {**models, **extra},
                    x,
                    device=device,
                    threads=threads,
                    warmup=cfg.warmup,
                    min_run_time=cfg.min_run_time,
                    block_s=cfg.block_ms / 1e3,
                )
                for name, res in timed.items():
                    if name.endswith("@ort"):  # a deployed form has no eager model: its own key
                        out.setdefault(name.removesuffix("@ort"), {})[f"ort_cpu_{tag}"] = res
                    else:
                        out[name][f"{key}_{tag}"] = res
    finally:
        for model in models.values():
            if isinstance(model, nn.Module):
                model.to("cpu")
    return out


def student_latency_columns(
    res: Mapping[str, LatencyResult], cfg: MeasureConfig
) -> dict[str, object]:
    """The record columns of one student from its :func:`latency_pass` results (NaN for a
    setting not measured)."""
    cols: dict[str, object] = {
        "latency_threads": cfg.threads,
        "latency_batch_n": cfg.batch,
        "latency_mt_threads": all_cores() if cfg.multi_thread else None,
    }
    for tag in ("b1", "bN"):
        for dev in ("cpu", "gpu", "ort_cpu"):
            r = res.get(f"{dev}_{tag}")
            if r is None:
                continue
            cols.update(_stats(dev, tag, r))
            if tag == "bN":
                cols[f"throughput_{dev}_bN_per_s"] = r.throughput_per_s
        mt = res.get(f"cpu_mt_{tag}")
        if mt is not None:
            cols[f"latency_cpu_mt_{tag}_p50_ms"] = mt.p50_ms
            if tag == "bN":
                cols["throughput_cpu_mt_bN_per_s"] = mt.throughput_per_s
    return cols


def _stats(dev: str, tag: str, res: LatencyResult) -> dict[str, object]:
    return {
        f"latency_{dev}_{tag}_p50_ms": res.p50_ms,
        f"latency_{dev}_{tag}_p90_ms": res.p90_ms,
        f"latency_{dev}_{tag}_p99_ms": res.p99_ms,
        f"latency_{dev}_{tag}_iqr_ms": res.iqr_ms,
        f"latency_{dev}_{tag}_noisy": res.noisy,
    }


def ensemble_forms(
    ensemble: TeacherEnsemble | None, example: torch.Tensor | None = None
) -> dict[str, nn.Module]:
    """The forms the ensemble is timed in: a Python ``loop`` over members, ``fused`` into
    batched ops (members of one architecture that ``torch.func`` can stack: a run of the fused
    form on ``example`` must work, else there is none — library models with data-dependent
    control flow, ONNX members), and a specialist system's ``generalist`` alone (its extra
    cost). Nothing for a teacher whose architecture is unknown (offline logits)."""
    if ensemble is None:
        return {}
    forms: dict[str, nn.Module] = {"loop": ensemble.eval()}
    if ensemble.can_fuse:
        try:
            fused = ensemble.fused().eval()
            if example is not None:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # vmap's fallback notes
                    fused(example)
            forms["fused"] = fused
        except Exception as exc:  # any failure means: no fused form
            log.info("the ensemble has no fused form: %s: %s", type(exc).__name__, exc)
    if getattr(ensemble, "specialist_info", None) is not None:
        forms["generalist"] = ensemble.members[0].eval()
    return forms


_ENSEMBLE_COLUMNS = ("cpu_b1", "cpu_bN", "gpu_b1", "gpu_bN", "ort_cpu_b1", "ort_cpu_bN")


def ensemble_latency_columns(
    res: Mapping[str, Mapping[str, LatencyResult]],
) -> tuple[dict[str, object], dict[str, object]]:
    """From the :func:`latency_pass` results of each of :func:`ensemble_forms`: the p50 record
    columns (loop and fused; NaN for a form not timed) and the full statistics (p50/p90/p99/IQR,
    noise flag, throughput; also with all cores) for the manifest."""
    cols: dict[str, object] = {}
    detail: dict[str, object] = {}
    for form, by_setting in res.items():
        for setting, r in by_setting.items():
            detail[f"{form}_{setting}"] = r.as_dict()
            if form != "generalist" and setting in _ENSEMBLE_COLUMNS:
                cols[f"ensemble_{form}_latency_{setting}_p50_ms"] = r.p50_ms
    return cols, detail


def speedups(row: dict[str, object]) -> dict[str, float]:
    """Ensemble / student latency at batch 1 against each ensemble form and the faster one."""
    nan = math.nan

    def ratio(a: object, b: object) -> float:
        a_f, b_f = to_float(a), to_float(b)
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
    ort = [
        r
        for r in (
            ratio(
                row.get(f"ensemble_{form}_latency_ort_cpu_b1_p50_ms", nan),
                row.get("latency_ort_cpu_b1_p50_ms", nan),
            )
            for form in ("loop", "fused")
        )
        if not math.isnan(r)
    ]
    out["speedup_ort_cpu_b1"] = min(ort) if ort else nan
    return out


def architecture_model(
    family: str, arch: dict[str, int | float], input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """A model of one architecture to time (seeded; the weights do not change the cost of a
    dense forward pass)."""
    from kdcore import build_student

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_student(family, input_shape, num_classes, **arch)
