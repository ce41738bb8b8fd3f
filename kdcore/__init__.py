"""kdcore — Hinton knowledge distillation for groups of students (torch and numpy only).

A teacher (one network or an ensemble) is run **once** per split and its outputs cached as
:class:`SoftTargets`; a :class:`Distiller` then trains a *group* of students of one
architecture at once — one per :class:`Member` (seed, temperature T, soft weight alpha;
``alpha = 0`` is the scratch baseline) — on the loss

    alpha · T² · KL(softmax(v / T) ‖ softmax(z / T)) + (1 − alpha) · CE(softmax(z), y)

(:func:`kd_loss`), each member selected on validation accuracy. A student is a registered
family name plus its architecture (:func:`register_family`, :func:`build_student`) or any
callable that returns an ``nn.Module``.

Example — train a three-member teacher ensemble, then distil it into a small student at two
temperatures beside that student's scratch twin (``alpha = 0``)::

    import torch
    from kdcore import Distiller, Member, TeacherEnsemble, accuracy

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 10, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()  # 3 classes
    xt, yt, xv, yv, xs, ys = x[:2000], y[:2000], x[2000:2500], y[2000:2500], x[2500:], y[2500:]

    big = Distiller(family="mlp", arch={"width": 128, "depth": 2}, epochs=20)
    teacher = TeacherEnsemble(big.fit(xt, yt, xv, yv, [Member(seed=s) for s in range(3)]).models_)
    targets = teacher.cache_outputs({"train": xt})["train"]  # the teacher runs once

    small = Distiller(family="mlp", arch={"width": 8, "depth": 1}, epochs=20)
    small.fit(xt, yt, xv, yv, [Member(0, 4.0, 0.9), Member(0, 2.0, 0.9), Member(0)], teacher=targets)
    print(accuracy(teacher(xs), ys), [accuracy(m(xs), ys) for m in small.models_])

``family`` may also be any callable returning a fresh ``nn.Module`` (called once per member,
under the member's seed): ``Distiller(family=lambda: MyNet(), ...)``.

The rest lives in sub-namespaces: :mod:`kdcore.families` (the built-in ``mlp`` and ``cnn``,
sizing by parameter count), :mod:`kdcore.teachers` (combiners), :mod:`kdcore.losses`,
:mod:`kdcore.metrics`, :mod:`kdcore.cost`, :mod:`kdcore.latency` (the timing protocol),
:mod:`kdcore.recipes`, :mod:`kdcore.augment` (views with a consistent teacher),
:mod:`kdcore.specialists` (Hinton's specialists), :mod:`kdcore.testing` (a family's
conformance check) and :mod:`kdcore.exceptions`.
"""

from __future__ import annotations

from kdcore.cost import count_flops, count_params
from kdcore.distill import Distiller, Member
from kdcore.exceptions import KDCoreError, ParameterError, UnknownNameError
from kdcore.families import (
    ArchParam,
    StudentFamily,
    build_student,
    get_family,
    list_families,
    register_family,
)
from kdcore.losses import kd_loss
from kdcore.metrics import accuracy, agreement, kl_to_teacher
from kdcore.recipes import Recipe
from kdcore.teachers import SoftTargets, TeacherEnsemble

__all__ = [
    "ArchParam",
    "Distiller",
    "KDCoreError",
    "Member",
    "ParameterError",
    "Recipe",
    "SoftTargets",
    "StudentFamily",
    "TeacherEnsemble",
    "UnknownNameError",
    "accuracy",
    "agreement",
    "build_student",
    "count_flops",
    "count_params",
    "get_family",
    "kd_loss",
    "kl_to_teacher",
    "list_families",
    "register_family",
]
