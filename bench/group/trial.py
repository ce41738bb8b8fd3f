"""One training group: the plan of its members, training, evaluation, and the rows it yields.

A *group* trains, at once, every (trial, seed) distilled student of one architecture plus the
scratch baseline of each seed not trained before for that architecture. :class:`GroupPlan`
is the only place that maps a member index of the group to (trial, seed, role); nothing else
does index arithmetic on the member dimension.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from bench.config.suite import Suite
from bench.durable.faults import fault_point
from bench.group.augment import part_teachers, pixel_scale
from bench.group.transfer import choose_bias_shift, shift_logits
from bench.records import SCHEMA_VERSION
from bench.stats import (
    file_gap,
    gap_closed_interval,
    pack_bits,
    paired_intervals,
    share,
    summarise_seeds,
    unpack_bits,
)
from bench.tasks import TaskData
from bench.teachers import PreparedTeacher
from kdcore import (
    Distiller,
    Member,
    SoftTargets,
    agreement,
    build_student,
    count_flops,
    count_params,
    expected_calibration_error,
    format_arch,
    kl_to_teacher,
)

__all__ = [
    "GroupPlan",
    "GroupResult",
    "Role",
    "Slot",
    "TrialConfig",
    "arch_cells",
    "failed_row",
    "run_group",
]


class Role(StrEnum):
    DISTILLED = "distilled"
    SCRATCH = "scratch"
    GENERALIST = "generalist"  # same trial and seed, taught by a specialist system's generalist
    FULL = "full_scratch"  # a scratch baseline on the whole training split ([transfer] subset)


@dataclass(frozen=True)
class TrialConfig:
    """What a trial adds to its group's architecture: its number, T and alpha."""

    trial: int
    temperature: float
    alpha: float


@dataclass(frozen=True)
class Slot:
    """Member ``index`` of a group: a distilled student of ``trial``, a scratch baseline, or
    the trial's student taught by the generalist alone (teacher 1)."""

    index: int
    role: Role
    seed: int
    trial: int | None = None
    temperature: float = 1.0
    alpha: float = 0.0

    def member(self) -> Member:
        teacher = 1 if self.role is Role.GENERALIST else 0
        return Member(self.seed, self.temperature, self.alpha, teacher)


@dataclass(frozen=True)
class GroupPlan:
    """Member index ↔ (trial, seed, role) of one training group."""

    slots: tuple[Slot, ...]

    @classmethod
    def build(
        cls,
        configs: Sequence[TrialConfig],
        seeds: Sequence[int],
        scratch_seeds: Sequence[int],
        generalist: bool = False,
        full_scratch: bool = False,
    ) -> GroupPlan:
        slots: list[Slot] = []
        roles = (Role.DISTILLED, Role.GENERALIST) if generalist else (Role.DISTILLED,)
        for role in roles:
            for c in configs:
                for s in seeds:
                    slots.append(Slot(len(slots), role, s, c.trial, c.temperature, c.alpha))
        for role in (Role.SCRATCH, Role.FULL) if full_scratch else (Role.SCRATCH,):
            for s in scratch_seeds:
                slots.append(Slot(len(slots), role, s))
        return cls(tuple(slots))

    def members(self) -> list[Member]:
        return [s.member() for s in self.slots]

    def distilled(self, trial: int, role: Role = Role.DISTILLED) -> list[Slot]:
        return [s for s in self.slots if s.role is role and s.trial == trial]

    def scratch(self, role: Role = Role.SCRATCH) -> list[Slot]:
        return [s for s in self.slots if s.role is role]

    def __len__(self) -> int:
        return len(self.slots)


def arch_cells(family: str, arch: Mapping[str, int | float]) -> dict[str, Any]:
    """The architecture columns of a row: the ``arch`` label and one ``arch_<name>`` each."""
    cells: dict[str, Any] = {"family": family, "arch": format_arch(family, arch)}
    cells.update({f"arch_{k}": v for k, v in arch.items()})
    return cells


