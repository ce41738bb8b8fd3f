"""Teachers: ensembles, how their members combine, and the cached soft targets."""

from __future__ import annotations

from kdcore.teachers.combine import (
    COMBINE_MODES,
    Combiner,
    MeanLogit,
    MeanProb,
    combine_log_probs,
    get_combiner,
)
from kdcore.teachers.ensemble import FusedEnsemble, TeacherEnsemble
from kdcore.teachers.targets import SoftTargets

__all__ = [
    "COMBINE_MODES",
    "Combiner",
    "FusedEnsemble",
    "MeanLogit",
    "MeanProb",
    "SoftTargets",
    "TeacherEnsemble",
    "combine_log_probs",
    "get_combiner",
]
