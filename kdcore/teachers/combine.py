"""How the members of a teacher ensemble combine into one distribution: a protocol.

A combiner turns the cached outputs of K members (``[N, C_k]`` logits each, in member order)
into the ensemble's log-probabilities ``[N, C]`` at a temperature T. The choice is explicit
and recorded in every run's manifest:

* ``mean_prob`` (default; Hinton's ensemble): :math:`p_T = \\frac1K\\sum_k \\mathrm{softmax}(v_k/T)`
* ``mean_logit`` (geometric mean; Ba & Caruana, TextBrewer): :math:`p_T = \\mathrm{softmax}(\\bar v/T)`

Combiners work row by row, so any subset of rows of the outputs is a valid input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from kdcore.exceptions import ParameterError, ParameterTypeError

__all__ = [
    "COMBINE_MODES",
    "Combiner",
    "MeanLogit",
    "MeanProb",
    "combine_log_probs",
    "get_combiner",
]


@runtime_checkable
class Combiner(Protocol):
    """The teacher-combination contract (see the module docstring)."""

    name: str

    def log_probs(self, outputs: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
        """Ensemble log-probabilities ``[N, C]`` at ``temperature``."""
        ...

    def member_log_probs(self, outputs: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
        """``[K', N, C]``: log-probabilities of the members that predict every class."""
        ...

    def num_classes(self, outputs: Sequence[torch.Tensor]) -> int: ...


def _stack(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    # Compared pairwise, not hashed into a set: hashing a traced (symbolic) batch size would
    # fix it, and the ensemble would lose its dynamic batch in torch.export / ONNX.
    if any(o.shape != outputs[0].shape for o in outputs[1:]):
        shapes = sorted({tuple(o.shape) for o in outputs})
        raise ParameterError(
            f"members must have outputs of one shape to be averaged; got {shapes}."
        )
    return torch.stack(list(outputs))


class _Mean:
    name = ""

    def member_log_probs(self, outputs: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
        return F.log_softmax(_stack(outputs) / temperature, dim=-1)

    def num_classes(self, outputs: Sequence[torch.Tensor]) -> int:
        return int(outputs[0].shape[-1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MeanProb(_Mean):
    """Mean of the members' probabilities at T (Hinton's ensemble)."""

    name = "mean_prob"

    def log_probs(self, outputs: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
        log_p = self.member_log_probs(outputs, temperature)
        return torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])


class MeanLogit(_Mean):
    """Softmax of the mean logit at T (the geometric mean of the members' distributions)."""

    name = "mean_logit"

    def log_probs(self, outputs: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
        return F.log_softmax(_stack(outputs).mean(dim=0) / temperature, dim=-1)


_COMBINERS: dict[str, Combiner] = {"mean_prob": MeanProb(), "mean_logit": MeanLogit()}
COMBINE_MODES = tuple(_COMBINERS)


def get_combiner(combiner: str | Combiner) -> Combiner:
    """A combiner by name (``mean_prob``, ``mean_logit``), or the object itself."""
    if isinstance(combiner, str):
        try:
            return _COMBINERS[combiner]
        except KeyError:
            raise ParameterError(
                f"Unknown combine mode {combiner!r}. Valid modes: {', '.join(COMBINE_MODES)}."
            ) from None
    if not isinstance(combiner, Combiner):
        raise ParameterTypeError(f"{combiner!r} does not implement the Combiner protocol.")
    return combiner


def combine_log_probs(
    member_logits: torch.Tensor, temperature: float = 1.0, mode: str | Combiner = "mean_prob"
) -> torch.Tensor:
    """Ensemble log-probabilities at ``temperature`` from member logits ``[K, N, C]``."""
    return get_combiner(mode).log_probs(list(member_logits), temperature)
