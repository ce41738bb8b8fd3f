"""A group of same-architecture models evaluated as one: a leading "member" dimension.

Plain ``nn.Sequential`` stacks of ``Linear``/``ReLU``/``Dropout``/``Identity`` run as batched
matrix multiplies (``torch.baddbmm``), which is what makes training many small students cheap
on a CPU; any other module runs through ``torch.func.vmap`` over ``functional_call``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

_FAST_LAYERS = (nn.Linear, nn.ReLU, nn.Dropout, nn.Identity)


def _is_fast(template: nn.Module) -> bool:
    return isinstance(template, nn.Sequential) and all(
        isinstance(m, _FAST_LAYERS) for m in template
    )


class GroupedModel:
    """Stacked parameters of G models with identical architecture.

    ``params`` maps each parameter name to a leaf tensor of shape ``[G, *shape]``; an
    optimiser over them updates every member independently (Adam is element-wise), so a
    member trained in a group follows the same trajectory as when trained alone.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        if not members:
            raise ValueError("GroupedModel needs at least one member model.")
        self.template = copy.deepcopy(members[0]).to("meta")
        params, buffers = stack_module_state(list(members))
        self.size = len(members)
        self.training = True
        self._fast = _is_fast(members[0])
        # Fast path: Linear weights are stored transposed, [G, in, out], so that forward is
        # x @ W with no transpose and their gradients come out contiguous (no copies).
        self._transposed: set[str] = set()
        if self._fast:
            for name, layer in members[0].named_children():
                if isinstance(layer, nn.Linear):
                    key = f"{name}.weight"
                    original = params[key]
                    params[key] = (
                        original.detach()
                        .transpose(1, 2)
                        .contiguous()
                        .requires_grad_(original.requires_grad)
                    )
                    self._transposed.add(key)
        self.params: dict[str, torch.Tensor] = params
        self.buffers: dict[str, torch.Tensor] = buffers

    def train(self, mode: bool = True) -> GroupedModel:
        self.training = mode
        return self

    def eval(self) -> GroupedModel:
        return self.train(False)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def shared(self, x: torch.Tensor) -> torch.Tensor:
        """Forward one input ``[B, ...]`` through every member: ``[G, B, C]``."""
        return self(x.unsqueeze(0).expand(self.size, *x.shape))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Forward per-member inputs ``[G, B, ...]`` to ``[G, B, C]`` (see :meth:`shared`)."""
        if x.shape[0] != self.size:
            raise ValueError(
                f"grouped input must have {self.size} members first; got shape {tuple(x.shape)}. "
                "Use .shared(x) for one input seen by every member."
            )
        if self._fast:
            return self._fast_forward(x)
        return self._vmap_forward(x)

    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.template.named_children():
            if isinstance(layer, nn.Linear):
                weight = self.params[f"{name}.weight"]
                bias = self.params.get(f"{name}.bias")
                if bias is None:
                    x = torch.bmm(x, weight)
                else:
                    x = torch.baddbmm(bias.unsqueeze(1), x, weight)
            elif isinstance(layer, nn.ReLU):
                x = F.relu(x)
            elif isinstance(layer, nn.Dropout):
                x = F.dropout(x, layer.p, self.training)
        return x

    def _vmap_forward(self, x: torch.Tensor) -> torch.Tensor:
        template = self.template
        template.train(self.training)

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xi: torch.Tensor):
            return functional_call(template, (p, b), (xi,))

        return vmap(one, randomness="different")(self.params, self.buffers, x)

    def member(self, index: int, params: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """Member ``index`` as a standalone module (a copy) in eval mode."""
        source = self.params if params is None else params
        module = copy.deepcopy(self.template).to_empty(device="cpu")
        state = {
            k: (v[index].t() if k in self._transposed else v[index]).detach().clone().cpu()
            for k, v in source.items()
        }
        state.update({k: v[index].detach().clone().cpu() for k, v in self.buffers.items()})
        module.load_state_dict(state)
        return module.eval()
