"""The teacher of a streamed task (:class:`bench.tasks.StreamedTask`).

Trained here, each member is one :class:`kdcore.stream.StreamDistiller` run on hard labels
(member ``k`` with seed ``seed + k``, best epoch on validation) — or it is loaded as for any
task. Its outputs are then computed once, in streaming passes:

* on the **training split** as a :class:`kdcore.stream.TargetFile` under
  ``<cache>/stream-targets/<key>`` (:mod:`bench.teachers.stream_cache`): the ensemble's
  log-probabilities at ``T = 1`` (float16), or with ``[teacher] top_k = K`` its ``K`` largest
  with the tail mass. A student's soft target at temperature ``T`` is ``softmax(ℓ / T)`` of
  these: the members' own softening for one member or ``combine = "mean_logit"``; for
  ``mean_prob`` with several members it softens the members' *mean* probability (the grouped
  path averages each member's softened probabilities instead) — what the row records as
  ``teacher_targets``;
* on **validation and test** as every member's float32 logits, in memory (what the
  evaluation, the paired certification and the teacher's columns use, exactly as for an
  in-memory task), cached beside the training file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.config.teacher import TeacherConfig
from bench.durable.rundir import atomic_write_bytes
from bench.errors import InputError
from bench.tasks import StreamedTask, file_sha256
from bench.teachers.cache import save_ensemble, teacher_cache_key
from bench.teachers.load import LoadedTeacher
from bench.teachers.prepared import (
    PreparedTeacher,
    accuracy_fields,
    teacher_flops,
    teacher_params,
)
from bench.teachers.stream_cache import member_outputs, stream_targets, stream_targets_key
from kdcore import SoftTargets, TeacherEnsemble
from kdcore.stream import StreamDistiller, TargetFile

__all__ = ["check_stream_teacher", "member_outputs", "prepare_stream_teacher", "targets_kind"]


def check_stream_teacher(cfg: TeacherConfig, task: StreamedTask) -> None:
    """What a streamed task's teacher cannot be, as one line each."""
    if cfg.kind == "specialists":
        raise InputError(
            "The 'kind' parameter of [teacher] must be 'ensemble' for a streamed task "
            f"('{task.name}'). Got 'specialists' instead."
        )
    if cfg.logits:
        raise InputError(
            "The 'logits' parameter of [teacher] must be left out for a streamed task "
            f"('{task.name}': teacher outputs are computed in streaming passes). Got "
            f"{cfg.logits!r} instead."
        )
    if cfg.top_k > task.num_classes:
        raise InputError(
            f"The 'top_k' parameter of [teacher] must be at most the number of classes of task "
            f"'{task.name}' ({task.num_classes}). Got {cfg.top_k} instead."
        )


def targets_kind(top_k: int, combine: str, members: int) -> str:
    """What the training split's stored soft targets are (the row's ``teacher_targets``)."""
    top = f"top-{top_k} of " if top_k else ""
    if members == 1 or combine == "mean_logit":
        return f"{top}the teacher's logits"
    return f"{top}log of the members' mean probability at T = 1"


def train_stream_members(
    task: StreamedTask,
    cfg: TeacherConfig,
    device: str,
    on_epoch: Callable[[int, int], None] | None,
) -> tuple[list[nn.Module], float]:
    """``cfg.members`` networks trained on hard labels, streamed (seed ``seed + k``)."""
    from bench.teachers.load import member_arch
    from kdcore import build_student

    arch = member_arch(cfg, task)  # type: ignore[arg-type]
    models, seconds = [], 0.0
    for k in range(cfg.members):
        fit = StreamDistiller(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed + k,
            num_workers=int(getattr(task.config, "loader_workers", 0)),
            device=device,
            recipe=cfg.recipe(),
        ).fit(
            lambda: build_student(cfg.member_family, task.input_shape, task.num_classes, **arch),
            task.dataset("train"),
            task.dataset("val"),
            on_epoch=None if on_epoch is None else lambda e, _a: on_epoch(e, cfg.epochs),
        )
        if not math.isfinite(fit.history_[-1]["train_loss"]):
            raise RuntimeError(f"teacher member {k} diverged (loss {fit.history_[-1]})")
        models.append(fit.model_.to("cpu").float().eval())
        seconds += sum(h["seconds"] for h in fit.history_)
    return models, seconds


def _cached_eval(
    folder: Path, ensemble: TeacherEnsemble, task: StreamedTask, device: str, batch_size: int
) -> dict[str, SoftTargets]:
    """Validation and test outputs of every member, cached in ``folder`` (one file)."""
    path = folder / "val-test.pt"
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            return {s: SoftTargets(list(blob[s]), ensemble.combiner) for s in ("val", "test")}
        except Exception:  # a damaged cache file is computed again
            path.unlink(missing_ok=True)
    out = {s: member_outputs(ensemble, task, s, device, batch_size) for s in ("val", "test")}
    buf = io.BytesIO()
    # log-probabilities at T = 1: the same soft targets at every T, for every combiner here
    torch.save({s: list(out[s].member_log_probs(1.0).unbind(0)) for s in ("val", "test")}, buf)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return out


