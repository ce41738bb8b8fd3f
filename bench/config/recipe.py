"""The training-recipe keys shared by ``[student]`` and ``[teacher]`` (:class:`kdcore.Recipe`).

Both tables take ``optimizer``, ``momentum``, ``nesterov``, ``schedule``, ``warmup_epochs``,
``milestones``, ``gamma`` and ``label_smoothing`` beside their ``lr`` and ``weight_decay``;
:func:`check_recipe` turns kdcore's rules into one-line errors naming the key, and
:func:`recipe_defaults_dropped` keeps the digest and the teacher cache key of a table that
leaves them at their defaults as they were before recipes existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Self

from bench.validation import Table, boolean, choice, number
from kdcore import Recipe
from kdcore.recipes import OPTIMIZERS, SCHEDULES

__all__ = [
    "RECIPE_KEYS",
    "RecipeFields",
    "check_recipe",
    "read_milestones",
    "recipe_defaults_dropped",
]


@dataclass(frozen=True)
class RecipeFields:
    """How a table's networks are optimised (kdcore.recipes has the formulas)."""

    optimizer: str = choice("adam", OPTIMIZERS, help="adam | adamw | sgd")
    momentum: float = number(0.9, float, 0.0, 0.999, help="sgd: momentum")
    nesterov: bool = boolean(False, help="sgd: Nesterov momentum")
    schedule: str = choice(
        "constant", SCHEDULES, help="learning-rate schedule: constant | cosine | step | onecycle"
    )
    warmup_epochs: int = number(0, int, 0, 10_000, help="linear warm-up epochs (not with onecycle)")
    milestones: tuple[int, ...] = ()  # step: epochs (0-based) where lr *= gamma: check_recipe
    gamma: float = number(0.1, float, 0.0, 1.0, low_open=True, help="step: the decay factor")
    label_smoothing: float = number(
        0.0, float, 0.0, 0.999, help="label smoothing of the hard-label term only"
    )

    def recipe(self) -> Recipe:
        return Recipe(**{k: getattr(self, k) for k in RECIPE_KEYS})

    def with_values(self, values: Mapping[str, float]) -> Self:
        """The same table with the fields in ``values`` replaced (a trial's sampled keys)."""
        changes: dict[str, Any] = dict(values)
        return replace(self, **changes)


RECIPE_KEYS = tuple(f.name for f in fields(RecipeFields))
DEFAULTS = {f.name: f.default for f in fields(RecipeFields)}


def check_recipe(t: Table, cfg: Any, epochs: int) -> None:
    """The cross-key rules of a table's recipe, each as one line naming its key."""
    if cfg.nesterov and (cfg.optimizer != "sgd" or cfg.momentum == 0):
        raise t.fail("nesterov", "false unless optimizer = 'sgd' with momentum > 0", True)
    if cfg.warmup_epochs and cfg.schedule == "onecycle":
        raise t.fail(
            "warmup_epochs",
            "0 with schedule = 'onecycle' (it warms up by itself)",
            cfg.warmup_epochs,
        )
    if cfg.warmup_epochs >= epochs:
        raise t.fail("warmup_epochs", f"less than epochs ({epochs})", cfg.warmup_epochs)
    ms = list(cfg.milestones)
    if ms and (ms != sorted(set(ms)) or ms[-1] >= epochs):
        raise t.fail("milestones", f"increasing epochs in [1, {epochs - 1}]", ms)
    if ms and cfg.schedule != "step":
        raise t.fail("milestones", "left out unless schedule = 'step'", ms)
    if cfg.schedule == "step" and not ms:
        raise t.fail("milestones", "given with schedule = 'step' (the epochs it decays at)", ms)


def read_milestones(t: Table) -> tuple[int, ...]:
    return t.ints("milestones", (), low=1)


def recipe_defaults_dropped(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (a table as a dict) without the recipe keys left at their defaults."""

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple | list) else v

    return {
        k: v for k, v in settings.items() if k not in DEFAULTS or plain(v) != plain(DEFAULTS[k])
    }
