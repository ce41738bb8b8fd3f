"""A prepared teacher: its outputs computed ONCE per split and cached, and its evaluation."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from bench.config.teacher import TeacherConfig
from bench.tasks import TaskData, file_sha256
from bench.teachers.analysis import specialist_summary
from bench.teachers.cache import save_ensemble, teacher_cache_key
from bench.teachers.load import LoadedTeacher, build_member
from bench.teachers.prepared import (
    PreparedTeacher,
    accuracy_fields,
    teacher_flops,
    teacher_params,
)
from bench.teachers.train import train_members, train_specialist_system
from kdcore import SoftTargets, TeacherEnsemble
from kdcore.metrics import mean_max_prob

__all__ = ["SPLITS", "prepare_teacher"]

SPLITS = ("train", "val", "test")


def _outputs_sha256(targets: dict[str, SoftTargets]) -> str:
    h = hashlib.sha256()
    for split in SPLITS:
        h.update(targets[split].member_log_probs(1.0).numpy().tobytes())
        if targets[split].combine == "specialists":  # the members that predict every class
            h.update(targets[split].log_probs(1.0).numpy().tobytes())  # are not all of them
    return h.hexdigest()


def prepare_teacher(
    task: TaskData,
    cfg: TeacherConfig,
    cache_dir: Path,
    device: str = "cpu",
    loaded: LoadedTeacher | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> PreparedTeacher:
    """Train (or take the loaded) teacher, then run it ONCE per split and evaluate it.

    ``on_epoch(epoch, epochs)`` is called after each epoch of training (progress). A streamed
    task's teacher is prepared by :func:`bench.teachers.streamed.prepare_stream_teacher`."""
    if getattr(task, "streamed", False):
        from bench.teachers.streamed import prepare_stream_teacher

        return prepare_stream_teacher(task, cfg, cache_dir, device, loaded, on_epoch)  # type: ignore[arg-type]
    return _prepare_in_memory(task, cfg, cache_dir, device, loaded, on_epoch)


def _prepare_in_memory(
    task: TaskData,
    cfg: TeacherConfig,
    cache_dir: Path,
    device: str,
    loaded: LoadedTeacher | None,
    on_epoch: Callable[[int, int], None] | None,
) -> PreparedTeacher:
    key = teacher_cache_key(task, cfg)
    train_time = 0.0
    cache_file = cache_dir / key / "ensemble.pt"
    if loaded is None and cfg.kind == "specialists":
        ensemble, train_time = train_specialist_system(task, cfg, device, on_epoch)
    elif loaded is None:
        distiller = train_members(task, cfg, device, on_epoch, cfg.members)
        ensemble = TeacherEnsemble(distiller.models_, combine=cfg.combine)
        train_time = distiller.train_time_s_
    if loaded is None:
        save_ensemble(cache_file, ensemble, cfg, task)
        loaded = LoadedTeacher(ensemble, None, str(cache_file), file_sha256(cache_file), False)
    run_ensemble: TeacherEnsemble | None = None
    if loaded.ensemble is not None:
        run_ensemble = loaded.ensemble.eval()
        targets = run_ensemble.cache_outputs(task.inputs())
        cost_model: TeacherEnsemble | None = run_ensemble
    else:
        assert loaded.logits is not None
        targets = {
            s: SoftTargets(loaded.logits[:, torch.as_tensor(task.rows[s])], cfg.combine)
            for s in SPLITS
        }
        # With a named architecture, untrained stand-ins of it give the honest cost columns.
        cost_model = (
            TeacherEnsemble(
                [build_member(cfg, task) for _ in range(len(loaded.logits))], combine=cfg.combine
            ).eval()
            if cfg.family
            else None
        )
    x1 = task.x_train[:1]
    prepared = PreparedTeacher(
        ensemble=run_ensemble,
        cost_model=cost_model,
        targets=targets,
        **accuracy_fields(targets, task.y_val, task.y_test),
        mean_max_prob_train=mean_max_prob(targets["train"].log_probs(1.0)),
        params=teacher_params(cost_model),
        flops=teacher_flops(cost_model, x1),
        members=targets["train"].num_members,
        combine=targets["train"].combine,
        kind=cfg.source,
        arch=cfg.arch_label,
        source=loaded.source,
        reused=loaded.reused,
        key=key,
        sha256=loaded.sha256,
        outputs_sha256=_outputs_sha256(targets),
        train_time_s=train_time,
    )
    info = run_ensemble.specialist_info if run_ensemble is not None else None
    if run_ensemble is not None and info is not None:
        prepared.reference = {s: t.member(0) for s, t in targets.items()}
        prepared.extra["specialists"] = specialist_summary(
            task, run_ensemble, targets["test"], info
        )
    return prepared