def _mean_max_prob(file: TargetFile, chunk: int = 8192) -> float:
    """The mean over training examples of the teacher's largest probability at ``T = 1``."""
    total = 0.0
    for start in range(0, file.rows, chunk):
        rows = torch.arange(start, min(start + chunk, file.rows))
        if file.top_k is None:
            total += float(torch.softmax(file.logits(rows).float(), -1).max(-1).values.sum())
        else:
            _, values = file.topk(rows)
            tail = torch.from_numpy(np.array(file.tail_mass()[start : start + len(rows)]))
            top = torch.softmax(values.float(), -1).max(-1).values * (1.0 - tail)
            total += float(top.sum())
    return total / max(file.rows, 1)


def prepare_stream_teacher(
    task: StreamedTask,
    cfg: TeacherConfig,
    cache_dir: Path,
    device: str = "cpu",
    loaded: LoadedTeacher | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> PreparedTeacher:
    """Train (or take the loaded) teacher, then its outputs once per split (module text)."""
    check_stream_teacher(cfg, task)
    key = teacher_cache_key(task, cfg)  # type: ignore[arg-type]
    train_time = 0.0
    if loaded is None:
        models, train_time = train_stream_members(task, cfg, device, on_epoch)
        ensemble = TeacherEnsemble(models, combine=cfg.combine)
        cache_file = cache_dir / key / "ensemble.pt"
        save_ensemble(cache_file, ensemble, cfg, task)  # type: ignore[arg-type]
        loaded = LoadedTeacher(ensemble, None, str(cache_file), file_sha256(cache_file), False)
    assert loaded.ensemble is not None
    ensemble = loaded.ensemble.eval()
    top_k = cfg.top_k or None
    inputs = {
        "fingerprint": task.fingerprint(),
        "combine": cfg.combine,
        "teacher_files": loaded.sha256,
    }
    file_key = stream_targets_key(
        task.ids("train"), task.labels("train").numpy(), ensemble, top_k=top_k, inputs=inputs
    )
    root = cache_dir / "stream-targets"
    train_file, _ = stream_targets(
        ensemble,
        task.dataset("train"),
        root,
        file_key,
        classes=task.num_classes,
        top_k=top_k,
        # the teacher's own batch size: a larger inference batch only raises the peak memory
        batch_size=cfg.batch_size,
        num_workers=int(getattr(task.config, "loader_workers", 0)),
        device=device,
    )
    ensemble.to("cpu")
    targets = _cached_eval(root / file_key, ensemble, task, device, cfg.batch_size)
    prepared = _evaluated(task, cfg, loaded, ensemble, targets, file_key)
    prepared.key, prepared.train_time_s = key, train_time
    prepared.train_file = train_file
    prepared.mean_max_prob_train = _mean_max_prob(train_file)
    prepared.extra["teacher_targets"] = targets_kind(cfg.top_k, cfg.combine, len(ensemble.members))
    prepared.extra["train_targets"] = json.dumps(
        {"folder": str(train_file.folder), "top_k": train_file.top_k}
    )
    if train_file.top_k is not None:
        tail = train_file.tail_mass()
        prepared.extra["top_k_mass_kept"] = float(1.0 - tail.mean())
    return prepared


def _evaluated(
    task: StreamedTask,
    cfg: TeacherConfig,
    loaded: LoadedTeacher,
    ensemble: TeacherEnsemble,
    targets: dict[str, SoftTargets],
    file_key: str,
) -> PreparedTeacher:
    """The teacher's columns from its validation and test outputs (the best member chosen on
    validation), as :func:`bench.teachers.evaluate.prepare_teacher` computes them."""
    h = hashlib.sha256(file_key.encode())  # the training file's key: its data and teacher
    for s in ("val", "test"):
        h.update(targets[s].member_log_probs(1.0).numpy().tobytes())
    return PreparedTeacher(
        ensemble=ensemble,
        cost_model=ensemble,
        targets=targets,
        **accuracy_fields(targets, task.y_val, task.y_test),
        mean_max_prob_train=math.nan,  # set from the training file by the caller
        params=teacher_params(ensemble),
        flops=teacher_flops(ensemble, task.sample(1)),
        members=len(ensemble.members),
        combine=ensemble.combine,
        kind=cfg.source,
        arch=cfg.arch_label,
        source=loaded.source,
        reused=loaded.reused,
        key="",
        sha256=loaded.sha256,
        outputs_sha256=h.hexdigest(),
    )
