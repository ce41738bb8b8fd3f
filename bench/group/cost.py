"""Parameters and forward FLOPs of one student architecture, counted once per process."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch

from kdcore import build_student, count_flops, count_params

__all__ = ["student_cost"]


def student_cost(
    family: str,
    arch: Mapping[str, int | float],
    input_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[int, int]:
    """(parameters, forward FLOPs per sample) of one student architecture. Counted once per
    process and architecture: FlopCounterMode costs ~50 ms a call, and a trial needs the
    numbers for its thread count, its halving rungs and its row."""
    return _student_cost(family, tuple(sorted(arch.items())), tuple(input_shape), num_classes)


@functools.lru_cache(maxsize=4096)
def _student_cost(
    family: str,
    arch: tuple[tuple[str, int | float], ...],
    input_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[int, int]:
    model = build_student(family, input_shape, num_classes, **dict(arch))
    return count_params(model), count_flops(model, torch.zeros(1, *input_shape))
