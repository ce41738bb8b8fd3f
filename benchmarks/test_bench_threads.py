"""Threads per training group by student size (issue #13, ``bench.threads``).

Per optimiser step of 6 students (depth 2, the seed task, 2 epochs), 1 vs 2 torch threads,
alone on the machine and beside a second process training a small group on 1 thread (a busy
local worker). The ``auto`` rule of ``bench.threads`` is read off these numbers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.threads import all_cores
from kdcore import Distiller, Member, build_student, count_flops

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, GROUP = 2, 6
BUSY = """
import torch
from kdcore import Distiller, Member
torch.set_num_threads(1)
x, y = torch.randn(12000, 20), torch.randint(0, 2, (12000,))
while True:
    Distiller(arch={"width": 30, "depth": 2}, epochs=1, batch_size=256).fit(
        x, y, x[:2000], y[:2000], [Member(s) for s in range(6)])
"""


@pytest.fixture(params=["alone", "beside_a_worker"])
def neighbour(request):
    if request.param == "alone":
        yield request.param
        return
    p = subprocess.Popen([sys.executable, "-c", BUSY], cwd=ROOT)
    time.sleep(3)  # past its imports: training
    yield request.param
    p.kill()
    p.wait()


@pytest.mark.skipif(all_cores() < 2, reason="needs 2 cores")
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("width", [16, 64, 128, 256])
def test_step_time_by_threads(benchmark, seed_setup, neighbour, width: int, n_threads: int) -> None:
    _, task, teacher = seed_setup
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        benchmark.pedantic(
            lambda: Distiller(
                arch={"width": width, "depth": 2}, epochs=EPOCHS, batch_size=256, lr=3e-3
            ).fit(
                task.x_train,
                task.y_train,
                task.x_val,
                task.y_val,
                [Member(s, 4.0, 0.9) for s in range(GROUP)],
                teacher=teacher.targets["train"],
            ),
            rounds=2,
            iterations=1,
        )
    finally:
        torch.set_num_threads(before)
    steps = EPOCHS * -(-len(task.x_train) // 256)
    model = build_student("mlp", task.input_shape, task.num_classes, width=width, depth=2)
    benchmark.extra_info.update(
        width=width,
        depth=2,
        threads=n_threads,
        neighbour=neighbour,
        flops_per_sample=int(count_flops(model, torch.zeros(1, *task.input_shape))),
        ms_per_step=1e3 * benchmark.stats.stats.min / steps,
    )