class ScratchStore:
    """Scratch baselines per (family, architecture, seed): trained once, reused by trials."""

    def __init__(self, data: dict[str, dict[str, Any]] | None = None) -> None:
        # per key: the scratch student's accuracies (floats) and its packed right/wrong bits
        self.data: dict[str, dict[str, Any]] = dict(data or {})

    @staticmethod
    def key(
        family: str,
        arch: Mapping[str, int | float],
        seed: int,
        recipe: Mapping[str, float] | None = None,
    ) -> str:
        """``family:arch:seed``, plus the searched recipe keys of the group when ``[search]``
        samples some (a scratch twin trains with its group's recipe)."""
        tail = "".join(f":{k}={v!r}" for k, v in sorted((recipe or {}).items()))
        return f"{family}:{format_arch(family, arch)}:{seed}{tail}"

    def get(
        self,
        family: str,
        arch: Mapping[str, int | float],
        seed: int,
        recipe: Mapping[str, float] | None = None,
    ) -> dict[str, Any] | None:
        return self.data.get(self.key(family, arch, seed, recipe))

    def put(
        self,
        value: dict[str, Any],
        family: str,
        arch: Mapping[str, int | float],
        seed: int,
        recipe: Mapping[str, float] | None = None,
    ) -> None:
        self.data[self.key(family, arch, seed, recipe)] = value


@dataclass
class GroupResult:
    """What one group produced: per trial a row and its seed rows; the new scratch entries;
    for certification trials, the weights of the seed selected on validation (to ship)."""

    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    scratch: dict[str, dict[str, Any]]
    weights: dict[int, dict[str, Any]] = field(default_factory=dict)


def state_dict_bytes(model: torch.nn.Module) -> bytes:
    """A module's state_dict as ``torch.save`` bytes (what ``students/*.pt`` holds)."""
    import io

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def run_group(
    suite: Suite,
    run_id: str,
    task: TaskData,
    teacher: PreparedTeacher,
    scratch: ScratchStore,
    arch: dict[str, int | float],
    configs: list[TrialConfig],
    seeds: list[int],
    phase: str,
    *,
    train_device: str,
    on_epoch: Callable[[int, torch.Tensor], None] | None = None,
    scratch_seeds: list[int] | None = None,
    recipe: Mapping[str, float] | None = None,
) -> GroupResult:
    """Train one group, evaluate every member on test, count the architecture's FLOPs and
    parameters (its latency is measured once per architecture after the search,
    :mod:`bench.run.timing`).

    ``on_epoch(epoch, val_acc)`` sees the validation accuracy of the first trial's distilled
    members only (looked up in the group's :class:`GroupPlan`): what pruning and halving
    judge a trial by. ``scratch_seeds``: the seeds whose scratch baselines this group trains (default: those
    ``scratch`` lacks); fixing them fixes the group's composition, so a group trained again
    after a crash is the same group. ``recipe``: the group's searched ``[student]`` recipe
    keys (``[search] lr`` …), which every member trains with. A trial whose member diverged
    gets a failed row; the scratch entries of this group are returned (and also put into
    ``scratch``)."""
    fault_point("group")
    family = suite.student.family
    need_scratch = (
        list(scratch_seeds)
        if scratch_seeds is not None
        else [s for s in seeds if scratch.get(family, arch, s, recipe) is None]
    )
    plan = GroupPlan.build(
        configs,
        seeds,
        need_scratch,
        generalist=teacher.reference is not None,
        full_scratch=task.transfer_is_subset,
    )
    started = time.perf_counter()
    watched = [s.index for s in plan.distilled(configs[0].trial)]
    if recipe:
        suite = dataclasses.replace(suite, student=suite.student.with_values(recipe))
    distiller = _fit(
        suite,
        task,
        teacher,
        arch,
        plan,
        train_device,
        None if on_epoch is None else lambda e, acc: on_epoch(e, acc[watched]),
    )
    ev = _Evaluation.of(distiller, teacher, task, suite.transfer.bias_correction)
    new_scratch = _scratch_entries(plan, ev, family, arch, recipe)
    scratch.data.update(new_scratch)
    args = (run_id, task, teacher, family, arch, seeds, phase, plan, scratch, ev)
    group = _Group(*args, suite.certify.alpha, dict(recipe or {}))
    per_trial_time = (time.perf_counter() - started) / len(configs)
    out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    weights: dict[int, dict[str, Any]] = {}
    for cfg in configs:
        row, seed_rows = group.trial_rows(cfg)
        if row["state"] == "complete":
            row["trial_time_s"] = per_trial_time
            if phase == "certify":  # keep the file a user ships: the seed chosen on validation
                best = group.file_slot(cfg)
                weights[cfg.trial] = {
                    "seed": best.seed,
                    "state_dict": state_dict_bytes(distiller.models_[best.index]),
                }
        out.append((row, seed_rows))
    return GroupResult(out, new_scratch, weights)


