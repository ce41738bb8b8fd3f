"""Provenance of a run: machine, package versions, git commit, measurement conventions."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from bench.stats import METHOD
from bench.threads import all_cores

__all__ = ["CONVENTIONS", "git_info", "machine_info", "package_versions"]

CONVENTIONS: dict[str, object] = {
    "flops": "torch.utils.flop_counter.FlopCounterMode, one forward pass, per sample "
    "(total / batch), 2 FLOPs per multiply-add; MACs = FLOPs / 2; element-wise ops not counted",
    "params": "all parameters of the module",
    "latency": "kdcore.measure_latencies: eval mode, torch.inference_mode(), warm-up calls, then "
    "rounds in which every model of the pass times one block of back-to-back calls (about "
    "[measure] block_ms, 1 ms by default) and as many single calls, in an order rotated each "
    "round (ABAB: drift hits all models alike); >= 30 blocks and >= min_run_time s of blocks "
    "per model; p50/IQR over block means, p90/p99 over single calls; CPU via "
    "torch.utils.benchmark.Timer (blocks) and time.perf_counter (single calls) with a fixed "
    "thread count; GPU via CUDA events + synchronize; noisy = IQR/p50 > 10 %",
    "ensemble_latency": "measured twice: a Python loop over members and one fused batched-matmul "
    "graph; speedup_cpu_b1 is against the faster of the two",
    "accuracy": "fractions in [0, 1] on the test split; model selection (best epoch, Optuna "
    "objective, halving, the certification candidates and their order) uses the validation split only; the test split is read once per certification candidate",
    "intervals": METHOD + "; rel_acc bounds = 1 - gap bounds / ensemble_acc",
    "latency_when": "after the search and certification, with no training beside it: the "
    "ensemble (loop, fused) and every distinct architecture not timed yet (a seeded model of it) "
    "in one interleaved pass on one host; each student's speed-up divides by the ensemble of "
    "its own pass (latency_host names the host)",
    "acc_gap": "ensemble_acc - student_acc (positive = student worse); reports show pp",
}


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in (
        "torch",
        "numpy",
        "pandas",
        "optuna",
        "matplotlib",
        "scikit-learn",
        "scipy",
        "pyarrow",
        "kdbench",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(
    train_threads: int | str, latency_threads: int, gpu: torch.device | None
) -> dict[str, object]:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_cores": all_cores(),
        "train_threads": train_threads,
        "latency_threads": latency_threads,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(gpu) if gpu is not None else None,
        "torch_cuda": torch.version.cuda,
    }


def git_info() -> dict[str, object]:
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}
