"""What the report says about a teacher: the specialists' contribution and the warnings."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench import fmt
from bench.config.teacher import TeacherConfig
from bench.tasks import TaskData
from bench.teachers.prepared import PreparedTeacher
from kdcore import SoftTargets, TeacherEnsemble, count_flops, count_params
from kdcore.specialists import SpecialistCombiner

__all__ = ["specialist_summary", "teacher_warnings"]


def specialist_summary(
    task: TaskData, system: TeacherEnsemble, test: SoftTargets, info: dict[str, Any]
) -> dict[str, Any]:
    """What the specialists add on the test split: the generalist against the whole system
    (paired 95 % interval of the difference), the breakdown by how many specialists cover the
    true class and by how many took part (the shape of Hinton et al.'s Table 4), the clusters
    and the extra cost in parameters and FLOPs."""
    from bench.stats import paired_intervals

    y = task.y_test
    gen_lp = test.member_log_probs(1.0)[0]
    gen_right = (gen_lp.argmax(-1) == y).numpy()
    sys_right = (test.log_probs(1.0).argmax(-1) == y).numpy()
    sets = [list(s) for s in info["class_sets"]]
    combiner = system.combiner
    assert isinstance(combiner, SpecialistCombiner)
    active = combiner.active(gen_lp).sum(-1).numpy()
    covering = np.zeros(task.num_classes, dtype=np.int64)
    for s in sets:
        covering[s] += 1
    cover = covering[y.numpy()]

    def breakdown(groups: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for g in sorted(set(groups.tolist())):
            rows = groups == g
            out.append(
                {
                    "value": int(g),
                    "n_test": int(rows.sum()),
                    "generalist_acc": float(gen_right[rows].mean()),
                    "system_acc": float(sys_right[rows].mean()),
                    "changed_to_right": int((sys_right & ~gen_right & rows).sum()),
                    "changed_to_wrong": int((gen_right & ~sys_right & rows).sum()),
                }
            )
        return out

    ci = paired_intervals(sys_right[None], gen_right, None)
    generalist = system.members[0]
    x1 = task.x_train[:1]
    return {
        "class_sets": sets,
        "class_names": [[task.class_names[c] for c in s] for s in sets],
        "top_n": int(info["top_n"]),
        "specialist_val_acc": [float(a) for a in info.get("val_acc", [])],
        "generalist_acc": float(gen_right.mean()),
        "system_acc": float(sys_right.mean()),
        # paired_intervals' gap is generalist - system; the gain is its negation
        "system_gain_ci_low": -ci["acc_gap_ci_high"],
        "system_gain_ci_high": -ci["acc_gap_ci_low"],
        "n_test": len(y),
        "by_covering": breakdown(cover),
        "by_active": breakdown(active),
        "generalist_params": count_params(generalist),
        "generalist_flops": count_flops(generalist, x1),
        "system_params": count_params(system),
        "system_network_flops": count_flops(generalist, x1)
        + sum(count_flops(m, x1) for m in system.members[1:]),
    }


def teacher_warnings(task: TaskData, cfg: TeacherConfig, teacher: PreparedTeacher) -> list[str]:
    """What a careful practitioner would say about this teacher before trusting it."""
    out: list[str] = []
    if cfg.source == "train":
        steps = math.ceil(len(task.y_train) / cfg.batch_size)
        if steps < 10:
            out.append(
                f"the teacher trains with {steps} optimiser step(s) per epoch ({len(task.y_train)} "
                f"training rows / batch {cfg.batch_size}), {steps * cfg.epochs} in all: it may be "
                "undertrained; lower [teacher] batch_size or raise epochs."
            )
    uniform = 1.0 / task.num_classes
    if teacher.mean_max_prob_train < uniform + 0.1 * (1 - uniform):
        out.append(
            f"the teacher's outputs are nearly uniform on the transfer set (mean max-probability "
            f"{fmt.fixed(teacher.mean_max_prob_train, 3)}; uniform is {fmt.fixed(uniform, 3)}): its soft targets carry "
            "little to distil."
        )
    return out
