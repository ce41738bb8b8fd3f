"""The teacher of a task: trained here (once, cached), loaded from files, or offline logits.

Sources (``[teacher]``, see :attr:`bench.suite.TeacherConfig.source`):

* ``train`` — K members of ``family``/``arch`` trained on the task (member k with seed
  ``seed + k``), cached under ``<cache>/<hash>/ensemble.pt``; the hash covers the task data and
  the teacher settings, so every later run with the same task and teacher reuses it.
* ``checkpoint`` — a kdbench ensemble file (the cache format, below).
* ``checkpoints`` — one ``state_dict`` per member of a registered ``family``/``arch``.
* ``logits`` — offline outputs in an NPZ array, ``[K, N, C]`` or ``[N, C]``, aligned with the
  rows of the task's data; ensemble accuracy and distillation work from them, and its cost
  columns are NaN unless ``family``/``arch`` are given.

``kind = "specialists"`` (always trained here, cached the same way): a generalist (one network
of ``family``/``arch``, ``epochs``), class clusters from the covariance of its predictions on
the training split, one specialist per cluster started from the generalist and trained on
half its classes / half dustbin, all combined by :class:`kdcore.SpecialistCombiner`. The
generalist alone is kept as :attr:`PreparedTeacher.reference`: the teacher that distilled
students are compared against.

Every file is read with ``torch.load(..., weights_only=True)`` or ``np.load(...,
allow_pickle=False)`` and validated *before* anything is written (:func:`load_teacher`).

Cache / ``checkpoint`` format: a dict ``{"members": [state_dict, …], "family", "arch",
"combine", "input_shape", "num_classes"}``; a specialist system adds ``"specialists":
{"class_sets", "top_n"}`` (member 0 is the generalist, member 1 + m specialist m).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.errors import InputError
from bench.rundir import atomic_write_bytes, atomic_write_text
from bench.suite import SPECIALIST_KEYS, TeacherConfig
from bench.tasks import TaskData, file_sha256
from kdcore import (
    Distiller,
    Member,
    SoftTargets,
    Specialist,
    SpecialistCombiner,
    TeacherEnsemble,
    accuracy,
    build_student,
    cluster_classes,
    count_flops,
    count_params,
    expected_calibration_error,
    format_arch,
    mean_max_prob,
    train_specialist,
)

__all__ = [
    "LoadedTeacher",
    "PreparedTeacher",
    "load_teacher",
    "prepare_teacher",
    "teacher_cache_key",
]

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


@dataclass
class LoadedTeacher:
    """A teacher read from files (or the cache) and validated, before any output is written."""

    ensemble: TeacherEnsemble | None  # None for offline logits
    logits: torch.Tensor | None  # [K, N, C] over the task's rows, for offline logits
    source: str
    sha256: str
    reused: bool


@dataclass
class PreparedTeacher:
    """The ensemble (if any), its cached outputs on every split, and its evaluation.

    ``cost_model`` is what the cost columns (params, FLOPs, latency) measure: the ensemble, or
    for offline logits with a named architecture, untrained stand-ins of that architecture.
    """

    ensemble: TeacherEnsemble | None
    cost_model: TeacherEnsemble | None
    targets: dict[str, SoftTargets]
    member_val_acc: list[float]
    member_test_acc: list[float]
    ensemble_val_acc: float
    ensemble_acc: float
    best_member_acc: float
    mean_member_acc: float
    ensemble_ece: float
    mean_max_prob_train: float
    params: float  # NaN when the architecture is unknown (offline logits)
    flops: float
    members: int
    combine: str
    kind: str
    arch: str
    source: str
    reused: bool
    key: str
    sha256: str
    outputs_sha256: str
    train_time_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    # Specialists: the generalist alone, per split (students taught by it are the baseline).
    reference: dict[str, SoftTargets] | None = None

    def summary(self) -> dict[str, object]:
        heavy = ("ensemble", "cost_model", "targets", "reference")
        data = {k: v for k, v in vars(self).items() if k not in heavy}
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def teacher_cache_key(task: TaskData, cfg: TeacherConfig) -> str:
    skip = {"checkpoint", "checkpoints", "logits", "logits_key"}
    if cfg.kind == "ensemble":  # so that ensembles cached before specialists existed stay valid
        skip |= {"kind", *SPECIALIST_KEYS}
    settings = {k: v for k, v in asdict(cfg).items() if k not in skip}
    payload = json.dumps(
        {"task": task.fingerprint(), "teacher": settings, "torch": torch.__version__},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _family(cfg: TeacherConfig) -> str:
    return cfg.family or "seed_teacher"


def _arch_label(cfg: TeacherConfig) -> str:
    return format_arch(cfg.family, cfg.arch) if cfg.family else "unknown (offline logits)"


def _build_member(cfg: TeacherConfig, task: TaskData, family: str | None = None) -> nn.Module:
    return build_student(family or _family(cfg), task.input_shape, task.num_classes, **cfg.arch)


# ---------------------------------------------------------------------- files
def _torch_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InputError(f"{what} must be an existing file. Got {str(path)!r} instead.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, or an unsafe pickle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{what} must be loadable with torch.load(weights_only=True). Got {str(path)!r} "
            f"instead ({type(exc).__name__}: {first})."
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
    arch = f"family {_family(cfg)!r} ({format_arch(_family(cfg), cfg.arch)})"
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


def _load_ensemble_file(
    path: Path, cfg: TeacherConfig, task: TaskData, what: str
) -> TeacherEnsemble:
    blob = _torch_load(path, what)
    states = blob.get("members") if isinstance(blob, dict) else None
    if not isinstance(states, list) or not states:
        raise InputError(
            f"{what} must hold a non-empty 'members' list of state_dicts. Got {str(path)!r} instead."
        )
    family = blob.get("family", _family(cfg))
    arch = blob.get("arch", cfg.arch)
    if not isinstance(arch, dict):
        arch = cfg.arch
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


def load_teacher(task: TaskData, cfg: TeacherConfig, cache_dir: Path) -> LoadedTeacher | None:
    """Read and validate the teacher's files, or the cached ensemble; None = train it.

    Raises :class:`InputError` (exit 2) on any problem; writes nothing.
    """
    if cfg.kind == "specialists" and cfg.specialists > task.num_classes:
        raise InputError(
            f"The 'specialists' parameter of [teacher] must be <= the number of classes of "
            f"{task.config.describe()} ({task.num_classes}). Got {cfg.specialists} instead."
        )
    if cfg.source == "logits":
        return LoadedTeacher(
            None, _load_logits(cfg, task), cfg.logits, file_sha256(cfg.logits), True
        )
    if cfg.source == "checkpoints":
        members = []
        for i, p in enumerate(cfg.checkpoints):
            path = Path(p)
            state = _torch_load(path, f"Teacher checkpoint {i}")
            members.append(
                _load_member(_build_member(cfg, task), state, f"Teacher checkpoint {i}", path, cfg)
            )
        paths = [Path(p) for p in cfg.checkpoints]
        return LoadedTeacher(
            TeacherEnsemble(members, combine=cfg.combine),
            None,
            ", ".join(cfg.checkpoints),
            _sha256_files(paths),
            True,
        )
    if cfg.source == "checkpoint":
        path = Path(cfg.checkpoint)
        ens = _load_ensemble_file(path, cfg, task, "The 'checkpoint' parameter of [teacher]")
        return LoadedTeacher(ens, None, str(path), file_sha256(path), True)
    cache_file = cache_dir / teacher_cache_key(task, cfg) / "ensemble.pt"
    if cache_file.is_file():
        ens = _load_ensemble_file(cache_file, cfg, task, f"The cached teacher {cache_file}")
        return LoadedTeacher(ens, None, str(cache_file), file_sha256(cache_file), True)
    return None


def _save(path: Path, ensemble: TeacherEnsemble, cfg: TeacherConfig, task: TaskData) -> None:
    buf = io.BytesIO()
    blob: dict[str, Any] = {
        "members": [m.state_dict() for m in ensemble.members],
        "family": _family(cfg),
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


def _train_members(
    task: TaskData,
    cfg: TeacherConfig,
    device: str,
    on_epoch: Callable[[int, int], None] | None,
    n: int,
) -> Distiller:
    """Train ``n`` teacher networks (member k with seed ``seed + k``), best epoch on val."""
    distiller = Distiller(
        family=_family(cfg),
        arch=dict(cfg.arch),
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
        [Member(seed=cfg.seed + k) for k in range(n)],
        on_epoch=None if on_epoch is None else lambda e, _acc: on_epoch(e, cfg.epochs),
    )
    if distiller.failed_:
        raise RuntimeError(f"teacher training diverged: {distiller.failed_}")
    return distiller


def _train_specialist_system(
    task: TaskData,
    cfg: TeacherConfig,
    device: str,
    on_epoch: Callable[[int, int], None] | None,
) -> tuple[TeacherEnsemble, float]:
    """Generalist, class clusters of its confusions, one specialist per cluster (see
    :mod:`kdcore.specialists`); returns the system and its training time."""
    start = time.perf_counter()
    generalist = _train_members(task, cfg, device, on_epoch, 1).models_[0]
    with torch.no_grad():
        probs = torch.softmax(generalist(task.x_train), -1)
    k = cfg.specialists or max(1, task.num_classes // 5)
    sets = cluster_classes(
        probs, k, min_size=cfg.cluster_min, max_size=cfg.cluster_max or None, seed=cfg.seed
    )
    if not sets:
        raise InputError(
            f"The 'cluster_min' parameter of [teacher] must leave at least one class cluster "
            f"({k} clusters of the generalist's confusions were all smaller). Got "
            f"{cfg.cluster_min} instead."
        )
    specialists, val_acc = [], []
    for m, classes in enumerate(sets):
        model, acc = train_specialist(
            generalist,
            _family(cfg),
            dict(cfg.arch),
            classes,
            task.x_train,
            task.y_train,
            task.x_val,
            task.y_val,
            epochs=cfg.specialist_epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed + 1 + m,
            device=device,
        )
        specialists.append(model)
        val_acc.append(acc)
        log.info("specialist %d/%d (%d classes): val acc %.4f", m + 1, len(sets), len(classes), acc)
    ensemble = TeacherEnsemble(
        [generalist.eval(), *specialists], combine=SpecialistCombiner(sets, cfg.top_n)
    )
    ensemble.specialist_info = {"class_sets": sets, "top_n": cfg.top_n, "val_acc": val_acc}
    return ensemble, time.perf_counter() - start


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

    ``on_epoch(epoch, epochs)`` is called after each epoch of training (progress)."""
    key = teacher_cache_key(task, cfg)
    train_time = 0.0
    cache_file = cache_dir / key / "ensemble.pt"
    if loaded is None and cfg.kind == "specialists":
        ensemble, train_time = _train_specialist_system(task, cfg, device, on_epoch)
    elif loaded is None:
        distiller = _train_members(task, cfg, device, on_epoch, cfg.members)
        ensemble = TeacherEnsemble(distiller.models_, combine=cfg.combine)
        train_time = distiller.train_time_s_
    if loaded is None:
        _save(cache_file, ensemble, cfg, task)
        atomic_write_text(
            cache_file.with_name("meta.json"),
            json.dumps(
                {"teacher": asdict(cfg), "task": asdict(task.config), "torch": torch.__version__},
                indent=2,
                default=list,
            ),
        )
        loaded = LoadedTeacher(ensemble, None, str(cache_file), file_sha256(cache_file), False)
    run_ensemble: TeacherEnsemble | None = None
    if loaded.ensemble is not None:
        run_ensemble = loaded.ensemble.eval()
        targets = run_ensemble.cache_outputs({s: task.split(s)[0] for s in SPLITS})
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
                [_build_member(cfg, task) for _ in range(len(loaded.logits))], combine=cfg.combine
            ).eval()
            if cfg.family
            else None
        )
    val_lp, test_lp = targets["val"].log_probs(1.0), targets["test"].log_probs(1.0)
    member_val = [accuracy(v, task.y_val) for v in targets["val"].member_log_probs(1.0)]
    member_test = [accuracy(v, task.y_test) for v in targets["test"].member_log_probs(1.0)]
    best = max(range(len(member_val)), key=lambda i: member_val[i])  # chosen on val, not test
    x1 = task.x_train[:1]
    prepared = PreparedTeacher(
        ensemble=run_ensemble,
        cost_model=cost_model,
        targets=targets,
        member_val_acc=member_val,
        member_test_acc=member_test,
        ensemble_val_acc=accuracy(val_lp, task.y_val),
        ensemble_acc=accuracy(test_lp, task.y_test),
        best_member_acc=member_test[best],
        mean_member_acc=sum(member_test) / len(member_test),
        ensemble_ece=expected_calibration_error(test_lp, task.y_test),
        mean_max_prob_train=mean_max_prob(targets["train"].log_probs(1.0)),
        params=float(count_params(cost_model)) if cost_model is not None else math.nan,
        flops=float(count_flops(cost_model, x1)) if cost_model is not None else math.nan,
        members=targets["train"].num_members,
        combine=targets["train"].combine,
        kind=cfg.source,
        arch=_arch_label(cfg),
        source=loaded.source,
        reused=loaded.reused,
        key=key,
        sha256=loaded.sha256,
        outputs_sha256=_outputs_sha256(targets),
        train_time_s=train_time,
    )
    info = run_ensemble.specialist_info if run_ensemble is not None else None
    if run_ensemble is not None and info is not None:
        prepared.reference = {s: targets[s].member(0) for s in SPLITS}
        prepared.extra["specialists"] = specialist_summary(
            task, run_ensemble, targets["test"], info
        )
    return prepared


