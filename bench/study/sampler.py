"""Sampling that is a function of the trial number (:class:`TrialSeededSampler`).

What trial *n* samples depends only on *n* and the study's history — not on how many trials
this process asked before — so a resumed run continues the search an uninterrupted run would
have made, and workers never replay one another's random sequence.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from bench.durable.faults import fault_point

__all__ = ["TrialSeededSampler", "make_sampler"]


def _derived_seed(seed: int, number: int, param: str | None = None) -> int:
    key = [seed, number] if param is None else [seed, number, zlib.crc32(param.encode())]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Delegate each trial to a fresh sampler built by ``factory(seed_for_this_trial)``.

    TPE and random sampling keep no state across trials except their random generator, so a
    fresh instance per trial — seeded from (``seed``, trial number) — samples exactly what a
    long-lived one would, given the same history, while making trial *n*'s randomness
    independent of the process that asks it (resume, several workers). Each independently
    sampled parameter gets its own instance seeded from (``seed``, trial number, parameter
    name): a trial interrupted between two of its parameters (``ask`` writes them one at a
    time) is completed on resume with the values it would have had.
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = seed
        self._inner: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        inner = self._inner.get(trial.number)
        if inner is None:
            if len(self._inner) > 256:
                self._inner.clear()
            inner = self._inner[trial.number] = self._factory(
                _derived_seed(self._seed, trial.number)
            )
        return inner

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        fault_point("param")
        inner = self._factory(_derived_seed(self._seed, trial.number, param_name))
        return inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)
        self._inner.pop(trial.number, None)

    def reseed_rng(self) -> None:  # randomness is a function of the trial number
        pass


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "tpe":
        return TrialSeededSampler(lambda s: optuna.samplers.TPESampler(seed=s), seed)
    return TrialSeededSampler(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
