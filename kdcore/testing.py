"""``check_family``: the conformance check a model family should pass.

kdbench's own families pass it in the tests; run it on yours before sweeping::

    from kdcore.testing import check_family
    report = check_family("my_family")          # raises FamilyCheckError on a failure
    print(report)

Checks, in order (each names what failed):

1. **builds** from its declared parameters (each at the low end of its default range, or the
   ``arch`` you pass) for ``input_shape`` (default: the family's ``example_input_shape``);
2. **forward shape**: ``[B, num_classes]`` for a batch of B;
3. **FLOPs countable**: ``count_flops`` sees a positive count (2 FLOPs per multiply-add);
4. **grouped = solo**: 3 students trained together (one group, the path kdbench uses) give the
   same validation predictions as each trained alone, within ``tolerance`` (max abs logit
   difference);
5. **deterministic per seed**: building and training twice with the same seed gives identical
   parameters and outputs; a different seed gives different parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from kdcore.cost import count_flops, count_params
from kdcore.distill import Distiller, Member
from kdcore.exceptions import FamilyCheckError
from kdcore.families import as_input_shape, build_student, get_family
from kdcore.teachers import SoftTargets

__all__ = ["FamilyCheckError", "FamilyReport", "check_family"]


@dataclass(frozen=True)
class FamilyReport:
    family: str
    arch: dict[str, int | float]
    input_shape: tuple[int, ...]
    params: int
    flops: int
    group_backend: str
    max_grouped_vs_solo: float

    def __str__(self) -> str:
        return (
            f"family {self.family!r} {self.arch} on input {list(self.input_shape)}: "
            f"{self.params:,} params, {self.flops:,} FLOPs/sample, grouped path "
            f"{self.group_backend!r}, grouped vs solo max |Δ logit| {self.max_grouped_vs_solo:.2e}"
        )


def _fail(family: str, check: str, detail: str) -> FamilyCheckError:
    return FamilyCheckError(f"family {family!r} fails '{check}': {detail}")


# Long by design: the conformance checklist, one named check after another.
def check_family(
    name: str,
    *,
    input_shape: int | Sequence[int] | None = None,
    num_classes: int = 3,
    arch: Mapping[str, int | float] | None = None,
    tolerance: float = 1e-4,
    epochs: int = 2,
) -> FamilyReport:
    """Run the conformance checks of the module docstring on family ``name``."""
    fam = get_family(name)
    shape = as_input_shape(input_shape if input_shape is not None else fam.example_input_shape)
    values = dict(arch) if arch is not None else {p.name: p.kind(p.default[0]) for p in fam.params}

    # 1-2. builds, forward shape
    try:
        torch.manual_seed(0)
        model = build_student(name, shape, num_classes, **values).eval()
    except Exception as exc:
        raise _fail(name, "builds", f"{type(exc).__name__}: {exc}") from exc
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    if tuple(out.shape) != (5, num_classes):
        raise _fail(name, "forward shape", f"expected [5, {num_classes}], got {list(out.shape)}")

    # 3. FLOPs
    try:
        flops = count_flops(model, x)
    except Exception as exc:
        raise _fail(name, "FLOPs countable", f"{type(exc).__name__}: {exc}") from exc
    if flops <= 0:
        raise _fail(name, "FLOPs countable", f"count_flops gave {flops}")

    # 4. grouped = solo
    g = torch.Generator().manual_seed(2)
    n_train, n_val = 96, 32
    x_train, x_val = (
        torch.randn(n_train, *shape, generator=g),
        torch.randn(n_val, *shape, generator=g),
    )
    y_train = torch.randint(0, num_classes, (n_train,), generator=g)
    y_val = torch.randint(0, num_classes, (n_val,), generator=g)
    teacher = SoftTargets(torch.randn(2, n_train, num_classes, generator=g) * 2)
    members = [Member(0, 4.0, 0.9), Member(1, 2.0, 0.5), Member(2, 1.0, 0.0)]

    def fit(ms: list[Member]) -> Distiller:
        return Distiller(family=name, arch=values, epochs=epochs, batch_size=32, lr=1e-3).fit(
            x_train, y_train, x_val, y_val, ms, teacher=teacher
        )

    group = fit(members)
    grouped = group.predict_logits(x_val)
    worst = 0.0
    for i, m in enumerate(members):
        alone = fit([m]).predict_logits(x_val)[0]
        worst = max(worst, float((alone - grouped[i]).abs().max()))
    if worst > tolerance:
        raise _fail(
            name, "grouped = solo", f"max |logit difference| {worst:.3g} > tolerance {tolerance:g}"
        )

    # 5. deterministic per seed
    def params_of(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [
            p.detach().clone()
            for p in build_student(name, shape, num_classes, **values).parameters()
        ]

    a, b, c = params_of(7), params_of(7), params_of(8)
    if not all(torch.equal(p, q) for p, q in zip(a, b, strict=True)):
        raise _fail(name, "deterministic per seed", "the same seed built different parameters")
    if a and all(torch.equal(p, q) for p, q in zip(a, c, strict=True)):
        raise _fail(name, "deterministic per seed", "different seeds built identical parameters")
    again = fit(members).predict_logits(x_val)
    if not torch.equal(again, grouped):
        raise _fail(name, "deterministic per seed", "training twice with the same seeds differed")

    from kdcore._grouped import GroupedModel

    backend = GroupedModel([model]).backend
    return FamilyReport(name, values, shape, count_params(model), flops, backend, worst)