def specialist_summary(
    task: TaskData, system: TeacherEnsemble, test: SoftTargets, info: dict[str, Any]
) -> dict[str, Any]:
    """What the specialists add on the test split: the generalist against the whole system
    (paired 95 % interval of the difference), the breakdown by how many specialists cover the
    true class and by how many took part (the shape of Hinton et al.'s Table 4), the clusters
    and the extra cost in parameters and FLOPs."""
    from bench.stats import paired_intervals

    y = task.y_test
    gen_lp = test.member_log_probs(1.0)[0]
    gen_right = (gen_lp.argmax(-1) == y).numpy()
    sys_right = (test.log_probs(1.0).argmax(-1) == y).numpy()
    sets = [list(s) for s in info["class_sets"]]
    combiner = system.combiner
    assert isinstance(combiner, SpecialistCombiner)
    active = combiner.active(gen_lp).sum(-1).numpy()
    covering = np.zeros(task.num_classes, dtype=np.int64)
    for s in sets:
        covering[s] += 1
    cover = covering[y.numpy()]

    def breakdown(groups: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for g in sorted(set(groups.tolist())):
            rows = groups == g
            out.append(
                {
                    "value": int(g),
                    "n_test": int(rows.sum()),
                    "generalist_acc": float(gen_right[rows].mean()),
                    "system_acc": float(sys_right[rows].mean()),
                    "changed_to_right": int((sys_right & ~gen_right & rows).sum()),
                    "changed_to_wrong": int((gen_right & ~sys_right & rows).sum()),
                }
            )
        return out

    ci = paired_intervals(sys_right[None], gen_right, None, seed=0)
    generalist = system.members[0]
    x1 = task.x_train[:1]
    return {
        "class_sets": sets,
        "class_names": [[task.class_names[c] for c in s] for s in sets],
        "top_n": int(info["top_n"]),
        "specialist_val_acc": [float(a) for a in info.get("val_acc", [])],
        "generalist_acc": float(gen_right.mean()),
        "system_acc": float(sys_right.mean()),
        # paired_intervals' gap is generalist - system; the gain is its negation
        "system_gain_ci_low": -ci["acc_gap_ci_high"],
        "system_gain_ci_high": -ci["acc_gap_ci_low"],
        "n_test": len(y),
        "by_covering": breakdown(cover),
        "by_active": breakdown(active),
        "generalist_params": count_params(generalist),
        "generalist_flops": count_flops(generalist, x1),
        "system_params": count_params(system),
        "system_network_flops": count_flops(generalist, x1)
        + sum(count_flops(m, x1) for m in system.members[1:]),
    }


def teacher_warnings(task: TaskData, cfg: TeacherConfig, teacher: PreparedTeacher) -> list[str]:
    """What a careful practitioner would say about this teacher before trusting it."""
    out: list[str] = []
    if cfg.source == "train":
        steps = math.ceil(len(task.y_train) / cfg.batch_size)
        if steps < 10:
            out.append(
                f"the teacher trains with {steps} optimiser step(s) per epoch ({len(task.y_train)} "
                f"training rows / batch {cfg.batch_size}), {steps * cfg.epochs} in all: it may be "
                "undertrained; lower [teacher] batch_size or raise epochs."
            )
    uniform = 1.0 / task.num_classes
    if teacher.mean_max_prob_train < uniform + 0.1 * (1 - uniform):
        out.append(
            f"the teacher's outputs are nearly uniform on the transfer set (mean max-probability "
            f"{teacher.mean_max_prob_train:.3f}; uniform is {uniform:.3f}): its soft targets carry "
            "little to distil."
        )
    return out
