"""The teacher's configuration (``[teacher]``) and its source, one dataclass per source.

``TeacherConfig`` is what the suite file says; :meth:`TeacherConfig.source_spec` turns it into
exactly one of :class:`TrainHere`, :class:`EnsembleFile`, :class:`MemberCheckpoints` or
:class:`OfflineLogits`, and :mod:`bench.teachers.load` has one loader per source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kdcore import format_arch

__all__ = [
    "SPECIALIST_KEYS",
    "EnsembleFile",
    "MemberCheckpoints",
    "OfflineLogits",
    "TeacherConfig",
    "TeacherSource",
    "TrainHere",
]

SPECIALIST_KEYS = ("specialists", "cluster_min", "cluster_max", "top_n", "specialist_epochs")


@dataclass(frozen=True)
class TrainHere:
    """Members (or a specialist system) trained on the task and cached."""


@dataclass(frozen=True)
class EnsembleFile:
    """A kdbench ensemble file (the cache format)."""

    path: str


@dataclass(frozen=True)
class MemberCheckpoints:
    """One ``state_dict`` per member of ``family``/``arch``."""

    paths: tuple[str, ...]


@dataclass(frozen=True)
class OfflineLogits:
    """Offline outputs ``[K, N, C]`` or ``[N, C]`` in an NPZ array, rows aligned with the data."""

    path: str
    key: str


TeacherSource = TrainHere | EnsembleFile | MemberCheckpoints | OfflineLogits


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher ensemble: trained here, or from files (see :attr:`source`)."""

    family: str = "seed_teacher"
    arch: dict[str, Any] = field(default_factory=dict)
    members: int = 5
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    combine: str = "mean_prob"
    seed: int = 1000
    checkpoint: str = ""
    checkpoints: tuple[str, ...] = ()
    logits: str = ""
    logits_key: str = "logits"
    # kind = "specialists": a generalist (one network of family/arch) and specialists on
    # clusters of the classes it confuses (kdcore.specialists); ignored for an ensemble.
    kind: str = "ensemble"
    specialists: int = 0  # K-means clusters; 0: one per 5 classes
    cluster_min: int = 2
    cluster_max: int = 0  # 0: no limit
    top_n: int = 2
    specialist_epochs: int = 10

    def source_spec(self) -> TeacherSource:
        """The one source these settings name (offline logits first, then member
        checkpoints, then an ensemble file; else trained here)."""
        if self.logits:
            return OfflineLogits(self.logits, self.logits_key)
        if self.checkpoints:
            return MemberCheckpoints(tuple(self.checkpoints))
        if self.checkpoint:
            return EnsembleFile(self.checkpoint)
        return TrainHere()

    @property
    def member_family(self) -> str:
        """The members' family (offline logits of unknown architecture: the seed teacher's,
        for stand-ins only)."""
        return self.family or "seed_teacher"

    @property
    def arch_label(self) -> str:
        return format_arch(self.family, self.arch) if self.family else "unknown (offline logits)"

    @property
    def source(self) -> str:
        """``train``, ``checkpoint`` (a kdbench ensemble file), ``checkpoints`` (one
        state_dict per member) or ``logits`` (offline outputs)."""
        if self.logits:
            return "logits"
        if self.checkpoints:
            return "checkpoints"
        if self.checkpoint:
            return "checkpoint"
        return "train"