def _scratch_entries(
    plan: GroupPlan,
    ev: _Evaluation,
    family: str,
    arch: dict[str, int | float],
    recipe: Mapping[str, float] | None,
) -> dict[str, dict[str, Any]]:
    """The group's new scratch baselines (:class:`ScratchStore` entries), its failed ones
    left out: accuracies, and the packed right/wrong bits that pair later trials' KD gains."""
    failed = ev.distiller.failed_
    full = {s.seed: s for s in plan.scratch(Role.FULL) if s.index not in failed}
    out: dict[str, dict[str, Any]] = {}
    for slot in plan.scratch():
        if slot.index in failed:
            continue
        value = {
            "scratch_acc": float(ev.right[slot.index].mean()),
            "scratch_val_acc": ev.distiller.val_acc_[slot.index],
            "scratch_right": pack_bits(ev.right[slot.index]),
        }
        if slot.seed in full:
            value["full_scratch_acc"] = float(ev.right[full[slot.seed].index].mean())
        out[ScratchStore.key(family, arch, slot.seed, recipe)] = value
    return out


def _fit(
    suite: Suite,
    task: TaskData,
    teacher: PreparedTeacher,
    arch: dict[str, int | float],
    plan: GroupPlan,
    train_device: str,
    on_epoch: Callable[[int, torch.Tensor], None] | None,
) -> Distiller:
    """The group's members trained at once (the generalist's students, of a specialist
    teacher, learn from teacher 1); one fit per run of consecutive slots that learn from the
    same rows (:func:`_training_parts`), joined by :meth:`Distiller.concat`."""
    st = suite.student
    aug = suite.augment.augment(task.config.seed)
    scale = pixel_scale(task) if aug is not None else None

    def teachers_of(part: _Part) -> list[Any]:
        if aug is None:
            return [t.to(train_device) for t in part.teachers]
        scratch_only = all(s.member().is_scratch for s in part.slots)
        return part_teachers(teacher, task, aug, part.kind, part.x, scratch_only, train_device)

    fits = [
        Distiller(
            family=st.family,
            arch=dict(arch),
            epochs=st.epochs,
            batch_size=st.batch_size,
            lr=st.lr,
            weight_decay=st.weight_decay,
            patience=st.patience or None,
            device=train_device,
            grouped=st.grouped,
            recipe=st.recipe(),
            augment=aug,
        ).fit(
            part.x,
            part.y,
            task.x_val,
            task.y_val,
            [s.member() for s in part.slots],
            teacher=teachers_of(part),
            on_epoch=on_epoch if i == 0 else None,  # the watched members are the first part's
            pixel_scale=scale,
            num_classes=task.num_classes,
        )
        for i, part in enumerate(_training_parts(task, teacher, plan))
    ]
    return fits[0] if len(fits) == 1 else Distiller.concat(fits)


@dataclass
class _Part:
    """Consecutive slots of a group that learn from the same rows (``kind``), with those rows
    and their teachers' cached targets."""

    kind: str
    slots: list[Slot]
    x: torch.Tensor
    y: torch.Tensor
    teachers: list[SoftTargets]


