"""The teacher's configuration (``[teacher]``) and its source, one dataclass per source.

``TeacherConfig`` is what the suite file says; :meth:`TeacherConfig.source_spec` turns it into
exactly one of :class:`TrainHere`, :class:`EnsembleFile`, :class:`MemberCheckpoints`,
:class:`HFFolders`, :class:`OnnxFiles` or :class:`OfflineLogits`, and
:mod:`bench.teachers.load` has one loader per source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.config.recipe import RecipeFields
from bench.validation import SEED_MAX, choice, number, string
from kdcore.families import format_arch
from kdcore.teachers import COMBINE_MODES

__all__ = [
    "PREPROCESS",
    "SPECIALIST_KEYS",
    "TEACHER_KINDS",
    "EnsembleFile",
    "HFFolders",
    "MemberCheckpoints",
    "OfflineLogits",
    "OnnxFiles",
    "TeacherConfig",
    "TeacherSource",
    "TrainHere",
    "later_defaults_dropped",
]

SPECIALIST_KEYS = ("specialists", "cluster_min", "cluster_max", "top_n", "specialist_epochs")
TEACHER_KINDS = ("ensemble", "specialists")
# how the task's inputs are normalised: "auto" = the model's own where the source states one
# (timm checkpoints, a Hugging Face image model), else the task's; "model"; "task"
PREPROCESS = ("auto", "model", "task")


# keys [teacher] gained after runs and caches existed: left out of digests and cache keys at
# their defaults, so those stay valid
_LATER_DEFAULTS: dict[str, Any] = {
    "hf": [],
    "onnx": [],
    "preprocess": "auto",
    "mean": [],
    "std": [],
    "pixel_range": 255.0,
    "top_k": 0,
}


def later_defaults_dropped(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (the teacher table as a dict) without the later keys at their defaults."""

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple | list) else v

    return {
        k: v
        for k, v in settings.items()
        if k not in _LATER_DEFAULTS or plain(v) != _LATER_DEFAULTS[k]
    }


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
class HFFolders:
    """One local Hugging Face model folder per member (``config.json``, weights, and the
    tokenizer or image processor), loaded with ``local_files_only=True``."""

    paths: tuple[str, ...]


@dataclass(frozen=True)
class OnnxFiles:
    """One ONNX file per member, run once per split in onnxruntime."""

    paths: tuple[str, ...]


@dataclass(frozen=True)
class OfflineLogits:
    """Offline outputs ``[K, N, C]`` or ``[N, C]`` in an NPZ array, rows aligned with the data."""

    path: str
    key: str


TeacherSource = TrainHere | EnsembleFile | MemberCheckpoints | HFFolders | OnnxFiles | OfflineLogits


@dataclass(frozen=True)
class TeacherConfig(RecipeFields):
    """The teacher ensemble: trained here, or from files (see :attr:`source`); the recipe keys
    (:mod:`bench.config.recipe`) are how its members train (a specialist system's generalist and
    specialists too)."""

    # family, arch and the file paths are read by bench.config.suite (they depend on the source)
    family: str = "seed_teacher"
    arch: dict[str, Any] = field(default_factory=dict)
    members: int = number(5, int, 1, 64, help="ensemble size K (trained teachers)")
    epochs: int = number(20, int, 1, 10_000, help="training epochs (best epoch on validation)")
    batch_size: int = number(256, int, 1, 1_000_000, help="mini-batch size")
    lr: float = number(1e-3, float, 0.0, 10.0, low_open=True, help="base learning rate")
    weight_decay: float = number(0.0, float, 0.0, 1.0, help="weight decay (the optimizer's)")
    combine: str = choice("mean_prob", COMBINE_MODES, help="how the members' outputs combine")
    seed: int = number(
        1000, int, 0, SEED_MAX, help="member k trains with seed + k (certification's are above)"
    )
    checkpoint: str = ""
    checkpoints: tuple[str, ...] = ()
    hf: tuple[str, ...] = ()
    onnx: tuple[str, ...] = ()
    logits: str = ""
    logits_key: str = string("logits", help="the NPZ array of the offline logits")
    # kind = "specialists": a generalist (one network of family/arch) and specialists on
    # clusters of the classes it confuses (kdcore.specialists); ignored for an ensemble.
    kind: str = choice("ensemble", TEACHER_KINDS, help="an ensemble, or a specialist system")
    specialists: int = number(0, int, 0, 10_000, help="K-means clusters (0: one per 5 classes)")
    cluster_min: int = number(2, int, 1, 10_000, help="smaller clusters are dropped")
    cluster_max: int = number(0, int, 0, 10_000, help="larger clusters are split (0: no limit)")
    top_n: int = number(2, int, 1, 10_000, help="specialists meeting the generalist's top-n")
    specialist_epochs: int = number(10, int, 1, 10_000, help="training epochs of a specialist")
    # the inputs' normalisation (images): the model's own (mean, std per channel, on pixel
    # values divided by pixel_range) or the task's standardisation
    preprocess: str = choice("auto", PREPROCESS, help="the model's normalisation, or the task's")
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    pixel_range: float = number(
        255.0, float, 0.0, 1e9, low_open=True, help="raw pixel values are divided by it first"
    )
    top_k: int = number(
        0,
        int,
        0,
        10_000_000,
        help="streamed tasks: keep the teacher's top-k logits per training example (0 = all)",
    )

    def source_spec(self) -> TeacherSource:
        """The one source these settings name (offline logits first, then member
        checkpoints, then an ensemble file; else trained here)."""
        if self.logits:
            return OfflineLogits(self.logits, self.logits_key)
        if self.checkpoints:
            return MemberCheckpoints(tuple(self.checkpoints))
        if self.hf:
            return HFFolders(tuple(self.hf))
        if self.onnx:
            return OnnxFiles(tuple(self.onnx))
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
        if self.family:
            return format_arch(self.family, self.arch)
        if self.hf:
            return "Hugging Face folders"
        if self.onnx:
            return "ONNX files"
        return "unknown (offline logits)"

    @property
    def source(self) -> str:
        """``train``, ``checkpoint`` (a kdbench ensemble file), ``checkpoints`` (one
        state_dict per member), ``hf`` (Hugging Face folders), ``onnx`` (ONNX files) or
        ``logits`` (offline outputs)."""
        if self.logits:
            return "logits"
        if self.checkpoints:
            return "checkpoints"
        if self.hf:
            return "hf"
        if self.onnx:
            return "onnx"
        if self.checkpoint:
            return "checkpoint"
        return "train"
