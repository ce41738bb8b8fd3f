"""Shared fixtures of `make bench`: the seed task, its cached teacher ensemble, the matmul peak."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils import benchmark as tbench

from bench.config.suite import load_suite
from bench.tasks import load_task
from bench.teachers import load_teacher, prepare_teacher
from bench.threads import all_cores

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def threads() -> int:
    n = all_cores()
    torch.set_num_threads(n)
    return n


@pytest.fixture(scope="session")
def seed_setup(threads: int):
    """The seed suite's task and teacher (trained once, then reused from results/teachers)."""
    suite = load_suite(ROOT / "suites" / "seed.toml")
    task = load_task(suite.tasks[0])
    cache = ROOT / "results" / "teachers"
    teacher = prepare_teacher(
        task, suite.teacher, cache, loaded=load_teacher(task, suite.teacher, cache)
    )
    return suite, task, teacher


@pytest.fixture(scope="session")
def matmul_peak_gflops(threads: int) -> float:
    """Achieved float32 GFLOP/s of a 2048 x 2048 matmul with all cores: the ceiling."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    m = tbench.Timer("a @ b", globals={"a": a, "b": b}, num_threads=threads).blocked_autorange(
        min_run_time=1.0
    )
    return 2 * 2048**3 / m.median / 1e9


@pytest.fixture(scope="session")
def digits_setup(threads: int):
    """The digits suite's task ([1, 8, 8] images) and its teacher (cached under results/)."""
    suite = load_suite(ROOT / "suites" / "digits.toml")
    task = load_task(suite.tasks[0])
    cache = ROOT / "results" / "teachers"
    teacher = prepare_teacher(
        task, suite.teacher, cache, loaded=load_teacher(task, suite.teacher, cache)
    )
    return suite, task, teacher


def augmented_setup(suite_name: str, random_crop: int | None = None):  # type: ignore[no-untyped-def]
    """A suite's task scaled as ``[augment]`` scales it (per channel), its teacher (cached
    under results/), and that teacher as an online callable on a batch of views.
    ``random_crop`` turns augmentation on for a suite that has none (the scaling follows)."""
    from dataclasses import replace

    from bench.group.augment import channel_scaled

    suite = load_suite(ROOT / "suites" / f"{suite_name}.toml")
    if random_crop is not None:
        suite = replace(suite, augment=replace(suite.augment, random_crop=random_crop))
    task = channel_scaled(load_task(suite.tasks[0]), suite)
    cache = ROOT / "results" / "teachers"
    teacher = prepare_teacher(
        task, suite.teacher, cache, loaded=load_teacher(task, suite.teacher, cache)
    )
    ens = teacher.ensemble
    assert ens is not None

    def online(batch: torch.Tensor):  # type: ignore[no-untyped-def]
        return ens.cache_outputs({"x": batch})["x"]

    return task, teacher, online
