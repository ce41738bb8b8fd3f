"""A group of same-architecture models evaluated as one: a leading "member" dimension.

Plain ``nn.Sequential`` stacks of ``Linear``/``ReLU``/``Dropout``/``Identity``/``Flatten``/
``Conv2d``/``MaxPool2d``/``AvgPool2d`` run on the *batched* path:

* Linear layers as batched matrix multiplies (``torch.baddbmm`` on weights stored
  ``[G, in, out]``), activations laid out ``[G, B, features]``;
* convolutions as ONE grouped convolution (``groups = G``): the members' feature maps are
  stacked along the channel axis, ``[B, G·C, H, W]``, and their filters along the output-channel
  axis, so conv, ReLU and pooling layers of all members run as one call each.

Any other module runs through ``torch.func.vmap`` over ``functional_call`` (the *vmap* path).
``backend="vmap"`` forces it (for comparison); both give the same outputs. ``backend="loop"``
calls each member in turn through ``functional_call`` on its slice of the stacked parameters
and buffers: for library models vmap cannot batch (data-dependent control flow in attention
masks, batch norm's in-place running statistics, which update the member's own slice here).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from kdcore.exceptions import ParameterError

_BATCHED_LAYERS = (
    nn.Linear,
    nn.ReLU,
    nn.Dropout,
    nn.Identity,
    nn.Flatten,
    nn.Conv2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
)
BACKENDS = ("auto", "batched", "vmap", "loop")


def _batched_ok(template: nn.Module) -> bool:
    if not isinstance(template, nn.Sequential):
        return False
    for m in template:
        if not isinstance(m, _BATCHED_LAYERS):
            return False
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            return False
        if isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1):
            return False
    return True


class GroupedModel:
    """Stacked parameters of G models with identical architecture.

    ``params`` maps each parameter name to a leaf tensor of shape ``[G, *shape]``; an
    optimiser over them updates every member independently (Adam is element-wise), so a
    member trained in a group follows the same trajectory as when trained alone.
    """

    def __init__(self, members: Sequence[nn.Module], backend: str = "auto") -> None:
        if not members:
            raise ParameterError("GroupedModel needs at least one member model.")
        if backend not in BACKENDS:
            raise ParameterError(f"backend must be one of {BACKENDS}. Got {backend!r}.")
        self.template = copy.deepcopy(members[0]).to("meta")
        params, buffers = stack_module_state(list(members))
        self.size = len(members)
        self.training = True
        batched_ok = _batched_ok(members[0])
        if backend == "batched" and not batched_ok:
            raise ParameterError(
                f"{type(members[0]).__name__} has layers the batched path does not cover; "
                "use backend='auto' or 'vmap'."
            )
        if backend == "loop":
            self.backend = "loop"
        else:
            self.backend = "batched" if batched_ok and backend != "vmap" else "vmap"
        # Batched path: Linear weights are stored transposed, [G, in, out], so that forward is
        # x @ W with no transpose and their gradients come out contiguous (no copies).
        self._transposed: set[str] = set()
        if self.backend == "batched":
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
            raise ParameterError(
                f"grouped input must have {self.size} members first; got shape {tuple(x.shape)}. "
                "Use .shared(x) for one input seen by every member."
            )
        if self.backend == "batched":
            return self._batched_forward(x)
        if self.backend == "loop":
            return self._loop_forward(x)
        return self._vmap_forward(x)

    def _batched_forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.size
        merged = False  # False: [G, B, ...]; True: [B, G*C, H, W] (conv layout)
        for name, layer in self.template.named_children():
            if isinstance(layer, nn.Conv2d):
                if not merged:
                    b = x.shape[1]
                    x = x.transpose(0, 1).reshape(b, g * x.shape[2], *x.shape[3:])
                    merged = True
                weight = self.params[f"{name}.weight"]
                bias = self.params.get(f"{name}.bias")
                x = F.conv2d(
                    x,
                    weight.reshape(g * weight.shape[1], *weight.shape[2:]),
                    None if bias is None else bias.reshape(-1),
                    stride=layer.stride,
                    padding=layer.padding,
                    dilation=layer.dilation,
                    groups=g * layer.groups,
                )
            elif isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
                if not merged:
                    b = x.shape[1]
                    x = x.transpose(0, 1).reshape(b, g * x.shape[2], *x.shape[3:])
                    merged = True
                x = layer(x)  # per-channel: members never mix
            elif isinstance(layer, nn.Flatten):
                if merged:
                    b = x.shape[0]
                    x = x.reshape(b, g, -1).transpose(0, 1)
                    merged = False
                else:
                    x = x.reshape(g, x.shape[1], -1)
            elif isinstance(layer, nn.Linear):
                if merged:
                    raise ParameterError(
                        "a Linear layer after a conv needs an nn.Flatten before it"
                    )
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
        if merged:
            b = x.shape[0]
            x = x.reshape(b, g, x.shape[1] // g, *x.shape[2:]).transpose(0, 1)
        return x

    def _vmap_forward(self, x: torch.Tensor) -> torch.Tensor:
        template = self.template
        template.train(self.training)

        def one(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xi: torch.Tensor
        ) -> torch.Tensor:
            out: torch.Tensor = functional_call(template, (p, b), (xi,))
            return out

        out: torch.Tensor = vmap(one, randomness="different")(self.params, self.buffers, x)
        return out

    def _loop_forward(self, x: torch.Tensor) -> torch.Tensor:
        template = self.template
        template.train(self.training)
        images = x.dim() == 5 and x.is_floating_point()
        outs = []
        for g in range(self.size):
            # Images channels-last (inputs and 4-d weights): the CPU kernels of max-pooling
            # and most convolutions are several times faster in it (a 64-channel 14x14
            # max-pool of 128 images: 10.6 against 1.0 ms, torch 2.13, 1 thread); the
            # outputs are the same.
            own = {
                k: v[g].contiguous(memory_format=torch.channels_last)
                if images and v.dim() == 5
                else v[g]
                for k, v in self.params.items()
            }
            # views of the stacked buffers: batch norm's in-place updates land in this member's
            own_buffers = {k: v[g] for k, v in self.buffers.items()}
            xg = x[g].contiguous(memory_format=torch.channels_last) if images else x[g]
            outs.append(functional_call(template, (own, own_buffers), (xg,)))
        return torch.stack(outs)

    def member(self, index: int, params: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """Member ``index`` as a standalone module (a copy) in eval mode."""
        source = self.params if params is None else params
        module = copy.deepcopy(self.template).to_empty(device="cpu")
        state = {
            k: (v[index].t() if k in self._transposed else v[index]).detach().clone().cpu()
            for k, v in source.items()
        }
        state.update(
            {k: v[index].detach().clone().cpu() for k, v in self.buffers.items() if k not in state}
        )
        persistent = set(module.state_dict())
        module.load_state_dict({k: v for k, v in state.items() if k in persistent})
        for key in set(state) - persistent:  # non-persistent buffers (e.g. position ids)
            owner, _, name = key.rpartition(".")
            module.get_submodule(owner)._buffers[name] = state[key]
        return module.eval()
