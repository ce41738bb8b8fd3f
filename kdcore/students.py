"""Student families behind a small registry.

A family is a named builder ``build(input_dim, num_classes, **arch) -> nn.Module`` plus the
names of its architecture parameters. ``mlp`` (``width`` × ``depth``) is built in; users add
their own with :func:`register_family`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = [
    "StudentFamily",
    "StudentModel",
    "build_student",
    "get_family",
    "list_families",
    "mlp",
    "register_family",
]


@dataclass(frozen=True)
class StudentFamily:
    """A named way to build students; ``arch_params`` are the keyword arguments it takes."""

    name: str
    build: Callable[..., nn.Module]
    arch_params: tuple[str, ...]
    description: str = ""


_FAMILIES: dict[str, StudentFamily] = {}


def register_family(
    name: str,
    build: Callable[..., nn.Module],
    arch_params: tuple[str, ...],
    description: str = "",
    *,
    replace: bool = False,
) -> StudentFamily:
    """Register ``build(input_dim, num_classes, **arch)`` under ``name`` and return it."""
    if name in _FAMILIES and not replace:
        raise ValueError(f"A student family named {name!r} is already registered.")
    family = StudentFamily(name, build, tuple(arch_params), description)
    _FAMILIES[name] = family
    return family


def get_family(name: str) -> StudentFamily:
    try:
        return _FAMILIES[name]
    except KeyError:
        valid = ", ".join(sorted(_FAMILIES))
        raise KeyError(f"Unknown student family {name!r}. Valid names: {valid}.") from None


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def build_student(family: str, input_dim: int, num_classes: int, **arch: int) -> nn.Module:
    """Build a student of ``family``; unknown or missing architecture keys raise ``TypeError``."""
    fam = get_family(family)
    unknown = set(arch) - set(fam.arch_params)
    missing = set(fam.arch_params) - set(arch)
    if unknown or missing:
        raise TypeError(
            f"Family {family!r} takes {list(fam.arch_params)}; "
            f"got unknown {sorted(unknown)} and missing {sorted(missing)}."
        )
    return fam.build(input_dim, num_classes, **arch)


def mlp(input_dim: int, num_classes: int, width: int, depth: int) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` ReLU units: Linear(d,w)-ReLU-…-Linear(w,C)."""
    if depth < 1 or width < 1:
        raise ValueError(f"mlp needs width >= 1 and depth >= 1, got width={width}, depth={depth}.")
    layers: list[nn.Module] = []
    fan_in = input_dim
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def StudentModel(input_dim: int, num_classes: int, width: int = 77) -> nn.Sequential:
    """The seed's student: two hidden layers (width 77 is ~1/30 of 5 seed teachers for d=20)."""
    return mlp(input_dim, num_classes, width=width, depth=2)


register_family("mlp", mlp, ("width", "depth"), "fully connected ReLU MLP, width x depth")
