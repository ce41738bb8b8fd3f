"""``[augment]`` in a run: its rules against the data and the teacher, and the teachers a
training part of a group learns from (:mod:`kdcore.augment` does the views).

With ``teacher = "views"`` the prepared teacher runs once per process on the K stored views of
each part's rows (the transfer set, or the training split) and the outputs are kept with it
(:attr:`PreparedTeacher.views`): every group of the run replays them. Their memory is
``K · rows · classes · members · 4`` bytes, stated in ``docs/augment.md``.
With ``"online"`` the teacher runs on every epoch's views of every distinct seed.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch

from bench.config.suite import Suite
from bench.errors import InputError
from bench.tasks import TaskData
from bench.teachers import PreparedTeacher
from kdcore import SoftTargets, TeacherEnsemble
from kdcore.augment import Augment, OnlineTeacher, PixelScale, view_targets

__all__ = ["channel_scaled", "check_augment", "part_teachers", "pixel_scale"]

WHERE = "[augment]"


def _fail(key: str, rule: str, value: object) -> InputError:
    return InputError(f"The '{key}' parameter of {WHERE} must be {rule}. Got {value!r} instead.")


def _first_on(suite: Suite) -> tuple[str, object]:
    a = suite.augment
    for key, value in (("random_crop", a.random_crop), ("hflip", a.hflip), ("mixup", a.mixup)):
        if value:
            return key, value
    raise AssertionError("an active [augment] has a transform on")


def check_augment(task: TaskData, suite: Suite) -> None:
    """Every rule of ``[augment]`` that needs the data or the teacher, before anything is
    written: image inputs, a crop smaller than the image, a teacher that can run on views,
    mixup only where every row has a label."""
    a = suite.augment
    if not a.active:
        return
    key, value = _first_on(suite)
    shape = task.input_shape
    if len(shape) not in (2, 3):
        raise _fail(
            key,
            f"off for task '{task.name}': views need image inputs [C, H, W] or [H, W], and its "
            f"input shape is {list(shape)}",
            value,
        )
    if a.random_crop >= min(shape[-2:]):
        raise _fail(
            "random_crop",
            f"smaller than task '{task.name}''s images ({shape[-2]}×{shape[-1]} pixels)",
            a.random_crop,
        )
    if suite.teacher.source == "logits":
        raise _fail(
            key,
            "off with offline teacher logits ([teacher] logits): the teacher must run on the views",
            value,
        )
    if a.mixup and task.x_unlabeled is not None:
        raise _fail(
            "mixup",
            "0 with [transfer] unlabeled rows (a mixed row's hard target needs both labels)",
            a.mixup,
        )


def channel_scaled(task: TaskData, suite: Suite) -> TaskData:
    """The task standardised per image channel instead of per pixel when ``[augment]`` is on
    (and ``[task] scale`` is): one mean and standard deviation per channel over the training
    split's pixels. A per-pixel scaler makes a shifted image nonsense — a stroke moved onto a
    border pixel that is almost always blank is divided by that pixel's tiny deviation (on
    8×8 digits: values of several hundred) — and crops are shifts. The scaler is still stored
    per feature (the channel's values repeated), so exports and ``kdbench data`` read it as
    before."""
    if not suite.augment.active or task.scaler_mean is None or task.scaler_scale is None:
        return task
    shape = task.input_shape
    if len(shape) not in (2, 3):
        return task  # check_augment refuses it with its own message
    channels = shape[0] if len(shape) == 3 else 1
    mean = torch.from_numpy(task.scaler_mean).double()
    scale = torch.from_numpy(task.scaler_scale).double()

    def pixels(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1).double() * scale + mean

    train = pixels(task.x_train).reshape(len(task.x_train), channels, -1)
    c_mean = train.mean(dim=(0, 2))
    c_std = train.std(dim=(0, 2), correction=0)
    c_std = torch.where(c_std > 0, c_std, torch.ones_like(c_std))
    per_pixel = train.shape[-1]
    new_mean = c_mean.repeat_interleave(per_pixel)
    new_scale = c_std.repeat_interleave(per_pixel)

    def rescaled(x: torch.Tensor) -> torch.Tensor:
        return ((pixels(x) - new_mean) / new_scale).float().reshape(x.shape)

    return dataclasses.replace(
        task,
        x_train=rescaled(task.x_train),
        x_val=rescaled(task.x_val),
        x_test=rescaled(task.x_test),
        scaler_mean=new_mean.numpy().astype(np.float64),
        scaler_scale=new_scale.numpy().astype(np.float64),
    )


def pixel_scale(task: TaskData) -> PixelScale:
    """The task's training-split scaler as tensors (the views are made in pixel space)."""
    if task.scaler_mean is None or task.scaler_scale is None:
        return None
    return (
        torch.from_numpy(task.scaler_mean).float(),
        torch.from_numpy(task.scaler_scale).float(),
    )


def _online(teacher: PreparedTeacher, device: str) -> list[OnlineTeacher]:
    """The teacher as callables on a batch of views: the ensemble, and for a specialist
    system its generalist (teacher 1 of a group), on the training device."""
    key = f"online:{device}"
    if key not in teacher.views:
        assert teacher.ensemble is not None  # offline logits: check_augment refused them
        ens: TeacherEnsemble = teacher.ensemble
        if torch.device(device) != next(ens.parameters()).device:
            ens = copy.deepcopy(ens).to(device)

        def full(batch: torch.Tensor) -> SoftTargets:
            return ens.cache_outputs({"x": batch})["x"]

        def generalist(batch: torch.Tensor) -> SoftTargets:
            return full(batch).member(0)

        teacher.views[key] = [full] + ([generalist] if teacher.reference is not None else [])
    fns: list[OnlineTeacher] = teacher.views[key]
    return fns


def part_teachers(
    teacher: PreparedTeacher,
    task: TaskData,
    augment: Augment,
    kind: str,
    x: torch.Tensor,
    scratch_only: bool,
    device: str,
) -> list[Any]:
    """What a training part (rows ``kind``: ``train``, ``transfer`` …, inputs ``x``) learns
    from under ``augment``: nothing for scratch baselines, the teacher itself for
    ``"online"``, its outputs on the part's stored views for ``"views"`` (computed once per
    process and part)."""
    if scratch_only:
        return []
    fns = _online(teacher, device)
    if augment.teacher == "online":
        return list(fns)
    key = f"views:{kind}"
    if key not in teacher.views:
        x_dev = x.to(device)
        teacher.views[key] = [view_targets(fn, x_dev, augment, pixel_scale(task)) for fn in fns]
    stored: list[SoftTargets] = teacher.views[key]
    return list(stored)
