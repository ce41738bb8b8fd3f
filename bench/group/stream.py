"""A group on the streamed path: its members trained one at a time by
:class:`kdcore.stream.StreamDistiller`, each through a DataLoader, each resumable.

``[student] path`` chooses the path: ``"auto"`` takes this one for a streamed task (its inputs
are not in memory) and the grouped path (:func:`bench.group.fit.fit_group`, every member at
once on tensors in memory) otherwise; ``"stream"`` takes this one for an in-memory task too (a
student too big to train many at once). The row records which (``train_path``).

Every member writes its whole state after every epoch to ``<checkpoints>/<group>/<slot>.pt``
(``<group>``: a hash of what the group trains — phase, architecture, recipe, each trial's
temperature and alpha, the seeds — so the same group asked again after a crash finds its
files whatever its trial numbers); ``--resume`` then continues each member from its last
epoch, to the same weights as an uninterrupted run (bit for bit on CPU). The group's files are
removed once its rows are built.

What the rows read is what :class:`kdcore.Distiller` gives the grouped path (``val_acc_``,
``best_epoch_``, ``failed_``, ``models_``, ``train_time_s_``) plus every member's logits on
validation and test, computed here in one streamed pass each.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from bench.config.suite import Suite
from bench.durable import faults
from bench.durable.faults import fault_point
from bench.group.plan import GroupPlan, GroupSpec, Role
from kdcore import build_student
from kdcore.stream import StreamDistiller, TargetFile, write_targets

__all__ = ["StreamFit", "drop_checkpoints", "fit_stream_group", "group_folder", "train_path"]


def train_path(suite: Suite, task: Any) -> str:
    """``"stream"`` or ``"grouped"``: the path ``[student] path`` picks for ``task``."""
    chosen = suite.student.path
    if chosen == "auto":
        return "stream" if getattr(task, "streamed", False) else "grouped"
    return chosen


@dataclass
class StreamFit:
    """The members of one group, trained on the streamed path (the module's text)."""

    models_: list[nn.Module] = field(default_factory=list)
    val_acc_: list[float] = field(default_factory=list)
    best_epoch_: list[int] = field(default_factory=list)
    failed_: dict[int, str] = field(default_factory=dict)
    train_time_s_: float = 0.0
    logits: dict[str, torch.Tensor] = field(default_factory=dict)  # split → [G, n, C]
    resumed_epochs: int = 0  # epochs found in checkpoints (a resumed trial)
    amp: str = ""
    channels_last: bool = False

    def split_logits(self, split: str) -> torch.Tensor:
        return self.logits[split]


class _Counted(Dataset[Any]):
    """The training split with the ``example`` fault point (:mod:`bench.durable.faults`) at
    every example read: how a test kills a trial mid-epoch (only when a fault is set)."""

    def __init__(self, data: Dataset[Any]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        fault_point("example")
        return self.data[i]


def _datasets(task: Any) -> dict[str, Dataset[Any]]:
    if getattr(task, "streamed", False):
        out = {s: task.dataset(s) for s in ("train", "val", "test")}
    else:
        out = {s: TensorDataset(*task.split(s)) for s in ("train", "val", "test")}
    if os.environ.get(faults.ENV):
        out["train"] = _Counted(out["train"])
    return out


def _memory_targets(spec: GroupSpec, top_k: int | None) -> TargetFile:
    """An in-memory task's training-split soft targets as a target file (the teacher's
    log-probabilities at ``T = 1``), once per process and teacher."""
    teacher = spec.teacher
    if teacher.train_file is not None:
        return teacher.train_file
    lp = teacher.targets["train"].log_probs(1.0).float()
    scratch = tempfile.mkdtemp(prefix="kdbench-targets-")
    atexit.register(shutil.rmtree, scratch, True)  # this process's copy, gone when it ends
    folder = Path(scratch) / "train"
    rows = torch.arange(len(lp))
    batches = ((lp[i : i + 4096], rows[i : i + 4096]) for i in range(0, len(lp), 4096))
    teacher.train_file = write_targets(
        lambda z: z, batches, folder, rows=len(lp), classes=lp.shape[1], top_k=top_k
    )
    return teacher.train_file


def group_folder(spec: GroupSpec, plan: GroupPlan) -> Path | None:
    """The folder of this group's member checkpoints (None: the run keeps none)."""
    if not spec.checkpoints:
        return None
    what = {
        "phase": spec.phase,
        "family": spec.family,
        "arch": spec.arch,
        "recipe": spec.recipe,
        "slots": [[s.role.value, s.seed, s.temperature, s.alpha] for s in plan.slots],
    }
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return Path(spec.checkpoints) / key[:20]


def fit_stream_group(
    suite: Suite,
    spec: GroupSpec,
    plan: GroupPlan,
    train_device: str,
    on_epoch: Callable[[int, torch.Tensor], None] | None,
    watched: list[int],
) -> StreamFit:
    """Train the plan's members one after another (distilled ones against the teacher's
    training-split file, scratch twins on labels alone), then each one's logits on validation
    and test. ``on_epoch`` (pruning, halving) sees the first watched member's validation
    accuracy after each of its epochs."""
    st, task = suite.student, spec.task
    data = _datasets(task)
    top_k = spec.teacher.train_file.top_k if spec.teacher.train_file is not None else None
    folder = group_folder(spec, plan)
    workers = int(getattr(task.config, "loader_workers", 0))
    fit = StreamFit()
    logits: dict[str, list[torch.Tensor]] = {}
    for slot in plan.slots:
        if slot.role not in (Role.DISTILLED, Role.SCRATCH):  # refused before the run
            raise ValueError(f"the streamed path trains no {slot.role.value} members")
        m = slot.member()
        targets = None if m.is_scratch else _memory_targets(spec, top_k)
        ckpt = None if folder is None else folder / f"{slot.index:04d}.pt"
        d = StreamDistiller(
            epochs=st.epochs,
            batch_size=st.batch_size,
            lr=st.lr,
            weight_decay=st.weight_decay,
            temperature=m.temperature,
            alpha=m.alpha,
            seed=m.seed,
            amp=st.amp,
            compile=False if st.compile == "off" else st.compile,
            num_workers=workers,
            device=train_device,
            checkpoint=ckpt,
            recipe=st.recipe(),
            patience=st.patience or None,
        )
        report = (
            (lambda e, acc: on_epoch(e, torch.tensor([acc])))
            if on_epoch is not None and watched and slot.index == watched[0]
            else None
        )
        d.fit(
            lambda: build_student(st.family, task.input_shape, task.num_classes, **spec.arch),
            data["train"],
            data["val"],
            targets,
            on_epoch=report,
        )
        fit.resumed_epochs += d.resumed_from_
        fit.amp = str(d.amp_dtype_).removeprefix("torch.") if d.amp_dtype_ else "off"
        fit.channels_last = d.channels_last_
        bad = [h["epoch"] for h in d.history_ if not math.isfinite(h["train_loss"])]
        if bad:
            fit.failed_[slot.index] = f"diverged: non-finite training loss at epoch {bad[0]}"
        for split in ("val", "test"):
            logits.setdefault(split, []).append(d.predict_logits(data[split]))
        fit.models_.append(d.model_.to("cpu"))
        fit.val_acc_.append(float(d.best_val_acc_))
        fit.best_epoch_.append(int(d.best_epoch_))
        fit.train_time_s_ += sum(h["seconds"] for h in d.history_)
    fit.logits = {s: torch.stack(v) for s, v in logits.items()}
    return fit


def drop_checkpoints(spec: GroupSpec, plan: GroupPlan) -> None:
    """The group's checkpoint files, once its rows exist (they are what --resume needs)."""
    folder = group_folder(spec, plan)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
