"""Model size: parameters and forward FLOPs.

Convention (stated in every run's manifest): FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on one forward pass, divided by the batch size
(per sample), with 2 FLOPs per multiply-add; MACs = FLOPs / 2. Only operators the counter
knows (matmul, conv, attention …) are counted; element-wise ops (ReLU, bias adds, softmax) are
not.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kdcore.exceptions import ParameterError

__all__ = ["count_flops", "count_params"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Forward FLOPs **per sample**: FlopCounterMode total / batch size, 2 per multiply-add.

    Raises ``ValueError`` when the counter sees no FLOPs in a model that has parameters: its
    operators are unknown to the counter, and reporting 0 would be a lie.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(example_input)
    finally:
        model.train(was_training)
    total = counter.get_total_flops()
    if total == 0 and count_params(model) > 0:
        raise ParameterError(
            f"FlopCounterMode counted 0 FLOPs for {type(model).__name__}: its operators are "
            "not covered by torch.utils.flop_counter (only matmul/conv/attention-like ops are). "
            "Express the model with nn.Linear/matmul/conv, or register a FLOP formula."
        )
    return round(total / example_input.shape[0])
