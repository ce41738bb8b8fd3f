"""Reading a teacher: one loader per source, every file validated before anything is
written. Checkpoints are read with ``torch.load(..., weights_only=True)`` (``.safetensors``
with safetensors), Hugging Face folders with ``from_pretrained(..., local_files_only=True)``,
ONNX files with onnxruntime, logits with ``np.load(..., allow_pickle=False)``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.config.teacher import (
    EnsembleFile,
    HFFolders,
    MemberCheckpoints,
    OfflineLogits,
    OnnxFiles,
    TeacherConfig,
    TeacherSource,
    TrainHere,
)
from bench.errors import InputError
from bench.tasks import TaskData, file_sha256
from bench.teachers.cache import teacher_cache_key
from kdcore import TeacherEnsemble, build_student, get_family
from kdcore.families import format_arch
from kdcore.specialists import Specialist, SpecialistCombiner
from kdcore.teachers import SoftTargets

__all__ = ["LoadedTeacher", "build_member", "load_ensemble_file", "load_teacher", "member_arch"]


@dataclass
class LoadedTeacher:
    """A teacher read from files (or the cache) and validated, before any output is written."""

    ensemble: TeacherEnsemble | None  # None for offline logits
    logits: torch.Tensor | None  # [K, N, C] over the task's rows, for offline logits
    source: str
    sha256: str
    reused: bool

    def val_outputs(self, task: TaskData, combine: str) -> SoftTargets:
        """The teacher's outputs on the validation split (for the label check before a run)."""
        if self.logits is not None:
            return SoftTargets(self.logits[:, torch.as_tensor(task.rows["val"])], combine)
        assert self.ensemble is not None
        if getattr(task, "streamed", False):
            from bench.teachers.stream_cache import member_outputs

            return member_outputs(self.ensemble, task, "val", "cpu")
        return self.ensemble.cache_outputs({"val": task.x_val})["val"]


def member_arch(cfg: TeacherConfig, task: TaskData, family: str | None = None) -> dict[str, Any]:
    """The teacher's architecture values for ``task``: ``[teacher] arch`` plus the values the
    data fix (:attr:`kdcore.ArchParam.from_data`, such as a text task's vocabulary size)."""
    return with_data_params(family or cfg.member_family, cfg.arch, task)


def with_data_params(family: str, arch: dict[str, Any], task: TaskData) -> dict[str, Any]:
    """``arch`` with the values of ``family``'s data-fixed parameters that ``task`` gives."""
    fixed = {
        p.name: task.data_params[p.name]
        for p in get_family(family).params
        if p.from_data and p.name in task.data_params
    }
    return {**arch, **fixed}


def build_member(cfg: TeacherConfig, task: TaskData, family: str | None = None) -> nn.Module:
    """One (untrained) member of the teacher's architecture for ``task``."""
    name = family or cfg.member_family
    return build_student(name, task.input_shape, task.num_classes, **member_arch(cfg, task, name))


