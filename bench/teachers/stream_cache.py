"""Teacher outputs of a streamed split, on disk, content-hashed and shared.

``<root>/<key>/`` holds one :class:`kdcore.stream.TargetFile`; the key is the sha256 of what
the outputs depend on — the split's example ids and labels, how its examples are turned into
tensors (shape, normalisation), the teacher's weights (every tensor of its state dict, with
its name, dtype and shape), ``top_k`` and torch's version — so a later run, another worker or
another student with the same data and teacher reads the file instead of running the teacher
again, and any change to either writes a new one.

Several processes may ask for the same key at once (local workers, hosts on a shared
folder): each writes its own temporary folder and renames it into place; a process that
finds the place taken by then keeps the finished folder and drops its own, so readers only
ever see a complete file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdcore import SoftTargets
from kdcore.stream import TargetFile, write_targets

__all__ = ["member_outputs", "stream_targets", "stream_targets_key"]


def stream_targets_key(
    ids: Sequence[str],
    labels: np.ndarray,
    teacher: nn.Module,
    *,
    top_k: int | None,
    inputs: Mapping[str, Any],
) -> str:
    """sha256 of the split (ids, labels), its input recipe, the teacher's weights and top-k."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"inputs": inputs, "top_k": top_k, "torch": torch.__version__},
            sort_keys=True,
            default=str,
        ).encode()
    )
    for i in ids:
        h.update(i.encode())
        h.update(b"\0")
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    for name, t in sorted(teacher.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def stream_targets(  # noqa: PLR0913 — the split, the teacher and how to run it
    teacher: nn.Module,
    data: Dataset[Any],
    root: str | Path,
    key: str,
    *,
    classes: int,
    top_k: int | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str = "cpu",
) -> tuple[TargetFile, bool]:
    """The teacher's outputs on ``data`` under ``root/key``: read when present (``False``),
    else computed once in a streaming pass and written (``True``)."""
    folder = Path(root) / key
    n = len(data)  # type: ignore[arg-type]
    if folder.exists():
        try:
            found = TargetFile.open(folder)
            if found.key == key and found.rows == n:
                return found, False
        except (OSError, ValueError, KeyError):  # damaged (truncated, half a folder): redone
            pass
        shutil.rmtree(folder, ignore_errors=True)
    teacher = teacher.to(device).eval()
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers)
    mine = folder.with_name(f"{key}.writer-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write_targets(
            teacher, loader, mine, rows=n, classes=classes,
            top_k=top_k, key=key, device=device,
        )  # fmt: skip
        try:
            mine.rename(folder)
        except OSError:  # another process put its (identical) file there first
            if not (folder / "targets.json").exists():
                raise
        return TargetFile.open(folder), True
    finally:
        shutil.rmtree(mine, ignore_errors=True)


def _loader(task: Any, split: str, batch_size: int) -> DataLoader[Any]:
    workers = int(getattr(task.config, "loader_workers", 0))
    return DataLoader(task.dataset(split), batch_size=batch_size, num_workers=workers)


@torch.inference_mode()
def member_outputs(
    ensemble: Any, task: Any, split: str, device: str, batch_size: int = 256
) -> SoftTargets:
    """Every member's logits on ``split``, streamed: ``[K, n, C]`` float32 in memory."""
    ensemble.eval().to(device)
    chunks: list[list[torch.Tensor]] = []
    for x, _ in _loader(task, split, batch_size):
        chunks.append([z.float().cpu() for z in ensemble.member_outputs(x.to(device))])
    members = [torch.cat([c[k] for c in chunks]) for k in range(len(ensemble.members))]
    ensemble.to("cpu")
    return SoftTargets(members, ensemble.combiner)