def _training_parts(task: TaskData, teacher: PreparedTeacher, plan: GroupPlan) -> list[_Part]:
    """The plan's slots in runs that learn from the same rows, with those rows and their
    teacher targets: distilled students learn from the transfer set (its labelled rows and its
    unlabeled ones, label -1), scratch twins from its labelled rows alone, full-data scratch
    baselines from the whole training split ([transfer], :mod:`bench.group.transfer`). Without a
    transfer set every slot learns from the training split: one part, one fit."""
    sources = [teacher.targets] + ([teacher.reference] if teacher.reference is not None else [])

    def rows_of(role: Role) -> str:
        if task.transfer is None or role is Role.FULL:
            return "train"
        if role is Role.SCRATCH or task.x_unlabeled is None:
            return "labelled"
        return "transfer"

    def data(kind: str) -> tuple[torch.Tensor, torch.Tensor, list[SoftTargets]]:
        if kind == "train":
            return task.x_train, task.y_train, [t["train"] for t in sources]
        x, y = task.transfer_split()
        rows = torch.as_tensor(task.transfer)
        targets = [t["train"].take(rows) for t in sources]
        if kind == "labelled":
            return x, y, targets
        assert task.x_unlabeled is not None
        unl = task.x_unlabeled
        return (
            torch.cat([x, unl]),
            torch.cat([y, torch.full((len(unl),), -1, dtype=y.dtype)]),
            [tg.cat(t["unlabeled"]) for tg, t in zip(targets, sources, strict=True)],
        )

    parts: list[_Part] = []
    for slot in plan.slots:
        kind = rows_of(slot.role)
        if parts and parts[-1].kind == kind:
            parts[-1].slots.append(slot)
        else:
            parts.append(_Part(kind, [slot], *data(kind)))
    return parts


@dataclass(frozen=True)
class _Evaluation:
    """The fitted group on the test split: what every trial's rows are computed from."""

    distiller: Distiller
    logits: torch.Tensor  # [G, n, C]: each member's test logits
    right: np.ndarray  # [G, n]: each member right on each test example
    test_lp: torch.Tensor  # the ensemble's test log-probabilities at T = 1
    ensemble_right: np.ndarray  # [n]
    y: torch.Tensor
    best_member_right: np.ndarray  # [n]: the member best on validation
    omitted: np.ndarray  # [n]: test examples of the classes omitted from the transfer set
    shifts: list[float]  # per member: the omitted classes' bias shift chosen on validation
    corrected_right: np.ndarray | None  # [G, n] with the shift (bias_correction only)

    @classmethod
    def of(
        cls,
        distiller: Distiller,
        teacher: PreparedTeacher,
        task: TaskData,
        bias_correction: bool = False,
    ) -> _Evaluation:
        logits = distiller.predict_logits(task.x_test)
        test_lp = teacher.targets["test"].log_probs(1.0)
        y = task.y_test
        val = teacher.member_val_acc
        best = max(range(len(val)), key=lambda i: val[i])  # as PreparedTeacher.best_member_acc
        member = teacher.targets["test"].member_log_probs(1.0)[best]
        omitted = np.isin(y.numpy(), task.omitted)
        shifts = [math.nan] * len(logits)
        corrected = None
        if bias_correction and task.omitted:  # chosen on validation; test is read once, below
            val_logits = distiller.predict_logits(task.x_val)
            shifts = [choose_bias_shift(v, task.y_val, task.omitted) for v in val_logits]
            corrected = np.stack(
                [
                    (shift_logits(lg, task.omitted, b).argmax(-1) == y).numpy()
                    for lg, b in zip(logits, shifts, strict=True)
                ]
            )
        return cls(
            distiller,
            logits,
            (logits.argmax(-1) == y).numpy(),
            test_lp,
            (test_lp.argmax(-1) == y).numpy(),
            y,
            (member.argmax(-1) == y).numpy(),
            omitted,
            shifts,
            corrected,
        )


