"""kdcore — the distillation library of kdbench (torch and numpy only; tensors in and out)."""

from __future__ import annotations

from kdcore._grouped import GroupedModel
from kdcore.distill import Distiller, Member
from kdcore.families import (
    ArchParam,
    StudentFamily,
    StudentModel,
    TeacherModel,
    build_student,
    cnn,
    format_arch,
    get_family,
    list_families,
    mlp,
    register_family,
)
from kdcore.losses import kd_loss, kd_loss_from_log_probs, kd_loss_fused, soft_log_probs
from kdcore.metrics import (
    LatencyResult,
    accuracy,
    agreement,
    count_flops,
    count_params,
    expected_calibration_error,
    kl_to_teacher,
    mean_max_prob,
    measure_latency,
    select_device,
)
from kdcore.teachers import (
    COMBINE_MODES,
    Combiner,
    FusedEnsemble,
    MeanLogit,
    MeanProb,
    SoftTargets,
    TeacherEnsemble,
    combine_log_probs,
    get_combiner,
)

__all__ = [
    "COMBINE_MODES",
    "ArchParam",
    "Combiner",
    "Distiller",
    "FusedEnsemble",
    "GroupedModel",
    "LatencyResult",
    "MeanLogit",
    "MeanProb",
    "Member",
    "SoftTargets",
    "StudentFamily",
    "StudentModel",
    "TeacherEnsemble",
    "TeacherModel",
    "accuracy",
    "agreement",
    "build_student",
    "cnn",
    "combine_log_probs",
    "count_flops",
    "count_params",
    "expected_calibration_error",
    "format_arch",
    "get_combiner",
    "get_family",
    "kd_loss",
    "kd_loss_from_log_probs",
    "kd_loss_fused",
    "kl_to_teacher",
    "list_families",
    "mean_max_prob",
    "measure_latency",
    "mlp",
    "register_family",
    "select_device",
    "soft_log_probs",
]
