"""Parameters and forward FLOPs of one student architecture, counted once per process."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from kdcore import build_student, count_flops, count_params, get_family

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
    # a text model counts its FLOPs on a full-length sequence (padding costs what tokens do)
    example = get_family(family).example(1, input_shape, dict(arch), zeros=True)
    return count_params(model), count_flops(model, example)
