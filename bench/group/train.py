"""One training group, end to end: its plan, the fit, the evaluation on test, its rows.

:func:`run_group` is the group's one entry point (:mod:`bench.search.trials` calls it for the
trials asked together; certification for one candidate)."""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.config.suite import Suite
from bench.durable.faults import fault_point
from bench.group.evaluate import Evaluation
from bench.group.fit import fit_group
from bench.group.plan import GroupPlan, GroupSpec, TrialConfig
from bench.group.rows import GroupRows
from bench.group.scratch import ScratchStore, scratch_entries
from bench.group.stream import StreamFit, drop_checkpoints, fit_stream_group, train_path

__all__ = ["GroupResult", "run_group", "state_dict_bytes"]


@dataclass
class GroupResult:
    """What one group produced: per trial a row and its seed rows; the new scratch entries;
    for certification trials, the weights of the seed selected on validation (to ship)."""

    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    scratch: dict[str, dict[str, Any]]
    weights: dict[int, dict[str, Any]] = field(default_factory=dict)


def state_dict_bytes(model: torch.nn.Module) -> bytes:
    """A module's state_dict as ``torch.save`` bytes (what ``students/*.pt`` holds)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def run_group(
    suite: Suite,
    spec: GroupSpec,
    configs: list[TrialConfig],
    scratch: ScratchStore,
    *,
    train_device: str,
    on_epoch: Callable[[int, torch.Tensor], None] | None = None,
    scratch_seeds: list[int] | None = None,
) -> GroupResult:
    """Train one group (``spec``: its architecture, seeds, phase and searched recipe; one
    distilled student per trial of ``configs`` and seed), evaluate every member on test,
    count the architecture's FLOPs and parameters (its latency is measured once per
    architecture after the search, :mod:`bench.run.timing`).

    ``on_epoch(epoch, val_acc)`` sees the validation accuracy of the first trial's distilled
    members only (looked up in the group's :class:`GroupPlan`): what pruning and halving
    judge a trial by. ``scratch_seeds``: the seeds whose scratch baselines this group trains
    (default: those ``scratch`` lacks); fixing them fixes the group's composition, so a group
    trained again after a crash is the same group. Every member trains with the group's
    searched ``[student]`` recipe keys (``spec.recipe``). A trial whose member diverged gets
    a failed row; the scratch entries of this group are returned (and also put into
    ``scratch``)."""
    fault_point("group")
    family, arch, recipe = spec.family, spec.arch, spec.recipe
    need_scratch = (
        list(scratch_seeds)
        if scratch_seeds is not None
        else [s for s in spec.seeds if scratch.get(family, arch, s, recipe) is None]
    )
    plan = GroupPlan.build(
        configs,
        spec.seeds,
        need_scratch,
        generalist=spec.teacher.reference is not None,
        full_scratch=spec.task.transfer_is_subset,
    )
    started = time.perf_counter()
    watched = [s.index for s in plan.distilled(configs[0].trial)]
    if recipe:
        suite = dataclasses.replace(suite, student=suite.student.with_values(recipe))
    path = train_path(suite, spec.task)
    distiller = _fit(path, suite, spec, plan, train_device, on_epoch, watched)
    ev = Evaluation.of(distiller, spec.teacher, spec.task, suite.transfer.bias_correction)
    new_scratch = scratch_entries(plan, ev, family, arch, recipe)
    scratch.data.update(new_scratch)
    group = GroupRows(spec, plan, scratch, ev)
    per_trial_time = (time.perf_counter() - started) / len(configs)
    out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    weights: dict[int, dict[str, Any]] = {}
    for cfg in configs:
        row, seed_rows = group.trial_rows(cfg)
        if row["state"] == "complete":
            row["trial_time_s"] = per_trial_time
            if spec.phase == "certify":  # keep the file a user ships: the seed chosen on validation
                best = group.file_slot(cfg)
                weights[cfg.trial] = {
                    "seed": best.seed,
                    "state_dict": state_dict_bytes(distiller.models_[best.index]),
                }
        if path == "stream":
            row |= stream_cells(distiller, spec)
        out.append((row, seed_rows))
    if path == "stream":
        drop_checkpoints(spec, plan)
    return GroupResult(out, new_scratch, weights)


def _fit(
    path: str,
    suite: Suite,
    spec: GroupSpec,
    plan: GroupPlan,
    train_device: str,
    on_epoch: Callable[[int, torch.Tensor], None] | None,
    watched: list[int],
) -> Any:
    """The group's members trained on ``path``: a :class:`kdcore.Distiller` (grouped) or a
    :class:`bench.group.stream.StreamFit` (streamed), both read the same way by the rows."""
    if path == "grouped":
        return fit_group(
            suite,
            spec,
            plan,
            train_device,
            None if on_epoch is None else lambda e, acc: on_epoch(e, acc[watched]),
        )
    try:
        return fit_stream_group(suite, spec, plan, train_device, on_epoch, watched)
    except FileNotFoundError:
        raise  # a vanished data file stops the run: --resume continues from the files
    except Exception:
        drop_checkpoints(spec, plan)  # a pruned or failed trial is final: nothing to resume
        raise


def stream_cells(fit: StreamFit, spec: GroupSpec) -> dict[str, Any]:
    """What the streamed path records beside the row: the autocast dtype, channels_last, the
    epochs a resumed trial found in its checkpoints, the stored soft targets."""
    from bench.teachers.streamed import targets_kind

    teacher = spec.teacher
    file = teacher.train_file
    top_k = 0 if file is None or file.top_k is None else int(file.top_k)
    return {
        "train_amp": fit.amp,
        "train_channels_last": fit.channels_last,
        "resumed_epochs": fit.resumed_epochs,
        "teacher_targets": targets_kind(top_k, teacher.combine, teacher.members),
        "teacher_top_k": top_k,
    }
