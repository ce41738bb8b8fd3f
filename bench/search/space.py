"""The Optuna search space, built from the student family's declaration plus T and alpha.

The suite's ``[search]`` gives (or defaults) one range per architecture parameter of the
family and the ranges of ``temperature`` and ``alpha``; this module turns them into Optuna
distributions, reads a trial's architecture back from its params, and pins an architecture
(``pinned``) so several trials can share it (grouped training) without the enqueue race.

**The capacity axis.** With ``size`` in ``[search]`` the sampler draws the student's size as a
fraction of the ensemble's parameters (log scale by default) and the family's other
parameters; :class:`Sizer` solves the family's ``size_param`` from them
(:func:`kdcore.arch_for_size`) and the worker writes it into the trial as a fixed-value
parameter, so every trial still carries its whole architecture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from bench.config.suite import SearchSpace
from bench.errors import InputError
from bench.records import row_arch
from bench.study.ledger import Key
from bench.validation import Range
from kdcore import get_family
from kdcore.families import arch_for_size

__all__ = [
    "Sizer",
    "arch_of",
    "distributions",
    "pinned",
    "row_params",
    "trial_arch",
    "trial_recipe",
]

# the kinds kdbench samples (a family's parameters, size, T, alpha)
Distribution = optuna.distributions.IntDistribution | optuna.distributions.FloatDistribution
HYPER = ("temperature", "alpha")  # not part of the architecture: free within a group


def _distribution(r: Range, kind: type) -> Distribution:
    if kind is int:
        return optuna.distributions.IntDistribution(int(r.low), int(r.high), log=r.log)
    return optuna.distributions.FloatDistribution(float(r.low), float(r.high), log=r.log)


def distributions(space: SearchSpace, family: str) -> dict[str, Distribution]:
    """Sampled architecture parameters (the family's kinds), ``size`` when given, then
    ``temperature`` and ``alpha``."""
    fam = get_family(family)
    return {
        name: _distribution(r, fam.param(name).kind if name in fam.param_names else float)
        for name, r in space.ranges().items()
    }


def arch_of(params: dict[str, Any], space: SearchSpace, family: str) -> dict[str, int | float]:
    """The architecture of a trial, from its params (kinds as the family declares)."""
    fam = get_family(family)
    return {n: fam.param(n).kind(params[n]) for n in space.arch_names}


def trial_arch(
    trial: optuna.Trial | FrozenTrial, space: SearchSpace, family: str
) -> dict[str, int | float]:
    """The architecture of an asked or finished trial: its sampled params plus the parameter
    :meth:`Sizer.complete` solved from ``size`` (a user attribute; a run recorded before it
    was one has it among the params)."""
    derived = trial.user_attrs.get(Key.DERIVED) or {}
    return arch_of({**trial.params, **derived}, space, family)


def trial_recipe(trial: optuna.Trial | FrozenTrial, space: SearchSpace) -> dict[str, float]:
    """The searched recipe keys of a trial (``{}`` when ``[search]`` samples none): with its
    architecture, what its training group shares."""
    return {n: float(trial.params[n]) for n in space.recipe_names}


def row_params(
    row: Mapping[str, Any], space: SearchSpace, family: str, size: float | None = None
) -> dict[str, Any]:
    """A recorded configuration as the params of ``space`` (what ``enqueue_trial`` takes to
    train it again): its architecture, T, alpha and the recipe keys ``space`` searches. With a
    capacity axis the derived parameter is not a param: ``size`` is, and it solves to the same
    architecture (``size``: the trial's sampled one; default the row's realised
    ``param_ratio``, whose target is exactly its parameter count)."""
    arch = row_arch(row, family)
    params: dict[str, Any] = {n: v for n, v in arch.items() if n != space.derived}
    if space.size is not None:
        params["size"] = float(size if size is not None else row["param_ratio"])
    params |= {"temperature": float(row["temperature"]), "alpha": float(row["alpha"])}
    return params | {
        n: float(row[n]) for n in space.recipe_names if n in row and not math.isnan(row[n])
    }


def pinned(dists: dict[str, Distribution], params: dict[str, Any]) -> dict[str, Distribution]:
    """``dists`` with every parameter a group shares (the architecture, the searched recipe
    keys: all but T and alpha) fixed to its value in ``params`` (log flag kept, so storages accept it as the same parameter)."""
    out = dict(dists)
    for name, d in dists.items():
        if name in HYPER or name not in params:
            continue
        value = params[name]
        if isinstance(d, optuna.distributions.IntDistribution):
            out[name] = optuna.distributions.IntDistribution(int(value), int(value), log=d.log)
        else:
            out[name] = optuna.distributions.FloatDistribution(
                float(value), float(value), log=d.log
            )
    return out


class Sizer:
    """Solves the derived architecture parameter of a trial from its sampled ``size``."""

    def __init__(
        self,
        space: SearchSpace,
        family: str,
        input_shape: Sequence[int],
        num_classes: int,
        ensemble_params: float,
    ) -> None:
        self.space, self.family = space, family
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        self.ensemble_params = float(ensemble_params)
        if space.derived is not None and not self.ensemble_params > 0:
            raise InputError(
                f"The 'size' parameter of [search] needs a teacher with a known parameter count "
                f"(offline logits have none unless [teacher] family and arch are given): search "
                f"'{space.derived}' directly. Got {asdict(space.size) if space.size else None} instead."
            )

    def derive(self, params: dict[str, Any]) -> dict[str, int | float]:
        """``{size_param: value}`` for a trial's sampled params (empty without ``size``)."""
        name = self.space.derived
        if name is None:
            return {}
        fixed = {n: params[n] for n in self.space.arch_names if n != name}
        arch = arch_for_size(
            self.family,
            self.input_shape,
            self.num_classes,
            float(params["size"]) * self.ensemble_params,
            **fixed,
        )
        return {name: arch[name]}

    def complete(self, trial: optuna.Trial) -> None:
        """Record the derived parameter on ``trial`` as the user attribute ``kdbench_derived``.

        It is not written as a parameter: a fixed ``suggest_int(name, v, v)`` with ``v``
        changing per trial is a parameter whose distribution differs in every trial, which
        Optuna's importance evaluators (and optuna-dashboard) report as importance 0.00 with
        a warning. The capacity axis ``size`` is what was sampled; ``width`` follows from it.
        """
        derived = self.derive(trial.params)
        if derived:
            trial.set_user_attr(Key.DERIVED, derived)

    def missing(self, trial: FrozenTrial) -> bool:
        """Whether ``trial`` lacks the derived parameter (a kill between ask and complete)."""
        name = self.space.derived
        return (
            name is not None and name not in trial.params and not trial.user_attrs.get(Key.DERIVED)
        )
