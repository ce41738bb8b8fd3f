"""A fitted group on the test split, read once: every member's predictions, the ensemble's,
the best member's, and the omitted classes' bias shift chosen on validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from bench.group.transfer import choose_bias_shift, shift_logits
from bench.tasks import TaskData
from bench.teachers import PreparedTeacher
from kdcore import Distiller

__all__ = ["Evaluation"]


@dataclass(frozen=True)
class Evaluation:
    """The fitted group on the test split: what every trial's rows are computed from."""

    distiller: Distiller
    logits: torch.Tensor  # [G, n, C]: each member's test logits
    right: np.ndarray  # [G, n]: each member right on each test example
    test_lp: torch.Tensor  # the ensemble's test log-probabilities at T = 1
    ensemble_right: np.ndarray  # [n]
    y: torch.Tensor
    best_member_right: np.ndarray  # [n]: the member best on validation
    omitted: np.ndarray  # [n]: test examples of the classes omitted from the transfer set
    shifts: list[float]  # per member: the omitted classes' bias shift chosen on validation
    corrected_right: np.ndarray | None  # [G, n] with the shift (bias_correction only)

    @classmethod
    def of(
        cls,
        distiller: Distiller,
        teacher: PreparedTeacher,
        task: TaskData,
        bias_correction: bool = False,
    ) -> Evaluation:
        split_logits = getattr(distiller, "split_logits", None)  # the streamed path's
        logits = split_logits("test") if split_logits else distiller.predict_logits(task.x_test)
        test_lp = teacher.targets["test"].log_probs(1.0)
        y = task.y_test
        val = teacher.member_val_acc
        best = max(range(len(val)), key=lambda i: val[i])  # as PreparedTeacher.best_member_acc
        member = teacher.targets["test"].member_log_probs(1.0)[best]
        omitted = np.isin(y.numpy(), task.omitted)
        shifts = [math.nan] * len(logits)
        corrected = None
        if bias_correction and task.omitted:  # chosen on validation; test is read once, below
            val_logits = distiller.predict_logits(task.x_val)
            shifts = [choose_bias_shift(v, task.y_val, task.omitted) for v in val_logits]
            corrected = np.stack(
                [
                    (shift_logits(lg, task.omitted, b).argmax(-1) == y).numpy()
                    for lg, b in zip(logits, shifts, strict=True)
                ]
            )
        return cls(
            distiller,
            logits,
            (logits.argmax(-1) == y).numpy(),
            test_lp,
            (test_lp.argmax(-1) == y).numpy(),
            y,
            (member.argmax(-1) == y).numpy(),
            omitted,
            shifts,
            corrected,
        )
