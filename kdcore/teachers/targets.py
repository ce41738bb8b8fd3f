"""Cached teacher outputs on one split, and the soft targets derived from them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kdcore.exceptions import ParameterError
from kdcore.teachers.combine import Combiner, get_combiner

__all__ = ["SoftTargets"]


class SoftTargets:
    """The teacher's outputs on one split, computed once, combined on demand.

    ``outputs`` is the members' logits: a tensor ``[K, N, C]`` (or ``[N, C]`` for one member) or
    a sequence of ``[N, C_k]`` tensors (members may predict different class sets, e.g.
    specialists). :meth:`log_probs` derives the ensemble's soft targets at any temperature
    through the combiner (memoised per temperature); no teacher forward pass happens here.
    Nothing outside reads the tensors: use :meth:`log_probs`, :meth:`member_log_probs`,
    :meth:`take` and :meth:`to`.
    """

    def __init__(
        self,
        outputs: torch.Tensor | Sequence[torch.Tensor],
        combiner: str | Combiner = "mean_prob",
    ) -> None:
        if isinstance(outputs, torch.Tensor):
            outputs = outputs.unsqueeze(0) if outputs.dim() == 2 else outputs
            members = tuple(outputs.detach().unbind(0))
        else:
            members = tuple(o.detach() for o in outputs)
        if not members:
            raise ParameterError("SoftTargets needs the outputs of at least one member.")
        rows = {len(m) for m in members}
        if len(rows) != 1:
            raise ParameterError(f"every member must cover the same rows; got row counts {rows}.")
        self._outputs = members
        self.combiner = get_combiner(combiner)
        self._memo: dict[float, torch.Tensor] = {}

    @property
    def combine(self) -> str:
        """The combiner's name, as recorded in manifests."""
        return self.combiner.name

    @property
    def num_members(self) -> int:
        return len(self._outputs)

    @property
    def num_classes(self) -> int:
        return self.combiner.num_classes(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs[0])

    def log_probs(self, temperature: float = 1.0) -> torch.Tensor:
        """The ensemble's log-probabilities ``[N, C]`` at ``temperature`` (memoised)."""
        key = float(temperature)
        if key not in self._memo:
            self._memo[key] = self.combiner.log_probs(self._outputs, key)
        return self._memo[key]

    def member_log_probs(self, temperature: float = 1.0) -> torch.Tensor:
        """``[K', N, C]``: the members that predict every class, each on its own."""
        return self.combiner.member_log_probs(self._outputs, float(temperature))

    def member(self, k: int) -> SoftTargets:
        """Member ``k`` alone, as a teacher of its own (e.g. a specialist system's generalist)."""
        return SoftTargets(self._outputs[k], "mean_prob")

    def take(self, rows: slice | torch.Tensor) -> SoftTargets:
        """The same teacher on a subset of rows (combiners are row-wise)."""
        return SoftTargets([o[rows] for o in self._outputs], self.combiner)

    def cat(self, other: SoftTargets) -> SoftTargets:
        """These rows followed by ``other``'s: the same teacher on more rows (e.g. a transfer
        set's labelled rows, then its unlabeled ones)."""
        if other.num_members != self.num_members:
            raise ParameterError(
                f"cat() needs the same members: {self.num_members} and {other.num_members}."
            )
        return SoftTargets(
            [torch.cat([a, b]) for a, b in zip(self._outputs, other._outputs, strict=True)],
            self.combiner,
        )

    def to(self, device: torch.device | str) -> SoftTargets:
        """On ``device``; ``self`` (memo included) when already there."""
        if self._outputs[0].device == torch.device(device):
            return self
        return SoftTargets([o.to(device) for o in self._outputs], self.combiner)