@dataclass(frozen=True)
class _Group:
    """One trained group of one architecture; :meth:`trial_rows` builds a trial's rows."""

    run_id: str
    task: TaskData
    teacher: PreparedTeacher
    family: str
    arch: dict[str, int | float]
    seeds: list[int]
    phase: str
    plan: GroupPlan
    scratch: ScratchStore
    ev: _Evaluation
    alpha: float  # the certification level: certify_bound is the one-sided 1 - alpha bound
    recipe: dict[str, float] = field(default_factory=dict)  # the group's searched recipe keys

    def file_slot(self, cfg: TrialConfig) -> Slot:
        """The trial's file to ship: its distilled seed with the best validation accuracy."""
        return max(
            self.plan.distilled(cfg.trial),
            key=lambda s: (self.ev.distiller.val_acc_[s.index], -s.seed),
        )

    def file_cells(self, cfg: TrialConfig) -> dict[str, Any]:
        """The shipped file's own claim (:mod:`bench.decision.protocol`): its paired test gap with
        Newcombe's 95 % interval and the one-sided ``1 − alpha`` bound certification tests;
        the same for the scratch twin chosen the same way among the same fresh seeds."""
        ev = self.ev
        best = self.file_slot(cfg)
        right = ev.right[best.index]
        gap, low, high = file_gap(right, ev.ensemble_right)
        cells: dict[str, Any] = {
            "file_seed": best.seed,
            "file_acc": float(right.mean()),
            "file_gap": gap,
            "file_gap_ci_low": low,
            "file_gap_ci_high": high,
            "certify_bound": file_gap(right, ev.ensemble_right, level=1 - 2 * self.alpha)[2],
            "certify_bound_best_member": file_gap(
                right, ev.best_member_right, level=1 - 2 * self.alpha
            )[2],
        }
        twins = [
            (s.seed, sc)
            for s in self.plan.distilled(cfg.trial)
            if (sc := self.scratch.get(self.family, self.arch, s.seed, self.recipe))
            and "scratch_right" in sc
        ]
        if twins:
            seed, sc = max(twins, key=lambda x: (x[1]["scratch_val_acc"], -x[0]))
            twin = unpack_bits(sc["scratch_right"], len(ev.y))
            cells |= {
                "scratch_file_seed": seed,
                "scratch_file_acc": float(twin.mean()),
                "scratch_file_gap": file_gap(twin, ev.ensemble_right)[0],
                "scratch_certify_bound": file_gap(
                    twin, ev.ensemble_right, level=1 - 2 * self.alpha
                )[2],
                "scratch_certify_bound_best_member": file_gap(
                    twin, ev.best_member_right, level=1 - 2 * self.alpha
                )[2],
            }
        return cells

    def trial_rows(self, cfg: TrialConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The trial's row and its per-seed rows (a failed row when a member diverged)."""
        ev, plan = self.ev, self.plan
        slots = plan.distilled(cfg.trial)
        by_generalist = plan.distilled(cfg.trial, Role.GENERALIST)
        failures = [
            ev.distiller.failed_[s.index]
            for s in slots + by_generalist
            if s.index in ev.distiller.failed_
        ]
        if failures:
            row = failed_row(
                self.run_id,
                self.task,
                self.teacher,
                self.family,
                self.arch,
                cfg,
                self.seeds,
                self.phase,
                "fail",
                failures[0],
            )
            return row, []
        base = {
            "run_id": self.run_id,
            "task": self.task.name,
            "trial": cfg.trial,
            "phase": self.phase,
            **arch_cells(self.family, self.arch),
            "temperature": cfg.temperature,
            "alpha": cfg.alpha,
        }
        seed_rows = [
            self._seed_row(base, slot, by_generalist[i] if by_generalist else None)
            for i, slot in enumerate(slots)
        ]
        scratches = [
            self.scratch.get(self.family, self.arch, s.seed, self.recipe) or {} for s in slots
        ]
        scratch_right = (
            np.stack([unpack_bits(sc["scratch_right"], len(ev.y)) for sc in scratches])
            if all("scratch_right" in sc for sc in scratches)
            else None
        )
        intervals = paired_intervals(
            ev.right[[s.index for s in slots]],
            ev.ensemble_right,
            scratch_right,
        )
        n_params, flops = student_cost(
            self.family, self.arch, self.task.input_shape, self.task.num_classes
        )
        row = _complete_row(base, seed_rows, self.teacher, self.seeds, n_params, flops, intervals)
        row["n_test"] = len(ev.y)
        to_best = paired_intervals(ev.right[[s.index for s in slots]], ev.best_member_right, None)
        row["gap_to_best_member_ci_low"] = to_best["acc_gap_ci_low"]
        row["gap_to_best_member_ci_high"] = to_best["acc_gap_ci_high"]
        row |= _transfer_cells(self.task, seed_rows, ev, slots, scratch_right)
        row |= _specialist_cells(
            seed_rows,
            ev.right,
            by_generalist,
            slots,
            ev.ensemble_right,
        )
        if self.phase == "certify":
            row |= self.file_cells(cfg)
        row["train_time_s"] = ev.distiller.train_time_s_
        row["group_members"] = len(plan)
        row["datetime_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        return row, seed_rows

    def _seed_row(
        self, base: dict[str, Any], slot: Slot, generalist_slot: Slot | None
    ) -> dict[str, Any]:
        ev = self.ev
        sc = self.scratch.get(self.family, self.arch, slot.seed, self.recipe) or {}
        lg = ev.logits[slot.index]
        acc = float((lg.argmax(-1) == ev.y).float().mean())
        gen_acc = (
            float(ev.right[generalist_slot.index].mean())
            if generalist_slot is not None
            else math.nan
        )
        return {
            **base,
            "seed": slot.seed,
            "student_acc": acc,
            "scratch_acc": sc.get("scratch_acc", math.nan),
            "kd_gain": acc - sc.get("scratch_acc", math.nan),
            "generalist_taught_acc": gen_acc,
            "specialist_gain": acc - gen_acc,
            "student_val_acc": ev.distiller.val_acc_[slot.index],
            "scratch_val_acc": sc.get("scratch_val_acc", math.nan),
            "agreement": agreement(lg, ev.test_lp),
            "kl_to_teacher": kl_to_teacher(ev.test_lp, lg),
            "student_ece": expected_calibration_error(lg, ev.y),
            "best_epoch": ev.distiller.best_epoch_[slot.index],
            **self._transfer_seed_cells(slot, sc),
        }

    def _transfer_seed_cells(self, slot: Slot, sc: dict[str, Any]) -> dict[str, float]:
        """A seed's [transfer] cells (NaN where the run has no such thing): accuracy on the
        omitted classes' test examples, before and after the bias shift, the scratch twin's."""
        ev, i = self.ev, slot.index
        nan = math.nan

        def on_omitted(right: np.ndarray | None) -> float:
            return (
                float(right[ev.omitted].mean()) if right is not None and ev.omitted.any() else nan
            )

        twin = unpack_bits(sc["scratch_right"], len(ev.y)) if "scratch_right" in sc else None
        fixed = ev.corrected_right[i] if ev.corrected_right is not None else None
        return {
            "omitted_acc": on_omitted(ev.right[i]),
            "omitted_acc_corrected": on_omitted(fixed),
            "student_acc_corrected": float(fixed.mean()) if fixed is not None else nan,
            "bias_shift": ev.shifts[i],
            "scratch_omitted_acc": on_omitted(twin),
            "full_scratch_acc": sc.get("full_scratch_acc", nan),
        }


TRANSFER_SEED_MEANS = (
    "omitted_acc",
    "omitted_acc_corrected",
    "student_acc_corrected",
    "scratch_omitted_acc",
    "full_scratch_acc",
)


def _transfer_cells(
    task: TaskData,
    seed_rows: list[dict[str, Any]],
    ev: _Evaluation,
    slots: list[Slot],
    scratch_right: np.ndarray | None,
) -> dict[str, float]:
    """The row's [transfer] cells: the transfer set's size, the omitted classes' accuracies
    (mean over seeds, Student-t interval where replicate seeds exist), the mean bias shift and
    the full-data scratch baseline; and the bootstrap interval of ``gap_closed``."""
    x, _ = task.transfer_split()
    unlabeled = 0 if task.x_unlabeled is None else len(task.x_unlabeled)
    out: dict[str, float] = {
        "transfer_rows": len(x) + unlabeled,
        "transfer_unlabeled_rows": unlabeled,
        "n_test_omitted": int(ev.omitted.sum()),
    }
    for col in TRANSFER_SEED_MEANS:  # accuracies: the interval clipped to [0, 1]
        m, _, lo, hi = summarise_seeds([r[col] for r in seed_rows])
        out |= {col: m, f"{col}_ci_low": max(lo, 0.0), f"{col}_ci_high": min(hi, 1.0)}
    out["bias_shift"] = summarise_seeds([r["bias_shift"] for r in seed_rows])[0]
    lo, hi = (
        gap_closed_interval(ev.right[[s.index for s in slots]], scratch_right, ev.ensemble_right)
        if scratch_right is not None
        else (math.nan, math.nan)
    )
    out |= {"gap_closed_ci_low": lo, "gap_closed_ci_high": hi}
    return out


def _specialist_cells(
    seed_rows: list[dict[str, Any]],
    right: np.ndarray,
    by_generalist: list[Slot],
    slots: list[Slot],
    ensemble_right: np.ndarray,
) -> dict[str, float]:
    """Specialist teachers: the same students taught by the generalist alone, and the gain of
    the specialist-taught ones over them (paired interval, as the KD gain)."""
    nan = math.nan
    if not by_generalist:
        return {
            "generalist_taught_acc": nan,
            "specialist_gain": nan,
            "specialist_gain_ci_low": nan,
            "specialist_gain_ci_high": nan,
        }
    ci = paired_intervals(
        right[[s.index for s in slots]],
        ensemble_right,
        right[[s.index for s in by_generalist]],
    )
    return {
        "generalist_taught_acc": summarise_seeds([r["generalist_taught_acc"] for r in seed_rows])[
            0
        ],
        "specialist_gain": summarise_seeds([r["specialist_gain"] for r in seed_rows])[0],
        "specialist_gain_ci_low": ci["kd_gain_ci_low"],
        "specialist_gain_ci_high": ci["kd_gain_ci_high"],
    }


def _teacher_cells(teacher: PreparedTeacher) -> dict[str, Any]:
    return {
        "ensemble_params": None if math.isnan(teacher.params) else int(teacher.params),
        "ensemble_flops": None if math.isnan(teacher.flops) else int(teacher.flops),
        "ensemble_acc": teacher.ensemble_acc,
        "best_member_acc": teacher.best_member_acc,
        "mean_member_acc": teacher.mean_member_acc,
    }


def _complete_row(
    base: dict[str, Any],
    seed_rows: list[dict[str, Any]],
    teacher: PreparedTeacher,
    seeds: list[int],
    n_params: int,
    flops: int,
    intervals: dict[str, float],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        **base,
        **_teacher_cells(teacher),
        "schema_version": SCHEMA_VERSION,
        "state": "complete",
        "fail_reason": "",
        "n_seeds": len(seeds),
        "seed": seeds[0],
        "student_params": n_params,
        "param_ratio": share(n_params, teacher.params),
        "student_flops": flops,
        "student_macs": flops // 2,
        "flops_ratio": share(flops, teacher.flops),
        "ensemble_ece": teacher.ensemble_ece,
        "teacher_mean_max_prob": teacher.mean_max_prob_train,
        "ensemble_val_acc": teacher.ensemble_val_acc,
    }
    acc = [r["student_acc"] for r in seed_rows]
    m, sd, _, _ = summarise_seeds(acc)
    row |= intervals  # seeds (Student-t) and test examples (bench.stats.paired_intervals)
    row |= {
        "student_acc": m,
        "student_acc_std": sd,
        "acc_gap": teacher.ensemble_acc - m,
        "kd_gain": summarise_seeds([r["kd_gain"] for r in seed_rows])[0],
        "rel_acc": share(m, teacher.ensemble_acc),
        "rel_acc_ci_low": 1 - share(intervals["acc_gap_ci_high"], teacher.ensemble_acc),
        "rel_acc_ci_high": 1 - share(intervals["acc_gap_ci_low"], teacher.ensemble_acc),
    }
    scratch_acc = summarise_seeds([r["scratch_acc"] for r in seed_rows])[0]
    row["scratch_acc"] = scratch_acc
    row["gap_to_best_member"] = teacher.best_member_acc - m
    row["gap_closed"] = share(m - scratch_acc, teacher.ensemble_acc - scratch_acc)
    row["ensemble_gain_kept"] = share(
        m - teacher.best_member_acc, teacher.ensemble_acc - teacher.best_member_acc
    )
    for col in (
        "agreement",
        "kl_to_teacher",
        "student_ece",
        "student_val_acc",
        "scratch_val_acc",
        "best_epoch",
    ):
        row[col] = summarise_seeds([float(r[col]) for r in seed_rows])[0]
    row["val_gap"] = teacher.ensemble_val_acc - row["student_val_acc"]
    return row


def failed_row(
    run_id: str,
    task: TaskData,
    teacher: PreparedTeacher,
    family: str,
    arch: Mapping[str, int | float],
    cfg: TrialConfig,
    seeds: list[int],
    phase: str,
    state: str,
    reason: str,
    trial_time_s: float = math.nan,
) -> dict[str, Any]:
    """The row of a trial that failed or was pruned: its configuration, its size (params and
    FLOPs of the architecture, where the family can build it), the wall time it used before it
    stopped, and the reason."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "task": task.name,
        "trial": cfg.trial,
        "phase": phase,
        "state": state,
        "fail_reason": reason,
        **arch_cells(family, arch),
        "temperature": cfg.temperature,
        "alpha": cfg.alpha,
        "n_seeds": len(seeds),
        "seed": seeds[0],
        **_teacher_cells(teacher),
        **_size_cells(family, arch, task, teacher),
        "trial_time_s": trial_time_s,
        "datetime_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def student_cost(
    family: str,
    arch: Mapping[str, int | float],
    input_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[int, int]:
    """(parameters, forward FLOPs per sample) of one student architecture. Counted once per
    process and architecture: FlopCounterMode costs ~50 ms a call, and a trial needs the
    numbers for its thread count, its halving rungs and its row."""
    return _student_cost(family, tuple(sorted(arch.items())), tuple(input_shape), num_classes)


@functools.lru_cache(maxsize=4096)
def _student_cost(
    family: str,
    arch: tuple[tuple[str, int | float], ...],
    input_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[int, int]:
    model = build_student(family, input_shape, num_classes, **dict(arch))
    return count_params(model), count_flops(model, torch.zeros(1, *input_shape))


def _size_cells(
    family: str, arch: Mapping[str, int | float], task: TaskData, teacher: PreparedTeacher
) -> dict[str, Any]:
    """Params and FLOPs of one student of ``arch`` (empty when the family cannot build it:
    that may be why the trial failed)."""
    try:
        n_params, flops = student_cost(family, arch, task.input_shape, task.num_classes)
    except Exception:  # the failure itself is the row's fail_reason
        return {}
    return {
        "student_params": n_params,
        "param_ratio": share(n_params, teacher.params),
        "student_flops": flops,
        "student_macs": flops // 2,
        "flops_ratio": share(flops, teacher.flops),
    }
