"""The per-trial benchmark on CUDA (skipped without a GPU; CI has none).

Same trial as test_bench_trial.py (seed task, width 77, depth 2, T 4, alpha 0.9, 10 epochs,
batch 256): one student alone, and 8 students trained as one group (timer divided by 8).
The peak is a float32 8192³ matmul on the same GPU in the same run (TF32 off, torch's
default for float32 matmuls), so the fraction of peak is like for like with the CPU table.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.test_bench_trial import ALPHA, GROUP, T, distill_trial, train_flops
from kdcore import Member, accuracy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def gpu_peak_gflops() -> float:
    a = torch.randn(8192, 8192, device="cuda")
    b = torch.randn(8192, 8192, device="cuda")
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(10):
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return 2 * 8192**3 / times[len(times) // 2] / 1e9


def _synced(fn):
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def _record(benchmark, acc: float, flops: float, peak: float, students: int) -> None:
    """flops: the whole fit's training FLOPs (all students); the timer covers the whole fit."""
    median = benchmark.stats.stats.median
    achieved = flops / median / 1e9
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name(0),
        test_acc=acc,
        students=students,
        seconds_per_student=median / students,
        achieved_gflops=achieved,
        matmul_peak_gflops=peak,
        fraction_of_peak=achieved / peak,
    )


def test_gpu_trial_single(benchmark, seed_setup, gpu_peak_gflops) -> None:
    _, task, teacher = seed_setup
    distill_trial(task, teacher, [Member(0, T, ALPHA)], device="cuda")  # CUDA context, kernels
    fit = benchmark.pedantic(
        _synced(lambda: distill_trial(task, teacher, [Member(0, T, ALPHA)], device="cuda")),
        rounds=5,
        iterations=1,
    )
    acc = accuracy(fit.predict_logits(task.x_test)[0], task.y_test)
    _record(benchmark, acc, train_flops(task, 1), gpu_peak_gflops, 1)


@pytest.mark.parametrize("group", [GROUP, 64])
def test_gpu_trial_grouped(benchmark, seed_setup, gpu_peak_gflops, group: int) -> None:
    """Timer per student: the group's wall time divided by its size."""
    _, task, teacher = seed_setup
    members = [Member(s, T, ALPHA) for s in range(group)]
    fit = benchmark.pedantic(
        _synced(lambda: distill_trial(task, teacher, members, device="cuda")),
        rounds=3,
        iterations=1,
    )
    acc = accuracy(fit.predict_logits(task.x_test)[0], task.y_test)  # seed 0, as above
    _record(benchmark, acc, train_flops(task, group), gpu_peak_gflops, group)
