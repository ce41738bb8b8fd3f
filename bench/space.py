"""The Optuna search space, built from the student family's declaration plus T and alpha.

The suite's ``[search]`` gives (or defaults) one range per architecture parameter of the
family and the ranges of ``temperature`` and ``alpha``; this module turns them into Optuna
distributions, reads a trial's architecture back from its params, and pins an architecture
(``pinned``) so several trials can share it (grouped training) without the enqueue race.
"""

from __future__ import annotations

from typing import Any

import optuna

from bench.suite import SearchSpace
from bench.validation import Range
from kdcore import get_family

__all__ = ["arch_of", "distributions", "pinned"]

Distribution = optuna.distributions.BaseDistribution


def _distribution(r: Range, kind: type) -> Distribution:
    if kind is int:
        return optuna.distributions.IntDistribution(int(r.low), int(r.high), log=r.log)
    return optuna.distributions.FloatDistribution(float(r.low), float(r.high), log=r.log)


def distributions(space: SearchSpace, family: str) -> dict[str, Distribution]:
    """Architecture parameters (the family's kinds), then ``temperature`` and ``alpha``."""
    fam = get_family(family)
    out = {name: _distribution(r, fam.param(name).kind) for name, r in space.arch}
    out["temperature"] = _distribution(space.temperature, float)
    out["alpha"] = _distribution(space.alpha, float)
    return out


def arch_of(params: dict[str, Any], space: SearchSpace, family: str) -> dict[str, int | float]:
    """The architecture of a trial, from its params (kinds as the family declares)."""
    fam = get_family(family)
    return {n: fam.param(n).kind(params[n]) for n in space.arch_names}


def pinned(dists: dict[str, Distribution], arch: dict[str, int | float]) -> dict[str, Distribution]:
    """``dists`` with each architecture parameter fixed to ``arch`` (log flag kept, so storages
    accept it as the same parameter)."""
    out = dict(dists)
    for name, value in arch.items():
        d = dists[name]
        if isinstance(d, optuna.distributions.IntDistribution):
            out[name] = optuna.distributions.IntDistribution(int(value), int(value), log=d.log)
        else:
            out[name] = optuna.distributions.FloatDistribution(
                float(value), float(value), log=d.log
            )
    return out
