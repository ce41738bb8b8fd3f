"""Training recipes: the optimiser and its learning-rate schedule.

A :class:`Recipe` is what a :class:`~kdcore.Distiller` optimises with (the base learning rate
and weight decay stay Distiller arguments). Every group backend (dense, batched, vmap) follows
the same recipe, and the schedule is a function of the step number alone, so every member of
a group has the same learning rate at a step whatever the others do (a stopped member simply
takes no more steps).

The learning rate of step ``t`` (0-based, ``S`` steps per epoch, ``E`` epochs,
``N = E·S`` steps, ``W = warmup_epochs·S`` warm-up steps) is ``lr · f(t)``:

* warm-up (any schedule but ``onecycle``, which warms up by itself): ``f(t) = (t + 1) / W``
  for ``t < W``; the schedule below then runs over the remaining ``N − W`` steps,
  ``u = t − W``;
* ``constant``: ``f = 1``;
* ``cosine``: ``f = (1 + cos(π u / (N − W))) / 2`` (torch's ``CosineAnnealingLR`` stepped
  per batch with ``T_max = N − W``, ``eta_min = 0``);
* ``step``: ``f = gamma^k``, ``k`` the number of ``milestones`` (epochs, 0-based) at or
  below the step's epoch ``⌊t / S⌋`` (torch's ``MultiStepLR`` stepped per epoch);
* ``onecycle``: torch's ``OneCycleLR`` (cosine annealing, ``pct_start = 0.3``,
  ``div_factor = 25``, ``final_div_factor = 10⁴``, ``max_lr = lr``) over the ``N`` steps.

``label_smoothing`` ε smooths the hard-label term's target to ``(1 − ε)·onehot(y) + ε/C``
(the soft term is the teacher's own). Optimisers: ``adam`` (Adam, L2 weight decay added to the gradient, as ``torch.optim.Adam``),
``adamw`` (decoupled weight decay, ``torch.optim.AdamW``), ``sgd`` (``torch.optim.SGD`` with
``momentum`` and optionally Nesterov momentum, no dampening).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from kdcore.exceptions import ParameterError

log = logging.getLogger(__name__)

__all__ = ["OPTIMIZERS", "SCHEDULES", "Recipe", "make_optimizer"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "onecycle")

# torch.optim.lr_scheduler.OneCycleLR's defaults
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


@dataclass(frozen=True)
class Recipe:
    """The optimiser and learning-rate schedule of a training run (module docstring)."""

    optimizer: str = "adam"
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "constant"
    warmup_epochs: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    label_smoothing: float = 0.0  # ε of the hard term's target (kdcore.losses)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(
                f"optimizer must be one of {OPTIMIZERS}. Got {self.optimizer!r} instead."
            )
        if self.schedule not in SCHEDULES:
            raise ParameterError(
                f"schedule must be one of {SCHEDULES}. Got {self.schedule!r} instead."
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ParameterError(f"momentum must be in [0, 1). Got {self.momentum} instead.")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0.0):
            raise ParameterError(
                "nesterov needs optimizer 'sgd' with momentum > 0. Got optimizer "
                f"{self.optimizer!r}, momentum {self.momentum} instead."
            )
        if self.warmup_epochs < 0:
            raise ParameterError(f"warmup_epochs must be >= 0. Got {self.warmup_epochs} instead.")
        if self.warmup_epochs and self.schedule == "onecycle":
            raise ParameterError(
                "warmup_epochs must be 0 with schedule 'onecycle' (it warms up by itself). "
                f"Got {self.warmup_epochs} instead."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ParameterError(
                f"label_smoothing must be in [0, 1). Got {self.label_smoothing} instead."
            )
        if not 0.0 < self.gamma <= 1.0:
            raise ParameterError(f"gamma must be in (0, 1]. Got {self.gamma} instead.")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(
            set(self.milestones)
        ):
            raise ParameterError(
                f"milestones must be increasing epochs >= 1. Got {list(self.milestones)} instead."
            )

    def lr_factor(self, step: int, steps_per_epoch: int, epochs: int) -> float:
        """``f(t)``: the learning rate of step ``step`` as a multiple of the base rate."""
        total = epochs * steps_per_epoch
        warm = min(self.warmup_epochs * steps_per_epoch, total)
        if step < warm:
            return (step + 1) / warm
        u, span = step - warm, max(total - warm, 1)
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "cosine":
            return (1.0 + math.cos(math.pi * u / span)) / 2.0
        if self.schedule == "step":
            epoch = step // steps_per_epoch
            return float(self.gamma ** sum(1 for m in self.milestones if m <= epoch))
        return _one_cycle(step, total)

    def describe(self) -> str:
        """One line: ``sgd (momentum 0.9, nesterov), cosine, warm-up 1 epoch``."""
        opt = self.optimizer
        if opt == "sgd":
            opt += f" (momentum {self.momentum:g}{', nesterov' if self.nesterov else ''})"
        sched = self.schedule
        if sched == "step":
            sched += f" (milestones {list(self.milestones)}, gamma {self.gamma:g})"
        warm = f", warm-up {self.warmup_epochs} epoch(s)" if self.warmup_epochs else ""
        smooth = f", label smoothing {self.label_smoothing:g}" if self.label_smoothing else ""
        return f"{opt}, {sched}{warm}{smooth}"


def _one_cycle(step: int, total: int) -> float:
    """torch's OneCycleLR (anneal_strategy 'cos', three_phase False), as a factor of max_lr."""
    initial = 1.0 / ONECYCLE_DIV
    final = initial / ONECYCLE_FINAL_DIV
    up_end = float(ONECYCLE_PCT_START * total) - 1.0
    down_end = float(total - 1)

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)

    if step <= up_end:
        return anneal(initial, 1.0, step / up_end if up_end > 0 else 1.0)
    return anneal(1.0, final, (step - up_end) / (down_end - up_end))


def make_optimizer(
    params: list[torch.Tensor], recipe: Recipe, lr: float, weight_decay: float, fused: bool
) -> torch.optim.Optimizer:
    """The recipe's torch optimiser (fused kernels for Adam and AdamW when asked and there)."""
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=weight_decay,
        )
    kind = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    if fused:
        try:
            return kind(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError) as exc:  # fused kernels missing on this build/device
            log.debug("fused %s unavailable (%s); using foreach", kind.__name__, exc)
    return kind(params, lr=lr, weight_decay=weight_decay)
