"""The rows a trained group yields: per trial its row (means over seeds, intervals, the
shipped file's claim at certification, transfer and specialist cells) and its seed rows; and the
row of a trial that failed or was pruned."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench.decision.protocol import file_choice
from bench.group.cost import student_cost
from bench.group.evaluate import Evaluation
from bench.group.plan import GroupPlan, GroupSpec, Role, Slot, TrialConfig
from bench.group.scratch import ScratchStore
from bench.records import SCHEMA_VERSION
from bench.stats import (
    accuracy_interval,
    discordant,
    gap_closed_interval,
    paired_bound,
    paired_interval,
    paired_intervals,
    share,
    summarise_seeds,
    unpack_bits,
)
from bench.tasks import TaskData
from bench.teachers import PreparedTeacher
from kdcore import agreement, kl_to_teacher
from kdcore.families import format_arch
from kdcore.metrics import expected_calibration_error

__all__ = ["GroupRows", "arch_cells", "failed_row"]


def arch_cells(family: str, arch: Mapping[str, int | float]) -> dict[str, Any]:
    """The architecture columns of a row: the ``arch`` label and one ``arch_<name>`` each."""
    cells: dict[str, Any] = {"family": family, "arch": format_arch(family, arch)}
    cells.update({f"arch_{k}": v for k, v in arch.items()})
    return cells


@dataclass(frozen=True)
class GroupRows:
    """One trained group of one architecture; :meth:`trial_rows` builds a trial's rows."""

    spec: GroupSpec
    plan: GroupPlan
    scratch: ScratchStore
    ev: Evaluation

    def file_slot(self, cfg: TrialConfig) -> Slot:
        """The trial's file to ship: its distilled seed with the best validation accuracy
        (:func:`bench.decision.protocol.file_choice`)."""
        slots = self.plan.distilled(cfg.trial)
        val = self.ev.distiller.val_acc_
        return slots[file_choice([val[s.index] for s in slots], [s.seed for s in slots])]

    def file_cells(self, cfg: TrialConfig) -> dict[str, Any]:
        """The shipped file's own claim (:mod:`bench.decision.protocol`): its paired test gap
        to the ensemble with Tango's 95 % interval and the one-sided ``1 − level`` bound
        certification tests (``spec.level``: the round's share of alpha); the same for the
        scratch twin chosen the same way among the same fresh seeds, and against the best
        member; the discordant counts of every pair (what any other bound needs); and the
        file's own KD gain over its twin."""
        ev, n, level = self.ev, len(self.ev.y), 1 - self.spec.level
        best = self.file_slot(cfg)
        right = ev.right[best.index]
        ens_not_file, file_not_ens = discordant(ev.ensemble_right, right)
        best_not_file, file_not_best = discordant(ev.best_member_right, right)
        low, high = paired_interval(ens_not_file, file_not_ens, n)
        cells: dict[str, Any] = {
            "file_seed": best.seed,
            "file_acc": float(right.mean()),
            "file_gap": (ens_not_file - file_not_ens) / n,
            "file_gap_ci_low": low,
            "file_gap_ci_high": high,
            "certify_bound": paired_bound(ens_not_file, file_not_ens, n, level),
            "certify_bound_best_member": paired_bound(best_not_file, file_not_best, n, level),
            "ens_not_file": ens_not_file,
            "file_not_ens": file_not_ens,
            "best_not_file": best_not_file,
            "file_not_best": file_not_best,
        }
        cells |= self.form_cells(best)
        twins = [
            (s.seed, sc)
            for s in self.plan.distilled(cfg.trial)
            if (sc := self.scratch.get(self.spec.family, self.spec.arch, s.seed, self.spec.recipe))
            and "scratch_right" in sc
        ]
        if not twins:
            return cells
        seed, sc = max(twins, key=lambda x: (x[1]["scratch_val_acc"], -x[0]))
        twin = unpack_bits(sc["scratch_right"], n)
        ens_not_twin, twin_not_ens = discordant(ev.ensemble_right, twin)
        best_not_twin, twin_not_best = discordant(ev.best_member_right, twin)
        file_not_twin, twin_not_file = discordant(right, twin)
        gain_low, gain_high = paired_interval(file_not_twin, twin_not_file, n)
        return cells | {
            "scratch_file_seed": seed,
            "scratch_file_acc": float(twin.mean()),
            "scratch_file_gap": (ens_not_twin - twin_not_ens) / n,
            "scratch_certify_bound": paired_bound(ens_not_twin, twin_not_ens, n, level),
            "scratch_certify_bound_best_member": paired_bound(
                best_not_twin, twin_not_best, n, level
            ),
            "ens_not_twin": ens_not_twin,
            "twin_not_ens": twin_not_ens,
            "best_not_twin": best_not_twin,
            "twin_not_best": twin_not_best,
            "file_not_twin": file_not_twin,
            "twin_not_file": twin_not_file,
            "file_kd_gain": (file_not_twin - twin_not_file) / n,
            "file_kd_gain_ci_low": gain_low,
            "file_kd_gain_ci_high": gain_high,
        }

    def form_cells(self, best: Slot) -> dict[str, Any]:
        """Each deployed form of the file (``[ship] forms``, :mod:`bench.latency.forms`): built
        from its fp32 ONNX graph, run in onnxruntime on validation and on the test split
        (read once, here, as the file's), and its own paired gap to the ensemble with the
        one-sided bound certification tests. A form that cannot be built or run gets NaN cells
        and ``form_error`` (its bound fails the fixed sequence)."""
        forms = self.spec.forms
        if forms == ("fp32",):
            return {}
        from bench.latency.forms import FormModel, build_form, task_calibration, task_logits
        from bench.latency.onnx import onnx_bytes

        task, ev, n = self.spec.task, self.ev, len(self.ev.y)
        level = 1 - self.spec.level
        vocab = task.data_params.get("vocab_size") if task.input_kind == "tokens" else None
        cells: dict[str, Any] = {"ship_forms": ",".join(forms)}
        errors = []
        try:
            fp32 = onnx_bytes(ev.distiller.models_[best.index], task.input_shape, vocab=vocab)
            cells["file_bytes_fp32"] = len(fp32)
        except Exception as exc:  # a family torch.onnx cannot export: no form at all
            return cells | {"form_error": f"ONNX export: {type(exc).__name__}: {exc}"[:300]}
        calib = task_calibration(task, self.spec.calibration_rows)
        for form in forms:
            if form == "fp32":
                continue
            try:
                graph = build_form(fp32, form, calib)
                model = FormModel(graph, form)
                val_right = task_logits(model, task, "val").argmax(-1) == task.y_val.numpy()
                pred = task_logits(model, task, "test").argmax(-1)
                right = pred == ev.y.numpy()
            except Exception as exc:  # recorded, and the form is not certified
                errors.append(f"{form}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            a, b = discordant(ev.ensemble_right, right)
            low, high = paired_interval(a, b, n)
            fp32_pred = ev.logits[best.index].argmax(-1).numpy()
            cells |= {
                f"val_acc_{form}": float(val_right.mean()),
                f"file_acc_{form}": float(right.mean()),
                f"file_gap_{form}": (a - b) / n,
                f"file_gap_ci_low_{form}": low,
                f"file_gap_ci_high_{form}": high,
                f"certify_bound_{form}": paired_bound(a, b, n, level),
                f"ens_not_file_{form}": a,
                f"file_not_ens_{form}": b,
                f"file_bytes_{form}": len(graph),
                f"form_agreement_{form}": float((pred == fp32_pred).mean()),
            }
        if errors:
            cells["form_error"] = "; ".join(errors)
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
            row = failed_row(self.spec, cfg, "fail", failures[0])
            return row, []
        base = {
            "run_id": self.spec.run_id,
            "task": self.spec.task.name,
            "trial": cfg.trial,
            "phase": self.spec.phase,
            **arch_cells(self.spec.family, self.spec.arch),
            "temperature": cfg.temperature,
            "alpha": cfg.alpha,
        }
        seed_rows = [
            self._seed_row(base, slot, by_generalist[i] if by_generalist else None)
            for i, slot in enumerate(slots)
        ]
        scratches = [
            self.scratch.get(self.spec.family, self.spec.arch, s.seed, self.spec.recipe) or {}
            for s in slots
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
            self.spec.family, self.spec.arch, self.spec.task.input_shape, self.spec.task.num_classes
        )
        row = _complete_row(
            base, seed_rows, self.spec.teacher, self.spec.seeds, n_params, flops, intervals
        )
        row["n_test"] = len(ev.y)
        to_best = paired_intervals(ev.right[[s.index for s in slots]], ev.best_member_right, None)
        row["gap_to_best_member_ci_low"] = to_best["acc_gap_ci_low"]
        row["gap_to_best_member_ci_high"] = to_best["acc_gap_ci_high"]
        row["ens_not_best"], row["best_not_ens"] = discordant(
            ev.ensemble_right, ev.best_member_right
        )
        full_right = (
            np.stack([unpack_bits(sc["full_scratch_right"], len(ev.y)) for sc in scratches])
            if all("full_scratch_right" in sc for sc in scratches) and scratches
            else None
        )
        row |= _transfer_cells(self.spec.task, seed_rows, ev, slots, scratch_right, full_right)
        row |= _specialist_cells(
            seed_rows,
            ev.right,
            by_generalist,
            slots,
            ev.ensemble_right,
        )
        if self.spec.phase == "certify":
            row |= self.file_cells(cfg)
        row["train_time_s"] = ev.distiller.train_time_s_
        row["group_members"] = len(plan)
        row["datetime_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        return row, seed_rows

    def _seed_row(
        self, base: dict[str, Any], slot: Slot, generalist_slot: Slot | None
    ) -> dict[str, Any]:
        ev = self.ev
        sc = self.scratch.get(self.spec.family, self.spec.arch, slot.seed, self.spec.recipe) or {}
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


def _transfer_rights(
    ev: Evaluation,
    slots: list[Slot],
    scratch_right: np.ndarray | None,
    full_right: np.ndarray | None,
) -> dict[str, np.ndarray | None]:
    """Per transfer accuracy column, the seeds' right/wrong predictions it averages
    (``[S, n]`` on the test examples it is measured on; None where the run has none)."""
    idx = [s.index for s in slots]
    omitted = ev.omitted if ev.omitted.any() else None
    fixed = ev.corrected_right[idx] if ev.corrected_right is not None else None

    def on_omitted(right: np.ndarray | None) -> np.ndarray | None:
        return None if right is None or omitted is None else right[:, omitted]

    return {
        "omitted_acc": on_omitted(ev.right[idx]),
        "omitted_acc_corrected": on_omitted(fixed),
        "student_acc_corrected": fixed,
        "scratch_omitted_acc": on_omitted(scratch_right),
        "full_scratch_acc": full_right,
    }


def _transfer_cells(
    task: TaskData,
    seed_rows: list[dict[str, Any]],
    ev: Evaluation,
    slots: list[Slot],
    scratch_right: np.ndarray | None,
    full_right: np.ndarray | None,
) -> dict[str, float]:
    """The row's [transfer] cells: the transfer set's size, the omitted classes' accuracies
    and the full-data scratch baseline (mean over seeds; intervals with the seeds' and the
    test examples' error, :func:`bench.stats.accuracy_interval`), the mean bias shift; and
    the bootstrap interval of ``gap_closed``."""
    labelled = len(task.y_train) if task.transfer is None else len(task.transfer)
    unlabeled = 0 if task.x_unlabeled is None else len(task.x_unlabeled)
    out: dict[str, float] = {
        "transfer_rows": labelled + unlabeled,
        "transfer_unlabeled_rows": unlabeled,
        "n_test_omitted": int(ev.omitted.sum()),
    }
    for col, right in _transfer_rights(ev, slots, scratch_right, full_right).items():
        m = summarise_seeds([r[col] for r in seed_rows])[0]
        lo, hi = accuracy_interval(right) if right is not None else (math.nan, math.nan)
        out |= {col: m, f"{col}_ci_low": lo, f"{col}_ci_high": hi}
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
    seeds: Sequence[int],
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
    spec: GroupSpec, cfg: TrialConfig, state: str, reason: str, trial_time_s: float = math.nan
) -> dict[str, Any]:
    """The row of a trial that failed or was pruned: its configuration, its size (params and
    FLOPs of the architecture, where the family can build it), the wall time it used before it
    stopped, and the reason."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "task": spec.task.name,
        "trial": cfg.trial,
        "phase": spec.phase,
        "state": state,
        "fail_reason": reason,
        **arch_cells(spec.family, spec.arch),
        "temperature": cfg.temperature,
        "alpha": cfg.alpha,
        "n_seeds": len(spec.seeds),
        "seed": spec.seeds[0],
        **_teacher_cells(spec.teacher),
        **_size_cells(spec),
        "trial_time_s": trial_time_s,
        "datetime_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _size_cells(spec: GroupSpec) -> dict[str, Any]:
    """Params and FLOPs of one student of the group's architecture (empty when the family
    cannot build it: that may be why the trial failed)."""
    teacher = spec.teacher
    try:
        n_params, flops = student_cost(
            spec.family, spec.arch, spec.task.input_shape, spec.task.num_classes
        )
    except Exception:  # the failure itself is the row's fail_reason
        return {}
    return {
        "student_params": n_params,
        "param_ratio": share(n_params, teacher.params),
        "student_flops": flops,
        "student_macs": flops // 2,
        "flops_ratio": share(flops, teacher.flops),
    }
