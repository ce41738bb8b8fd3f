"""Training a teacher here: K members, or a generalist with specialists."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from bench.config.teacher import TeacherConfig
from bench.errors import InputError
from bench.tasks import TaskData
from bench.teachers.load import member_arch
from kdcore import Distiller, Member, TeacherEnsemble
from kdcore.specialists import (
    SpecialistCombiner,
    SpecialistTraining,
    cluster_classes,
    train_specialist,
)

__all__ = ["train_members", "train_specialist_system"]

log = logging.getLogger(__name__)


def train_members(
    task: TaskData,
    cfg: TeacherConfig,
    device: str,
    on_epoch: Callable[[int, int], None] | None,
    n: int,
) -> Distiller:
    """Train ``n`` teacher networks (member k with seed ``seed + k``), best epoch on val."""
    distiller = Distiller(
        family=cfg.member_family,
        arch=member_arch(cfg, task),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        device=device,
        recipe=cfg.recipe(),
    ).fit(
        task.x_train,
        task.y_train,
        task.x_val,
        task.y_val,
        [Member(seed=cfg.seed + k) for k in range(n)],
        on_epoch=None if on_epoch is None else lambda e, _acc: on_epoch(e, cfg.epochs),
    )
    if distiller.failed_:
        raise RuntimeError(f"teacher training diverged: {distiller.failed_}")
    return distiller


def train_specialist_system(
    task: TaskData,
    cfg: TeacherConfig,
    device: str,
    on_epoch: Callable[[int, int], None] | None,
) -> tuple[TeacherEnsemble, float]:
    """Generalist, class clusters of its confusions, one specialist per cluster (see
    :mod:`kdcore.specialists`); returns the system and its training time."""
    start = time.perf_counter()
    generalist = train_members(task, cfg, device, on_epoch, 1).models_[0]
    with torch.no_grad():
        probs = torch.softmax(generalist(task.x_train), -1)
    k = cfg.specialists or max(1, task.num_classes // 5)
    sets = cluster_classes(
        probs, k, min_size=cfg.cluster_min, max_size=cfg.cluster_max or None, seed=cfg.seed
    )
    if not sets:
        raise InputError(
            f"The 'cluster_min' parameter of [teacher] must leave at least one class cluster "
            f"({k} clusters of the generalist's confusions were all smaller). Got "
            f"{cfg.cluster_min} instead."
        )
    specialists, val_acc = [], []
    for m, classes in enumerate(sets):
        how = SpecialistTraining(
            epochs=cfg.specialist_epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed + 1 + m,
            device=device,
            recipe=cfg.recipe(),
        )
        model, acc = train_specialist(
            generalist,
            cfg.member_family,
            member_arch(cfg, task),
            classes,
            (task.x_train, task.y_train),
            (task.x_val, task.y_val),
            how,
        )
        specialists.append(model)
        val_acc.append(acc)
        log.info("specialist %d/%d (%d classes): val acc %.4f", m + 1, len(sets), len(classes), acc)
    ensemble = TeacherEnsemble(
        [generalist.eval(), *specialists], combine=SpecialistCombiner(sets, cfg.top_n)
    )
    ensemble.specialist_info = {"class_sets": sets, "top_n": cfg.top_n, "val_acc": val_acc}
    return ensemble, time.perf_counter() - start
