"""Test families, registered like a user's plug-in (``[plugins] modules = [...]``)."""

from __future__ import annotations

import torch
from torch import nn

from kdcore import ArchParam, register_family
from kdcore.families import TeacherModel

FORWARD_CALLS = {"n": 0}


class CountingTeacher(TeacherModel):
    """The seed teacher, counting its forward calls (to prove no trial runs the teacher)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        FORWARD_CALLS["n"] += 1
        return super().forward(x)


class TwoLayer(nn.Module):
    """A family that is not an nn.Sequential: grouped training takes the vmap path."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int) -> None:
        super().__init__()
        self.inner = nn.Linear(input_shape[0], hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inner(x)))


register_family(
    "counting_teacher",
    lambda shape, classes: CountingTeacher(shape, classes),
    (),
    "seed teacher that counts its forward calls (tests)",
    replace=True,
)
register_family(
    "test_twolayer",
    TwoLayer,
    (ArchParam("hidden", int, (1, 256), (2, 32), log=True),),
    "tanh two-layer net, not a Sequential (tests)",
    size_param="hidden",
    replace=True,
)
