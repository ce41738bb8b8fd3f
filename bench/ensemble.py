"""The teacher ensemble of a task: trained once (or loaded), cached, evaluated once.

Trained ensembles are stored under ``<results>/teachers/<hash>/ensemble.pt`` where the hash
covers the task data and the teacher settings, so every later run with the same task and
teacher reuses them. Checkpoints are read with ``torch.load(weights_only=True)``.

Checkpoint format (also for a user's own ``teacher.checkpoint``): a dict with ``members`` (a
list of ``state_dict``s of the teacher family's modules), ``family``, ``combine``,
``input_dim`` and ``num_classes``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench.records import atomic_write_bytes, atomic_write_text
from bench.suite import SuiteError, TeacherConfig
from bench.tasks import TaskData
from kdcore import (
    Distiller,
    Member,
    SoftTargets,
    TeacherEnsemble,
    accuracy,
    build_student,
    count_flops,
    count_params,
    expected_calibration_error,
    mean_max_prob,
)

__all__ = ["PreparedTeacher", "prepare_teacher", "teacher_cache_key"]

log = logging.getLogger(__name__)


@dataclass
class PreparedTeacher:
    """The ensemble, its cached outputs on every split, and its evaluation."""

    ensemble: TeacherEnsemble
    targets: dict[str, SoftTargets]
    member_val_acc: list[float]
    member_test_acc: list[float]
    ensemble_val_acc: float
    ensemble_acc: float
    best_member_acc: float
    mean_member_acc: float
    ensemble_ece: float
    mean_max_prob_train: float
    params: int
    flops: int
    source: str
    reused: bool
    key: str
    train_time_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        for k in ("ensemble", "targets"):
            data.pop(k)
        return data


def teacher_cache_key(task: TaskData, cfg: TeacherConfig) -> str:
    settings = asdict(cfg)
    settings.pop("checkpoint")
    payload = json.dumps(
        {"task": task.fingerprint(), "teacher": settings, "torch": torch.__version__},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _save(path: Path, ensemble: TeacherEnsemble, cfg: TeacherConfig, task: TaskData) -> None:
    buf = io.BytesIO()
    torch.save(
        {
            "members": [m.state_dict() for m in ensemble.members],
            "family": cfg.family,
            "combine": cfg.combine,
            "input_dim": task.input_dim,
            "num_classes": task.num_classes,
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path, cfg: TeacherConfig, task: TaskData) -> TeacherEnsemble:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or unsafe pickle
        raise SuiteError(
            f"The 'checkpoint' parameter of [teacher] must be a kdbench ensemble checkpoint loadable "
            f"with torch.load(weights_only=True). Got {str(path)!r} instead ({type(exc).__name__}: {exc})."
        ) from None
    states = blob.get("members") if isinstance(blob, dict) else blob
    if not isinstance(states, list) or not states:
        raise SuiteError(
            f"The 'checkpoint' parameter of [teacher] must hold a non-empty 'members' list of state_dicts. "
            f"Got {str(path)!r} instead."
        )
    family = blob.get("family", cfg.family) if isinstance(blob, dict) else cfg.family
    members = []
    for i, state in enumerate(states):
        module = build_student(family, task.input_dim, task.num_classes)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise SuiteError(
                f"The 'checkpoint' parameter of [teacher] must match the task "
                f"(input_dim={task.input_dim}, num_classes={task.num_classes}); member {i} of "
                f"{str(path)!r} does not: {str(exc).splitlines()[0]}"
            ) from None
        members.append(module.eval())
    return TeacherEnsemble(members, combine=cfg.combine)


def prepare_teacher(
    task: TaskData, cfg: TeacherConfig, cache_root: Path, device: str = "cpu"
) -> PreparedTeacher:
    """Load or train the ensemble, then run it ONCE per split and evaluate it."""
    key = teacher_cache_key(task, cfg)
    cache_file = Path(cache_root) / "teachers" / key / "ensemble.pt"
    train_time = 0.0
    if cfg.checkpoint:
        ensemble, source, reused = _load(Path(cfg.checkpoint), cfg, task), cfg.checkpoint, True
    elif cache_file.is_file():
        ensemble, source, reused = _load(cache_file, cfg, task), str(cache_file), True
        log.info("reusing teacher ensemble %s", cache_file)
    else:
        distiller = Distiller(
            family=cfg.family,
            arch={},
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            device=device,
        ).fit(
            task.x_train,
            task.y_train,
            task.x_val,
            task.y_val,
            [Member(seed=cfg.seed + k) for k in range(cfg.members)],
        )
        if distiller.failed_:
            raise RuntimeError(f"teacher training diverged: {distiller.failed_}")
        ensemble = TeacherEnsemble(distiller.models_, combine=cfg.combine)
        train_time = distiller.train_time_s_
        _save(cache_file, ensemble, cfg, task)
        atomic_write_text(
            cache_file.with_name("meta.json"),
            json.dumps(
                {"teacher": asdict(cfg), "task": asdict(task.config), "torch": torch.__version__},
                indent=2,
            ),
        )
        source, reused = str(cache_file), False
    ensemble = ensemble.eval()
    targets = ensemble.cache_outputs(
        {"train": task.x_train, "val": task.x_val, "test": task.x_test}
    )
    val_lp, test_lp = targets["val"].log_probs(1.0), targets["test"].log_probs(1.0)
    member_val = [accuracy(v, task.y_val) for v in targets["val"].member_logits]
    member_test = [accuracy(v, task.y_test) for v in targets["test"].member_logits]
    best = max(range(len(member_val)), key=lambda i: member_val[i])  # chosen on val, not test
    x1 = task.x_train[:1]
    return PreparedTeacher(
        ensemble=ensemble,
        targets=targets,
        member_val_acc=member_val,
        member_test_acc=member_test,
        ensemble_val_acc=accuracy(val_lp, task.y_val),
        ensemble_acc=accuracy(test_lp, task.y_test),
        best_member_acc=member_test[best],
        mean_member_acc=sum(member_test) / len(member_test),
        ensemble_ece=expected_calibration_error(test_lp, task.y_test),
        mean_max_prob_train=mean_max_prob(targets["train"].log_probs(1.0)),
        params=count_params(ensemble),
        flops=count_flops(ensemble, x1),
        source=source,
        reused=reused,
        key=key,
        train_time_s=train_time,
    )
