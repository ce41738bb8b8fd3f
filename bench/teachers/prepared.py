"""The prepared teacher: what a run knows about its teacher once its outputs are cached."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from bench.durable.jsonsafe import json_safe
from kdcore import SoftTargets, TeacherEnsemble, count_flops, count_params

__all__ = ["PreparedTeacher", "accuracy_fields", "teacher_flops", "teacher_params"]


@dataclass
class PreparedTeacher:
    """The ensemble (if any), its cached outputs on every split, and its evaluation.

    ``cost_model`` is what the cost columns (params, FLOPs, latency) measure: the ensemble, or
    for offline logits with a named architecture, untrained stand-ins of that architecture.
    """

    ensemble: TeacherEnsemble | None
    cost_model: TeacherEnsemble | None
    targets: dict[str, SoftTargets]
    member_val_acc: list[float]
    member_test_acc: list[float]
    ensemble_val_acc: float
    ensemble_acc: float
    best_member_acc: float
    mean_member_acc: float
    ensemble_ece: float
    mean_max_prob_train: float
    params: float  # NaN when the architecture is unknown (offline logits)
    flops: float
    members: int
    combine: str
    kind: str
    arch: str
    source: str
    reused: bool
    key: str
    sha256: str
    outputs_sha256: str
    train_time_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    # Specialists: the generalist alone, per split (students taught by it are the baseline).
    reference: dict[str, SoftTargets] | None = None
    # [augment] (bench.group.augment): the teacher as callables on views, and its outputs on each
    # training part's stored views, made once per process
    views: dict[str, Any] = field(default_factory=dict)
    # a streamed task: the training split's outputs on disk (kdcore.stream.TargetFile)
    train_file: Any = None

    def summary(self) -> dict[str, object]:
        heavy = ("ensemble", "cost_model", "targets", "reference", "views", "train_file")
        data = {k: v for k, v in vars(self).items() if k not in heavy}
        out: dict[str, object] = json_safe(data)
        return out


def _onnx_members(model: TeacherEnsemble) -> list[nn.Module]:
    return [m for m in model.members if hasattr(m, "n_params")]


def teacher_params(model: TeacherEnsemble | None) -> float:
    """The teacher's parameters; an ONNX member's are its graph's initializers."""
    if model is None:
        return math.nan
    return float(
        count_params(model) + sum(int(cast(Any, m).n_params) for m in _onnx_members(model))
    )


def teacher_flops(model: TeacherEnsemble | None, x1: torch.Tensor) -> float:
    """The teacher's forward FLOPs per sample (NaN with an ONNX member: not counted)."""
    if model is None or _onnx_members(model):
        return math.nan
    return float(count_flops(model, x1))


def accuracy_fields(
    targets: dict[str, SoftTargets], y_val: torch.Tensor, y_test: torch.Tensor
) -> dict[str, Any]:
    """The teacher's accuracy fields of :class:`PreparedTeacher` from its validation and test
    outputs: each member's, the ensemble's, its calibration, and the best member — chosen on
    validation, never on test — with its test accuracy."""
    from kdcore import accuracy
    from kdcore.metrics import expected_calibration_error

    val_lp, test_lp = targets["val"].log_probs(1.0), targets["test"].log_probs(1.0)
    member_val = [accuracy(v, y_val) for v in targets["val"].member_log_probs(1.0)]
    member_test = [accuracy(v, y_test) for v in targets["test"].member_log_probs(1.0)]
    best = max(range(len(member_val)), key=lambda i: member_val[i])
    return {
        "member_val_acc": member_val,
        "member_test_acc": member_test,
        "ensemble_val_acc": accuracy(val_lp, y_val),
        "ensemble_acc": accuracy(test_lp, y_test),
        "best_member_acc": member_test[best],
        "mean_member_acc": sum(member_test) / len(member_test),
        "ensemble_ece": expected_calibration_error(test_lp, y_test),
    }
