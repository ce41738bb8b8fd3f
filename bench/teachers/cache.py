"""The teacher cache: ``<cache>/<key>/ensemble.pt``, keyed by the task's data and the
teacher's settings, so every later run with the same task and teacher reuses it.

Format (also ``[teacher] checkpoint``): a dict ``{"members": [state_dict, …], "family",
"arch", "combine", "input_shape", "num_classes"}``; a specialist system adds
``"specialists": {"class_sets", "top_n"}`` (member 0 is the generalist, member 1 + m
specialist m)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench.config.recipe import recipe_defaults_dropped
from bench.config.teacher import SPECIALIST_KEYS, TeacherConfig, later_defaults_dropped
from bench.durable.rundir import atomic_write_bytes, atomic_write_text
from bench.tasks import TaskData
from kdcore import TeacherEnsemble

__all__ = ["save_ensemble", "teacher_cache_key"]


def teacher_cache_key(task: TaskData, cfg: TeacherConfig) -> str:
    # top_k shapes the stored outputs of a streamed task, not the ensemble
    skip = {"checkpoint", "checkpoints", "hf", "onnx", "logits", "logits_key", "top_k"}
    if cfg.kind == "ensemble":  # so that ensembles cached before specialists existed stay valid
        skip |= {"kind", *SPECIALIST_KEYS}
    # recipe keys at their defaults left out: caches from before recipes stay valid
    settings = later_defaults_dropped(
        recipe_defaults_dropped({k: v for k, v in asdict(cfg).items() if k not in skip})
    )
    payload = json.dumps(
        {"task": task.fingerprint(), "teacher": settings, "torch": torch.__version__},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def save_ensemble(
    path: Path, ensemble: TeacherEnsemble, cfg: TeacherConfig, task: TaskData
) -> None:
    buf = io.BytesIO()
    blob: dict[str, Any] = {
        "members": [m.state_dict() for m in ensemble.members],
        "family": cfg.member_family,
        "arch": dict(cfg.arch),
        "combine": cfg.combine,
        "input_shape": list(task.input_shape),
        "num_classes": task.num_classes,
    }
    info = getattr(ensemble, "specialist_info", None)
    if info is not None:
        blob["specialists"] = info
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(
        path.with_name("meta.json"),
        json.dumps(
            {"teacher": asdict(cfg), "task": asdict(task.config), "torch": torch.__version__},
            indent=2,
            default=list,
        ),
    )