def _check_label_names(config: Any, task: TaskData, what: str, folder: Path) -> None:
    """A folder whose ``id2label`` names its classes (not transformers' ``LABEL_k``) must name
    the task's, in the task's order: outputs in another order would teach wrong classes."""
    names = [str(config.id2label[k]) for k in sorted(config.id2label)]
    if all(n == f"LABEL_{k}" for k, n in enumerate(names)):
        return
    want = [str(c) for c in task.class_names]
    if names == want:
        return
    hint = (
        f"set [task] classes = {names} to read the labels in the model's order"
        if sorted(names) == sorted(want)
        else "the model was trained on other classes"
    )
    raise InputError(
        f"{what} must output the task's classes in its order {want}. Got {str(folder)!r}, "
        f"whose config's id2label is {names}: {hint}."
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _torch_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InputError(f"{what} must be an existing file. Got {str(path)!r} instead.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise InputError(
                f"{what} must be a readable safetensors file. Got {str(path)!r} instead "
                f"({type(exc).__name__}: {_first_line(exc)})."
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, or an unsafe pickle
        raise InputError(
            f"{what} must be loadable with torch.load(weights_only=True). Got {str(path)!r} "
            f"instead ({type(exc).__name__}: {_first_line(exc)})."
        ) from None


def _load_member(
    module: nn.Module, state: Any, what: str, path: Path, cfg: TeacherConfig
) -> nn.Module:
    """Load ``state`` into ``module``; name the member and the layer on any mismatch."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{what} ({path}) must be a state_dict (a dict of tensors).")
    expected = module.state_dict()
    arch = f"family {cfg.member_family!r} ({format_arch(cfg.member_family, cfg.arch)})"
    for key, ref in expected.items():
        if key not in state:
            raise InputError(f"{what} ({path}) must match {arch}: layer {key!r} is missing.")
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise InputError(
                f"{what} ({path}) must match {arch}: layer {key!r} has shape "
                f"{list(got.shape)}, expected {list(ref.shape)}."
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise InputError(f"{what} ({path}) must have finite weights: layer {key!r} does not.")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise InputError(
            f"{what} ({path}) must match {arch}: it has the unexpected layer {extra[0]!r}."
        )
    module.load_state_dict({k: state[k].to(expected[k].dtype) for k in expected})
    return module.eval()


def _sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def load_ensemble_file(
    path: Path, cfg: TeacherConfig, task: TaskData, what: str
) -> TeacherEnsemble:
    blob = _torch_load(path, what)
    states = blob.get("members") if isinstance(blob, dict) else None
    if not isinstance(states, list) or not states:
        raise InputError(
            f"{what} must hold a non-empty 'members' list of state_dicts. Got {str(path)!r} instead."
        )
    family = blob.get("family", cfg.member_family)
    arch = blob.get("arch", cfg.arch)
    if not isinstance(arch, dict):
        arch = cfg.arch
    arch = with_data_params(family, arch, task)
    spec = blob.get("specialists")
    sets: list[list[int]] = spec["class_sets"] if isinstance(spec, dict) else []
    if sets and len(states) != 1 + len(sets):
        raise InputError(f"{what} must hold a generalist and {len(sets)} specialists.")

    def module(i: int) -> nn.Module:
        if i == 0 or not sets:
            return build_student(family, task.input_shape, task.num_classes, **arch)
        n = len(sets[i - 1])
        return Specialist(build_student(family, task.input_shape, n + 1, **arch), n)

    try:
        members = [
            _load_member(module(i), state, f"Member {i} of {what}", path, cfg)
            for i, state in enumerate(states)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{what} ({path}) must describe a buildable family: {exc}") from None
    if sets:
        ensemble = TeacherEnsemble(members, combine=SpecialistCombiner(sets, int(spec["top_n"])))
        ensemble.specialist_info = dict(spec)
        return ensemble
    return TeacherEnsemble(members, combine=cfg.combine)


def _load_logits(cfg: TeacherConfig, task: TaskData) -> torch.Tensor:
    path = Path(cfg.logits)
    what = f"The teacher logits file {path}"
    if not path.is_file():
        raise InputError(f"{what} must exist. It does not.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if cfg.logits_key not in archive.files:
                raise InputError(
                    f"{what} must hold an array named {cfg.logits_key!r} ('logits_key'). Its "
                    f"arrays are: {', '.join(archive.files) or '(none)'}."
                )
            array = archive[cfg.logits_key]
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"{what} must be a valid NPZ archive of plain arrays. Got {type(exc).__name__}: {exc}"
        ) from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.floating):
        raise InputError(
            f"{what} must hold float logits [K, N, C] or [N, C]. Got shape {list(array.shape)} "
            f"and dtype {array.dtype}."
        )
    _k, n, c = array.shape
    if n != task.n_rows or c != task.num_classes:
        raise InputError(
            f"{what} must have one row per example of task '{task.name}' ({task.n_rows}) and one "
            f"column per class ({task.num_classes}). Got shape {list(array.shape)}."
        )
    if not np.isfinite(array).all():
        raise InputError(f"{what} must hold finite logits. It has NaN or inf values.")
    return torch.as_tensor(array, dtype=torch.float32)


def _from_logits(src: OfflineLogits, cfg: TeacherConfig, task: TaskData) -> LoadedTeacher:
    return LoadedTeacher(None, _load_logits(cfg, task), src.path, file_sha256(src.path), True)


def _from_checkpoints(src: MemberCheckpoints, cfg: TeacherConfig, task: TaskData) -> LoadedTeacher:
    members = []
    for i, p in enumerate(src.paths):
        path = Path(p)
        state = _torch_load(path, f"Teacher checkpoint {i}")
        members.append(
            _load_member(build_member(cfg, task), state, f"Teacher checkpoint {i}", path, cfg)
        )
    return LoadedTeacher(
        TeacherEnsemble(members, combine=cfg.combine),
        None,
        ", ".join(src.paths),
        _sha256_files([Path(p) for p in src.paths]),
        True,
    )


def _from_file(src: EnsembleFile, cfg: TeacherConfig, task: TaskData) -> LoadedTeacher:
    path = Path(src.path)
    ens = load_ensemble_file(path, cfg, task, "The 'checkpoint' parameter of [teacher]")
    return LoadedTeacher(ens, None, str(path), file_sha256(path), True)


def hf_member(folder: Path, task: TaskData, what: str) -> nn.Module:
    """A local Hugging Face classifier folder as a member: its config checked against the
    task (labels, image channels and size), loaded offline, wrapped to return logits."""
    from bench.models.hf_zoo import HFClassifier, quiet_transformers

    quiet_transformers()
    from transformers import (
        AutoConfig,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
    )

    if not (folder / "config.json").is_file():
        raise InputError(
            f"{what} must be a Hugging Face model folder with a config.json. Got {str(folder)!r}, "
            "which has none."
        )
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise InputError(
            f"{what} must have a readable config.json. Got {str(folder)!r} "
            f"({type(exc).__name__}: {_first_line(exc)[:200]})."
        ) from None
    if int(config.num_labels) != task.num_classes:
        raise InputError(
            f"{what} must classify the task's {task.num_classes} classes. Got {str(folder)!r}, "
            f"whose config has num_labels = {config.num_labels}."
        )
    _check_label_names(config, task, what, folder)
    tokens = task.input_kind == "tokens"
    if not tokens:
        c, side = task.input_shape[0], task.input_shape[-1]
        for key, want in (("num_channels", c), ("image_size", side)):
            got = getattr(config, key, None)
            if got is not None and int(got) != want:
                raise InputError(
                    f"{what} must take the task's images ({list(task.input_shape)}). Got "
                    f"{str(folder)!r}, whose config has {key} = {got}."
                )
    auto = AutoModelForSequenceClassification if tokens else AutoModelForImageClassification
    try:
        model = auto.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise InputError(
            f"{what} must load with {auto.__name__}.from_pretrained(local_files_only=True). Got "
            f"{str(folder)!r} ({type(exc).__name__}: {_first_line(exc)[:200]})."
        ) from None
    return HFClassifier(model, tokens=tokens).eval()


def _from_hf(src: HFFolders, cfg: TeacherConfig, task: TaskData) -> LoadedTeacher:
    members = [
        hf_member(Path(p), task, f"Teacher folder {i} of [teacher] hf")
        for i, p in enumerate(src.paths)
    ]
    files = sorted(f for p in src.paths for f in Path(p).iterdir() if f.is_file())
    return LoadedTeacher(
        TeacherEnsemble(members, combine=cfg.combine),
        None,
        ", ".join(src.paths),
        _sha256_files(files),
        True,
    )


def _from_onnx(src: OnnxFiles, cfg: TeacherConfig, task: TaskData) -> LoadedTeacher:
    from bench.models.onnx_member import OnnxMismatch, load_onnx_member

    members = []
    for i, p in enumerate(src.paths):
        path, what = Path(p), f"Teacher file {i} of [teacher] onnx"
        if not path.is_file():
            raise InputError(f"{what} must be an existing file. Got {p!r} instead.")
        try:
            members.append(
                load_onnx_member(
                    path, task.input_shape, task.num_classes, task.input_kind == "tokens"
                )
            )
        except OnnxMismatch as exc:
            raise InputError(f"{what} ({p}) {exc}.") from None
        except Exception as exc:  # onnx / onnxruntime raise their own types
            raise InputError(
                f"{what} must be an ONNX model onnxruntime can run. Got {p!r} "
                f"({type(exc).__name__}: {_first_line(exc)[:200]})."
            ) from None
    return LoadedTeacher(
        TeacherEnsemble(members, combine=cfg.combine),
        None,
        ", ".join(src.paths),
        _sha256_files([Path(p) for p in src.paths]),
        True,
    )


LOADERS: dict[type, Callable[[Any, TeacherConfig, TaskData], LoadedTeacher]] = {
    OfflineLogits: _from_logits,
    MemberCheckpoints: _from_checkpoints,
    EnsembleFile: _from_file,
    HFFolders: _from_hf,
    OnnxFiles: _from_onnx,
}


def load_teacher(task: TaskData, cfg: TeacherConfig, cache_dir: Path) -> LoadedTeacher | None:
    """Read and validate the teacher's files, or the cached ensemble; None = train it.

    Raises :class:`InputError` (exit 2) on any problem; writes nothing.
    """
    if cfg.kind == "specialists" and cfg.specialists > task.num_classes:
        raise InputError(
            f"The 'specialists' parameter of [teacher] must be <= the number of classes of "
            f"{task.config.describe()} ({task.num_classes}). Got {cfg.specialists} instead."
        )
    src: TeacherSource = cfg.source_spec()
    if not isinstance(src, TrainHere):
        return LOADERS[type(src)](src, cfg, task)
    cache_file = cache_dir / teacher_cache_key(task, cfg) / "ensemble.pt"
    if cache_file.is_file():
        ens = load_ensemble_file(cache_file, cfg, task, f"The cached teacher {cache_file}")
        return LoadedTeacher(ens, None, str(cache_file), file_sha256(cache_file), True)
    return None
