"""check_family: kdbench's families pass it; broken families fail it with the check named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdcore import ArchParam, register_family
from kdcore.testing import FamilyCheckError, check_family


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_builtin_student_families_conform(name: str) -> None:
    report = check_family(name)
    assert report.group_backend == "batched"
    assert report.flops > 0 and report.params > 0
    assert report.max_grouped_vs_solo <= 1e-4


def test_a_plugin_family_on_the_vmap_path_conforms() -> None:
    import tests.bench_tests.families  # noqa: F401  (registers test_twolayer)

    report = check_family("test_twolayer", input_shape=(6,), arch={"hidden": 5})
    assert report.group_backend == "vmap"


class _NoMatmul(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, k: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(input_shape[0], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(-1) * self.w).sum(1)


class _WrongShape(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, k: int) -> None:
        super().__init__()
        self.lin = nn.Linear(input_shape[0], num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class _Unseeded(nn.Module):
    """Draws its initial weights from its own generator: ignores the caller's seed."""

    calls = 0

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, k: int) -> None:
        super().__init__()
        type(self).calls += 1
        g = torch.Generator().manual_seed(type(self).calls)
        self.lin = nn.Linear(input_shape[0], num_classes)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(self.lin.weight.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (_NoMatmul, "FLOPs countable"),
        (_WrongShape, "forward shape"),
        (_Unseeded, "grouped = solo"),
    ],
)
def test_broken_families_fail_with_the_check_named(cls: type, check: str) -> None:
    name = f"test_broken_{cls.__name__.lower()}"
    register_family(
        name, cls, (ArchParam("k", int, (1, 4), (1, 2)),), replace=True, example_input_shape=(4,)
    )
    with pytest.raises(FamilyCheckError, match=f"family '{name}' fails '{check}'"):
        check_family(name)


class _TinyConv(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(input_shape[0], channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_an_image_family_registered_as_the_tutorial_shows_passes_check_family() -> None:
    """No example_input_shape given: one of the declared rank is used, not the MLP's [8]."""
    params = (ArchParam("channels", int, bounds=(1, 64), default=(4, 16)),)
    register_family("test_tutorial_conv", _TinyConv, params, input_ranks=(3,), replace=True)
    report = check_family("test_tutorial_conv")
    assert report.params > 0 and "[1, 8, 8]" in str(report)
    with pytest.raises(
        ValueError, match=r"example_input_shape must have one of the input_ranks \[3\]"
    ):
        register_family(
            "test_bad_example", _TinyConv, params, input_ranks=(3,), example_input_shape=(8,)
        )
