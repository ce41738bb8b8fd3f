"""Before the sweep: does the user's teacher predict *these* labels?

A teacher whose outputs follow another class order than the task's encoding (offline logits
saved in natural digit order, labels encoded in sorted order) trains every student towards
wrong targets, and nothing fails: the run would "recommend" a student distilled from noise.
So a teacher read from the user's files is checked on the validation split (never test)
before anything is written:

* **at chance**: its accuracy ``acc`` is within ``3·sqrt(p0(1 − p0)/n)`` of ``p0``, the share
  of the commonest class (what always guessing it scores), with ``n`` validation rows;
* **another class order**: relabelling its outputs by the best one-to-one map (each output
  class to the label it is most often paired with, when those labels are all different)
  scores at least ``max(0.05, 3·se)`` above ``acc`` and ``max(0.1, 5·se)`` above ``p0`` (the
  map is chosen on the same rows, so it must explain them clearly, not by luck);
* **members that disagree**: the combined teacher is worse than its weakest member by that
  margin, which happens when members use different class orders.

Each stops the run with exit 2 and one line that names the teacher, the numbers, the likely
cause, and the encoding in use (and the ``[task] classes`` order that would match, when one
does).
"""

from __future__ import annotations

import math

import torch

from bench.config.teacher import TeacherConfig
from bench.errors import InputError
from bench.tasks import TaskData
from kdcore.teachers import SoftTargets

__all__ = ["check_teacher_labels"]

_WHAT = {
    "logits": "offline logits",
    "checkpoints": "member checkpoints",
    "checkpoint": "ensemble file",
}


def _encoding(names: tuple[str, ...], limit: int = 12) -> str:
    shown = ", ".join(f"{k}={n!r}" for k, n in enumerate(names[:limit]))
    return shown + (", …" if len(names) > limit else "")


def _best_map(pred: torch.Tensor, y: torch.Tensor, c: int) -> list[int] | None:
    """Output class → the label it is most often paired with, when that map is one-to-one."""
    pairs = torch.zeros(c, c, dtype=torch.long)
    pairs.index_put_((pred, y), torch.ones_like(y), accumulate=True)
    mapping = pairs.argmax(1).tolist()
    return mapping if len(set(mapping)) == c else None


def check_teacher_labels(task: TaskData, cfg: TeacherConfig, source: str, val: SoftTargets) -> None:
    """Raise :class:`InputError` when the teacher (``val``: its outputs on the validation
    split) is at chance on the task's labels, matches them in another class order, or is
    worse than each of its members (see the module docstring)."""
    y = task.y_val
    n, c = len(y), task.num_classes
    pred = val.log_probs(1.0).argmax(-1)
    acc = float((pred == y).float().mean())
    counts = torch.bincount(y, minlength=c).double()
    p0 = float(counts.max() / n)
    se = math.sqrt(max(p0 * (1 - p0), 1e-12) / n)
    margin = max(0.05, 3 * se)
    what = f"The teacher ({_WHAT.get(cfg.source, cfg.source)} {source})"
    encoding = f"labels are encoded {_encoding(task.class_names)}"
    if getattr(task.config, "classes", ()):
        order = "(the order of [task] classes)"
    elif task.config.kind == "file":
        order = "(sorted order of the values; [task] classes = [...] sets another)"
    else:
        order = "(the built-in task's own order)"
    mapping = _best_map(pred, y, c)
    if mapping is not None and mapping != list(range(c)):
        remapped = float((torch.as_tensor(mapping)[pred] == y).float().mean())
        if remapped >= acc + margin and remapped > p0 + max(0.1, 5 * se):
            classes = [task.class_names[mapping[k]] for k in range(c)]
            raise InputError(
                f"{what} must predict the task's labels in their encoding. Got {acc:.2%} "
                f"validation accuracy, but {remapped:.2%} with its outputs in the order "
                f"{classes}: its class order differs. The {encoding} {order}"
                + (
                    f"; set [task] classes = {classes} if that is your teacher's order."
                    if task.config.kind == "file"
                    else "."
                )
            )
    if acc <= p0 + 3 * se:
        raise InputError(
            f"{what} must predict the task's labels better than chance. Got {acc:.2%} "
            f"validation accuracy against {p0:.2%} for always the commonest class: a class-order "
            f"or label-encoding mismatch? The {encoding} {order}."
        )
    members = val.member_log_probs(1.0)
    if len(members) > 1:
        member_acc = [float((m.argmax(-1) == y).float().mean()) for m in members]
        if acc <= min(member_acc) - margin:
            raise InputError(
                f"{what} must combine members that agree on the class order. Got {acc:.2%} "
                f"validation accuracy for the ensemble against {min(member_acc):.2%}–"
                f"{max(member_acc):.2%} for its members alone: do all members use the same "
                f"label encoding? The {encoding} {order}."
            )
