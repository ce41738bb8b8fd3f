"""Successive halving with the capacity frontier kept, and Optuna pruning, per epoch."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial

from bench import fmt
from bench.group.cost import student_cost
from bench.search.context import TaskWorker
from bench.search.recovery import group_plan
from bench.search.space import trial_arch
from bench.stats import pareto_mask
from bench.study import Key

__all__ = ["halving_callback", "promoted", "pruning_callback", "rung_epochs"]


def pruning_callback(trial: optuna.Trial) -> Callable[[int, torch.Tensor], None]:
    """Report the trial's mean validation accuracy (``val_acc``: its distilled members, as
    :func:`bench.group.train.run_group` selects them through its ``GroupPlan``) each epoch; raise
    ``optuna.TrialPruned`` when the pruner says so."""

    def on_epoch(epoch: int, val_acc: torch.Tensor) -> None:
        trial.report(float(val_acc.mean()), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} on validation accuracy")

    return on_epoch


def rung_epochs(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """The epochs at which successive halving decides: ``min_epochs · eta^k ≤ max_epochs /
    eta``, so that stopping at a rung saves at least (1 − 1/eta) of a trial's epochs (with 30
    epochs: 3 and 9; a rung at 27 would stop nearly finished trials to save 3 epochs)."""
    out, r = [], min_epochs
    while r * eta <= max_epochs:
        out.append(r)
        r *= eta
    return out


def _fronts(acc: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """Non-dominated sorting rank (0 = Pareto front) for max ``acc``, min ``flops``."""
    rank = np.full(len(acc), -1)
    left = np.arange(len(acc))
    front = 0
    while len(left):
        mask = pareto_mask(-acc[left], flops[left])
        rank[left[mask]] = front
        left = left[~mask]
        front += 1
    return rank


def promoted(
    me: tuple[float, float], peers: Sequence[tuple[float, float]], eta: int, pareto: bool
) -> bool:
    """The rung rule of kdbench's successive halving (one rung, one trial).

    ``me`` and each of ``peers`` (the earlier trials that reached this rung) are (validation
    accuracy, FLOPs). The trial goes on when fewer than ``eta`` peers exist (warm-up), when —
    with ``pareto`` — no peer is at least as accurate with no more FLOPs (the capacity
    frontier at the rung is never halved: early in training small students trail the larger
    ones they later match, so ranking them against larger peers stops the very students the
    question is about), or when it ranks within the top ⌈n/eta⌉ of the n = len(peers) + 1
    trials. Ranking (NSGA-II's):
    Pareto front index by non-dominated sorting (max accuracy, min FLOPs) when ``pareto``,
    then larger crowding distance within the front (on accuracy and log FLOPs: a front's two
    ends — the smallest and the most accurate student — always rank first, so the small end
    of the capacity curve is not halved away), then higher accuracy; a peer with the same
    values ranks first. With the single objective it is plain accuracy (the 1-D case).
    """
    if len(peers) < eta:
        return True
    pts = [*peers, me]
    acc = np.array([p[0] for p in pts], float)
    flops = np.array([p[1] for p in pts], float) if pareto else np.zeros(len(pts))
    front = _fronts(acc, flops)
    if pareto and front[-1] == 0:
        return True
    crowd = np.zeros(len(pts))
    for f in set(front.tolist()):
        idx = np.flatnonzero(front == f)
        crowd[idx] = _crowding(acc[idx], np.log(np.maximum(flops[idx], 1.0))) if pareto else 0.0
    order = sorted(range(len(pts)), key=lambda i: (front[i], -crowd[i], -acc[i], i))
    return order.index(len(pts) - 1) < math.ceil(len(pts) / eta)


def _crowding(*objectives: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the points of one front (ends: infinite)."""
    n = len(objectives[0])
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for v in objectives:
        order = np.argsort(v, kind="stable")
        span = v[order[-1]] - v[order[0]]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (v[order[2:]] - v[order[:-2]]) / span
    return dist


def halving_callback(
    w: TaskWorker, study: optuna.Study, t: FrozenTrial | optuna.Trial
) -> Callable[[int, torch.Tensor], None]:
    """Successive halving on epochs (:func:`promoted` is the rung rule): at each rung the
    trial's mean validation accuracy over its distilled members and its FLOPs are stored on
    the trial (:attr:`Key.RUNGS`) and compared with those of the earlier trials that reached
    the rung; a trial that is not promoted stops there, recorded as pruned with the reason.
    Peers are the trials of earlier batches only (the batch is on the group's plan): all of
    them are done when a batch is asked, so the decision is the same for any number of
    workers, on resume, and whichever trial of the batch finished first."""
    ctx = w.ctx
    b, st = ctx.suite.budget, ctx.suite.student
    rungs = set(rung_epochs(b.min_epochs, b.reduction_factor, st.epochs))
    arch = trial_arch(t, ctx.suite.search, st.family)
    flops = float(student_cost(st.family, arch, ctx.task.input_shape, ctx.task.num_classes)[1])
    reached: dict[str, list[float]] = {}
    batch = int((group_plan(study, t) or {}).get("batch", t.number))

    def on_epoch(epoch: int, val_acc: torch.Tensor) -> None:
        if epoch not in rungs:
            return
        acc = float(val_acc.mean())  # the trial's distilled members (run_group's GroupPlan)
        reached[str(epoch)] = [acc, flops]
        w.ledger.set_attr(study, t.number, Key.RUNGS, dict(reached))
        peers = [
            tuple(other.user_attrs[Key.RUNGS][str(epoch)])
            for other in study.get_trials(deepcopy=False)
            if other.number < batch and str(epoch) in other.user_attrs.get(Key.RUNGS, {})
        ]
        if not promoted((acc, flops), peers, b.reduction_factor, b.objective == "pareto"):
            raise optuna.TrialPruned(
                f"stopped at epoch {epoch} by successive halving (eta {b.reduction_factor}): "
                f"val acc {fmt.pct(acc)} % at {fmt.count(flops)} FLOPs not in the top "
                f"1/{b.reduction_factor} of {len(peers) + 1} trials at this rung"
            )

    return on_epoch
