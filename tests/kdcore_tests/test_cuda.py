"""CUDA paths of kdcore: training, grouped convolutions, FLOPs and latency on a GPU.

Skipped without CUDA (CI has none); run on a lent GPU machine, see docs/performance.md, GPU.
"""

from __future__ import annotations

import pytest
import torch

from kdcore import Distiller, Member, SoftTargets, TeacherEnsemble, build_student, count_flops
from kdcore.families import TeacherModel
from kdcore.latency import measure_latencies, measure_latency

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _data(n: int, seed: int, shape: tuple[int, ...] = (6,), c: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    w = torch.randn(x[0].numel(), c, generator=torch.Generator().manual_seed(99))
    return x, (x.flatten(1) @ w).argmax(-1)


def _fit(device: str, members, *, family: str = "mlp", arch=None, shape=(6,), backend="auto"):
    x, y = _data(600, 0, shape)
    xv, yv = _data(200, 1, shape)
    teacher = SoftTargets(torch.randn(2, len(x), 3, generator=torch.Generator().manual_seed(5)) * 3)
    return Distiller(
        family=family,
        arch=arch or {"width": 16, "depth": 2},
        epochs=4,
        batch_size=64,
        device=device,
        backend=backend,
    ).fit(x, y, xv, yv, members, teacher=teacher), xv


def test_grouped_training_on_cuda_matches_cpu() -> None:
    """Same members, seeds and batch order on both devices: initialisation and shuffling are
    drawn on the CPU generator, so only float rounding differs (cuBLAS vs CPU kernels)."""
    members = [Member(0, 4.0, 0.9), Member(1, 2.0, 0.5), Member(0, 1.0, 0.0)]
    torch.cuda.reset_peak_memory_stats()
    gpu, xv = _fit("cuda", members)
    assert torch.cuda.max_memory_allocated() > 600 * 6 * 4  # the training set went to the GPU
    cpu, _ = _fit("cpu", members)
    # The fitted members are standalone CPU modules whatever the training device (documented).
    assert all(p.device.type == "cpu" for p in gpu.models_[0].parameters())
    assert gpu.best_epoch_ == cpu.best_epoch_
    for a, b in zip(gpu.val_acc_, cpu.val_acc_, strict=True):
        assert a == pytest.approx(b, abs=0.011)  # at most two of 200 validation samples
    logits = gpu.predict_logits(xv)
    assert logits.device.type == "cpu" and torch.allclose(logits, cpu.predict_logits(xv), atol=2e-3)


def test_grouped_convolution_on_cuda_matches_vmap() -> None:
    members = [Member(0, 4.0, 0.9), Member(1, 1.0, 0.0)]
    kw = {"family": "cnn", "arch": {"channels": 4, "blocks": 2}, "shape": (1, 8, 8)}
    batched, xv = _fit("cuda", members, backend="batched", **kw)
    vmapped, _ = _fit("cuda", members, backend="vmap", **kw)
    assert batched.best_epoch_ == vmapped.best_epoch_
    assert torch.allclose(batched.predict_logits(xv), vmapped.predict_logits(xv), atol=2e-3)


def test_flops_do_not_depend_on_the_device() -> None:
    for family, arch, shape in (
        ("mlp", {"width": 32, "depth": 3}, (20,)),
        ("cnn", {"channels": 8, "blocks": 2}, (1, 8, 8)),
    ):
        model = build_student(family, shape, 10, **arch)
        x = torch.randn(4, *shape)
        cpu = count_flops(model, x)
        assert count_flops(model.cuda(), x.cuda()) == cpu > 0


def test_fused_ensemble_latency_on_cuda() -> None:
    torch.manual_seed(0)
    ens = TeacherEnsemble([TeacherModel(20, 2) for _ in range(3)]).eval()
    x = torch.randn(256, 20)
    loop = measure_latency(ens, x, device="cuda", min_run_time=0.05)
    fused = measure_latency(ens.fused(), x, device="cuda", min_run_time=0.05)
    assert loop.device.startswith("cuda") and fused.device.startswith("cuda")
    assert loop.p50_ms > 0 and fused.p50_ms > 0 and fused.n_blocks >= 30
    ens = ens.cuda()
    with torch.inference_mode():
        assert torch.allclose(ens(x.cuda()), ens.fused().eval()(x.cuda()), atol=1e-5)


def test_interleaved_latency_on_cuda_times_blocks_and_single_calls() -> None:
    torch.manual_seed(0)
    ens = TeacherEnsemble([TeacherModel(20, 2) for _ in range(3)]).eval()
    res = measure_latencies(
        {"loop": ens, "fused": ens.fused()}, torch.randn(1, 20), device="cuda", min_run_time=0.05
    )
    for r in res.values():
        assert r.device.startswith("cuda") and r.n_blocks >= 30
        assert r.n_calls == r.n_blocks * r.number_per_block and 0 < r.p50_ms <= r.p99_ms * 1.5
