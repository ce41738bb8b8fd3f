"""A group's members fitted: one :class:`kdcore.Distiller` per run of slots that learn from the
same rows (the transfer set, its labelled rows, or the whole training split)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.config.suite import Suite
from bench.group.augment import part_teachers, pixel_scale
from bench.group.plan import GroupPlan, GroupSpec, Role, Slot
from bench.tasks import TaskData
from bench.teachers import PreparedTeacher
from kdcore import Distiller, SoftTargets

__all__ = ["fit_group"]


def fit_group(
    suite: Suite,
    spec: GroupSpec,
    plan: GroupPlan,
    train_device: str,
    on_epoch: Callable[[int, torch.Tensor], None] | None,
) -> Distiller:
    """The group's members trained at once (the generalist's students, of a specialist
    teacher, learn from teacher 1); one fit per run of consecutive slots that learn from the
    same rows (:func:`_training_parts`), joined by :meth:`Distiller.concat`."""
    task, teacher = spec.task, spec.teacher
    st = suite.student
    aug = suite.augment.augment(task.config.seed)
    scale = pixel_scale(task) if aug is not None else None

    def teachers_of(part: _Part) -> list[Any]:
        if aug is None:
            return [t.to(train_device) for t in part.teachers]
        scratch_only = all(s.member().is_scratch for s in part.slots)
        return part_teachers(teacher, task, aug, part.kind, part.x, scratch_only, train_device)

    fits = [
        Distiller(
            family=st.family,
            arch=dict(spec.arch),
            epochs=st.epochs,
            batch_size=st.batch_size,
            lr=st.lr,
            weight_decay=st.weight_decay,
            patience=st.patience or None,
            device=train_device,
            grouped=st.grouped,
            recipe=st.recipe(),
            augment=aug,
        ).fit(
            part.x,
            part.y,
            task.x_val,
            task.y_val,
            [s.member() for s in part.slots],
            teacher=teachers_of(part),
            on_epoch=on_epoch if i == 0 else None,  # the watched members are the first part's
            pixel_scale=scale,
            num_classes=task.num_classes,
        )
        for i, part in enumerate(_training_parts(task, teacher, plan))
    ]
    return fits[0] if len(fits) == 1 else Distiller.concat(fits)


@dataclass
class _Part:
    """Consecutive slots of a group that learn from the same rows (``kind``), with those rows
    and their teachers' cached targets."""

    kind: str
    slots: list[Slot]
    x: torch.Tensor
    y: torch.Tensor
    teachers: list[SoftTargets]


def _training_parts(task: TaskData, teacher: PreparedTeacher, plan: GroupPlan) -> list[_Part]:
    """The plan's slots in runs that learn from the same rows, with those rows and their
    teacher targets: distilled students learn from the transfer set (its labelled rows and its
    unlabeled ones, label -1), scratch twins from its labelled rows alone, full-data scratch
    baselines from the whole training split ([transfer], :mod:`bench.group.transfer`). Without a
    transfer set every slot learns from the training split: one part, one fit."""
    sources = [teacher.targets] + ([teacher.reference] if teacher.reference is not None else [])

    def rows_of(role: Role) -> str:
        if task.transfer is None or role is Role.FULL:
            return "train"
        if role is Role.SCRATCH or task.x_unlabeled is None:
            return "labelled"
        return "transfer"

    def data(kind: str) -> tuple[torch.Tensor, torch.Tensor, list[SoftTargets]]:
        if kind == "train":
            return task.x_train, task.y_train, [t["train"] for t in sources]
        x, y = task.transfer_split()
        rows = torch.as_tensor(task.transfer)
        targets = [t["train"].take(rows) for t in sources]
        if kind == "labelled":
            return x, y, targets
        assert task.x_unlabeled is not None
        unl = task.x_unlabeled
        return (
            torch.cat([x, unl]),
            torch.cat([y, torch.full((len(unl),), -1, dtype=y.dtype)]),
            [tg.cat(t["unlabeled"]) for tg, t in zip(targets, sources, strict=True)],
        )

    parts: list[_Part] = []
    for slot in plan.slots:
        kind = rows_of(slot.role)
        if parts and parts[-1].kind == kind:
            parts[-1].slots.append(slot)
        else:
            parts.append(_Part(kind, [slot], *data(kind)))
    return parts
