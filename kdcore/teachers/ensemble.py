"""Teacher ensembles: K members combined by an explicit rule, run once per split."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kdcore._grouped import GroupedModel
from kdcore.exceptions import ParameterError
from kdcore.teachers.combine import Combiner, get_combiner
from kdcore.teachers.targets import SoftTargets

__all__ = ["FusedEnsemble", "TeacherEnsemble"]


class TeacherEnsemble(nn.Module):
    """K teacher members combined by a :class:`~kdcore.teachers.combine.Combiner`.

    ``forward(x)`` returns the ensemble's log-probabilities at T = 1, so ``argmax`` is its
    prediction and ``exp`` its probabilities.
    """

    def __init__(self, members: Sequence[nn.Module], combine: str | Combiner = "mean_prob") -> None:
        super().__init__()
        if not members:
            raise ParameterError("TeacherEnsemble needs at least one member.")
        self.members = nn.ModuleList(members)
        self.combiner = get_combiner(combine)
        # what a specialist system was built from (class sets, top_n, …); None for an ensemble
        self.specialist_info: dict[str, Any] | None = None

    @property
    def combine(self) -> str:
        return self.combiner.name

    def member_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [m(x) for m in self.members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combiner.log_probs(self.member_outputs(x), 1.0)

    @torch.inference_mode()
    def cache_outputs(
        self, splits: Mapping[str, torch.Tensor], batch_size: int = 8192
    ) -> dict[str, SoftTargets]:
        """Run every member once over every split (eval mode) and cache its logits."""
        was_training = self.training
        self.eval()
        out: dict[str, SoftTargets] = {}
        for name, x in splits.items():
            chunks = [
                self.member_outputs(x[i : i + batch_size]) for i in range(0, len(x), batch_size)
            ]
            members = [torch.cat([c[k] for c in chunks]).clone() for k in range(len(self.members))]
            out[name] = SoftTargets(members, self.combiner)
        self.train(was_training)
        return out

    @property
    def can_fuse(self) -> bool:
        """Whether the members share one architecture (what :meth:`fused` needs)."""
        first = self.members[0]
        shapes = {k: v.shape for k, v in first.state_dict().items()}
        return all(
            type(m) is type(first) and {k: v.shape for k, v in m.state_dict().items()} == shapes
            for m in self.members
        )

    def fused(self) -> FusedEnsemble:
        if not self.can_fuse:
            raise ParameterError("fused() needs members of one architecture.")
        return FusedEnsemble(self)


class FusedEnsemble(nn.Module):
    """The same ensemble as one graph: members' weights stacked, batched ops.

    Used to measure the ensemble's latency honestly (a Python loop over members is the slow
    way to run it). Output equals ``TeacherEnsemble.forward``. Needs members of one
    architecture.
    """

    def __init__(self, ensemble: TeacherEnsemble) -> None:
        super().__init__()
        self.combiner = ensemble.combiner
        self._group = GroupedModel(list(ensemble.members))
        for name, p in self._group.params.items():
            self.register_buffer("w_" + name.replace(".", "_"), p.detach())
        self._group.params = {k: v.detach() for k, v in self._group.params.items()}
        self._group.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combiner.log_probs(list(self._group.shared(x)), 1.0)

    def _apply(  # keep the group's tensors on the module's device
        self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
    ) -> FusedEnsemble:
        super()._apply(fn, recurse)
        self._group.params = {
            k: getattr(self, "w_" + k.replace(".", "_")) for k in self._group.params
        }
        return self
