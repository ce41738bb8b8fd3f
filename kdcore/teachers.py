"""Teachers: the seed's heavy MLP, ensembles of them, and cached soft targets.

Ensemble members combine by an explicit rule (recorded in every run's manifest):

* ``mean_prob`` (default; Hinton's ensemble): :math:`p_T = \\frac1K\\sum_k \\mathrm{softmax}(v_k/T)`
* ``mean_logit`` (geometric mean; Ba & Caruana, TextBrewer): :math:`p_T = \\mathrm{softmax}(\\bar v/T)`
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdcore._grouped import GroupedModel
from kdcore.students import register_family

__all__ = [
    "COMBINE_MODES",
    "FusedEnsemble",
    "SoftTargets",
    "TeacherEnsemble",
    "TeacherModel",
    "combine_log_probs",
]

COMBINE_MODES = ("mean_prob", "mean_logit")


class TeacherModel(nn.Sequential):
    """The seed's teacher: Linear(d,256)-ReLU-Dropout(0.3)-Linear(256,128)-ReLU-Dropout(0.3)-
    Linear(128,64)-ReLU-Linear(64,C). 46,658 parameters and 92,416 FLOPs per sample for d=20,
    C=2."""

    def __init__(self, input_dim: int, num_classes: int, dropout: float = 0.3) -> None:
        super().__init__(
            nn.Linear(input_dim, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )


register_family(
    "seed_teacher",
    lambda input_dim, num_classes: TeacherModel(input_dim, num_classes),
    (),
    "the seed's heavy MLP teacher (256-128-64, dropout 0.3)",
)


def combine_log_probs(
    member_logits: torch.Tensor, temperature: float = 1.0, mode: str = "mean_prob"
) -> torch.Tensor:
    """Ensemble log-probabilities at ``temperature`` from member logits ``[K, N, C]``."""
    if mode == "mean_prob":
        log_p = F.log_softmax(member_logits / temperature, dim=-1)
        return torch.logsumexp(log_p, dim=0) - math.log(member_logits.shape[0])
    if mode == "mean_logit":
        return F.log_softmax(member_logits.mean(dim=0) / temperature, dim=-1)
    raise ValueError(f"Unknown combine mode {mode!r}. Valid modes: {', '.join(COMBINE_MODES)}.")


class SoftTargets:
    """Cached teacher outputs on one split: member logits ``[K, N, C]`` computed once.

    :meth:`log_probs` derives the ensemble's soft targets at any temperature from the cache
    (memoised per temperature); no teacher forward pass ever happens here.
    """

    def __init__(self, member_logits: torch.Tensor, combine: str = "mean_prob") -> None:
        if member_logits.dim() == 2:
            member_logits = member_logits.unsqueeze(0)
        if combine not in COMBINE_MODES:
            raise ValueError(
                f"Unknown combine mode {combine!r}. Valid: {', '.join(COMBINE_MODES)}."
            )
        self.member_logits = member_logits.detach()
        self.combine = combine
        self._memo: dict[float, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.member_logits.shape[1]

    def log_probs(self, temperature: float = 1.0) -> torch.Tensor:
        key = float(temperature)
        if key not in self._memo:
            self._memo[key] = combine_log_probs(self.member_logits, key, self.combine)
        return self._memo[key]

    def to(self, device: torch.device | str) -> SoftTargets:
        """On ``device``; ``self`` (memo included) when already there."""
        if self.member_logits.device == torch.device(device):
            return self
        return SoftTargets(self.member_logits.to(device), self.combine)


class TeacherEnsemble(nn.Module):
    """K teacher members combined by an explicit rule (``mean_prob`` or ``mean_logit``).

    ``forward(x)`` returns the ensemble's log-probabilities at T = 1, so ``argmax`` is its
    prediction and ``exp`` its probabilities.
    """

    def __init__(self, members: Sequence[nn.Module], combine: str = "mean_prob") -> None:
        super().__init__()
        if not members:
            raise ValueError("TeacherEnsemble needs at least one member.")
        if combine not in COMBINE_MODES:
            raise ValueError(
                f"Unknown combine mode {combine!r}. Valid: {', '.join(COMBINE_MODES)}."
            )
        self.members = nn.ModuleList(members)
        self.combine = combine

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return combine_log_probs(self.member_logits(x), 1.0, self.combine)

    @torch.inference_mode()
    def cache_outputs(
        self, splits: Mapping[str, torch.Tensor], batch_size: int = 8192
    ) -> dict[str, SoftTargets]:
        """Run every member once over every split (eval mode) and cache the logits."""
        was_training = self.training
        self.eval()
        out: dict[str, SoftTargets] = {}
        for name, x in splits.items():
            chunks = [
                self.member_logits(x[i : i + batch_size]) for i in range(0, len(x), batch_size)
            ]
            out[name] = SoftTargets(torch.cat(chunks, dim=1).clone(), self.combine)
        self.train(was_training)
        return out

    def fused(self) -> FusedEnsemble:
        return FusedEnsemble(self)


class FusedEnsemble(nn.Module):
    """The same ensemble as one graph: members' weights stacked, batched matmuls.

    Used to measure the ensemble's latency honestly (a Python loop over members is the slow
    way to run it). Output equals ``TeacherEnsemble.forward``.
    """

    def __init__(self, ensemble: TeacherEnsemble) -> None:
        super().__init__()
        self.combine = ensemble.combine
        self._group = GroupedModel(list(ensemble.members))
        for name, p in self._group.params.items():
            self.register_buffer("w_" + name.replace(".", "_"), p.detach())
        self._group.params = {k: v.detach() for k, v in self._group.params.items()}
        self._group.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return combine_log_probs(self._group.shared(x), 1.0, self.combine)

    def _apply(self, fn, recurse: bool = True):  # keep the group's tensors on the module's device
        super()._apply(fn, recurse)
        self._group.params = {
            k: getattr(self, "w_" + k.replace(".", "_")) for k in self._group.params
        }
        return self
