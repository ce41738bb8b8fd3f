"""The dense path: a group of Linear/ReLU stacks trained with the passes written out.

Method. Activations are kept *feature-major*, ``[G, features, B]``, and every layer is
``Z = W·H + b`` with ``W`` in ``nn.Linear``'s own ``[G, out, in]`` layout. The backward pass is
written out instead of recorded by autograd: the closed-form gradient of the KD loss at the
logits (:func:`kdcore.losses.kd_logit_grad`), then per layer ``dW = dZ·Hᵀ``, ``db = Σ_B dZ``,
``dH = Wᵀ·dZ`` masked by ``H > 0`` (ReLU). Adam is the fused kernel that ``torch.optim.Adam(
fused=True)`` calls, on the same state, so the update is the same element-wise Adam.

Why (measured on the 2-core AMD EPYC development machine, torch 2.13 with MKL, 8 students of
width 77, batch 256): MKL's batched GEMM is slow when the *output's* inner dimension is small —
the 2-class head ``[8, 256, 77] × [8, 77, 2]`` takes 140 µs, the same product computed
transposed (``[8, 2, 77] × [8, 77, 256]``) 27 µs. Feature-major puts the batch (256) on that
dimension in every forward and input-gradient product. Autograd and ``torch.optim`` add about
1 ms of bookkeeping to a step whose matrix products take about 1 ms. Together: 3.4 → 1.8 ms
per step. The results are those of the autograd path up to float rounding (tested).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from kdcore._grouped import GroupedModel
from kdcore.losses import FusedKDLoss, kd_forward_parts, kd_logit_grad
from kdcore.recipes import Recipe, make_optimizer


def dense_layers(template: nn.Module) -> list[tuple[str, float]] | None:
    """``(name, dropout p after its ReLU)`` of each Linear layer when ``template`` is
    ``[Flatten] (Linear ReLU [Dropout])* Linear`` with biases (what the dense path covers),
    else None."""
    if not isinstance(template, nn.Sequential):
        return None
    layers = [m for m in template.named_children() if not isinstance(m[1], nn.Identity)]
    first = layers[0][1] if layers else None
    if isinstance(first, nn.Flatten):
        layers.pop(0)
        if (first.start_dim, first.end_dim) != (1, -1):
            return None
    out: list[tuple[str, float]] = []
    i = 0
    while i < len(layers):
        name, m = layers[i]
        if not isinstance(m, nn.Linear) or m.bias is None:
            return None
        i += 1
        if i == len(layers):
            out.append((name, 0.0))
            return out
        if not isinstance(layers[i][1], nn.ReLU):
            return None
        i += 1
        p = 0.0
        drop = layers[i][1] if i < len(layers) else None
        if isinstance(drop, nn.Dropout):
            p = float(drop.p)
            i += 1
        out.append((name, p))
    return None  # ends with a ReLU or Dropout: no output layer


class DenseGroup:
    """The parameters, gradients and Adam state of a dense group, and its two passes.

    Built from a :class:`GroupedModel` (batched layout) and written back to it with
    :meth:`group_params`, so selection and member extraction are those of the other paths.
    """

    def __init__(
        self,
        group: GroupedModel,
        layers: list[tuple[str, float]],
        lr: float,
        weight_decay: float,
        fused_adam: bool,
        seed: int = 0,
        recipe: Recipe | None = None,
    ) -> None:
        names = [name for name, _ in layers]
        self.names = names
        self.dropout = [p for _, p in layers]
        # Dropout masks on the CPU come from NumPy's PCG64 (16-bit draws: the drop probability
        # is rounded to 1/65536): torch's CPU dropout spends ~15 ns per element in its
        # Mersenne Twister, most of a dropout teacher's training time. On CUDA: torch.rand.
        self._rng = np.random.default_rng(seed)
        # GroupedModel keeps Linear weights [G, in, out]; the dense path wants [G, out, in].
        self.weights = [
            group.params[f"{n}.weight"].detach().transpose(1, 2).contiguous() for n in names
        ]
        self.biases = [group.params[f"{n}.bias"].detach().clone() for n in names]
        self.params = self.weights + self.biases
        self.grads = [torch.zeros_like(p) for p in self.params]
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.recipe = recipe or Recipe()
        kernel = "_fused_adamw_" if self.recipe.optimizer == "adamw" else "_fused_adam_"
        self.fused = fused_adam and hasattr(torch, kernel) and self.recipe.optimizer != "sgd"
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self._torch_opt: torch.optim.Optimizer | None = None
        # Activation and gradient buffers per batch width, reused every step: a fresh
        # [8, 77, 256] tensor is over glibc's mmap threshold, and its page faults cost as much
        # as the matrix product that fills it.
        self._work: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        if not self.fused:  # the foreach implementations, through torch.optim
            for p, g in zip(self.params, self.grads, strict=True):
                p.grad = g
            self._torch_opt = make_optimizer(
                self.params, self.recipe, lr, weight_decay, fused=False
            )

    @property
    def num_classes(self) -> int:
        return self.weights[-1].shape[1]

    def group_params(self) -> dict[str, torch.Tensor]:
        """The live parameters in :class:`GroupedModel`'s layout (views)."""
        out: dict[str, torch.Tensor] = {}
        for n, w, b in zip(self.names, self.weights, self.biases, strict=True):
            out[f"{n}.weight"] = w.transpose(1, 2)
            out[f"{n}.bias"] = b
        return out

    _MAX_BUFFER_BYTES = 64 * 2**20

    def _buffers(self, cols: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Hidden activations and their gradients ``[G, width, cols]``, one pair per layer;
        kept for reuse up to 64 MiB per width (evaluation chunks beyond that are fresh)."""
        if cols in self._work:
            return self._work[cols]
        shapes = [(w.shape[0], w.shape[1], cols) for w in self.weights[:-1]]
        like = self.weights[0]
        work = ([like.new_empty(s) for s in shapes], [like.new_empty(s) for s in shapes])
        if 2 * sum(math.prod(s) for s in shapes) * like.element_size() <= self._MAX_BUFFER_BYTES:
            self._work[cols] = work
        return work

    def forward(self, h: torch.Tensor, keep: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``[G, C, B]`` of feature-major inputs ``[G, d, B]``; ``keep`` collects each
        layer's input (for the backward pass). Hidden activations live in reused buffers."""
        acts, _ = self._buffers(h.shape[-1])
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            keep.append(h)
            if i < last:
                h = torch.baddbmm(b.unsqueeze(-1), w, h, out=acts[i]).relu_()
                if self.dropout[i] > 0:
                    self._dropout_(h, self.dropout[i])
            else:
                h = torch.baddbmm(b.unsqueeze(-1), w, h)
        return h

    def _dropout_(self, h: torch.Tensor, p: float) -> None:
        """Inverted dropout in place: zero each element with probability ``p``, scale the
        rest by 1 / (1 − p)."""
        scale = 1.0 / (1.0 - p)
        if h.device.type == "cpu":  # h is one of the (contiguous) activation buffers
            bits = self._rng.integers(0, 65536, h.numel(), dtype=np.uint16)
            kept = (bits >= round(p * 65536)).reshape(h.shape)
            out = h.numpy()  # the same memory; NumPy multiplies by a bool mask without a copy
            np.multiply(out, kept, out=out)
            out *= scale
        else:
            h.mul_(torch.rand(h.shape, device=h.device) >= p).mul_(scale)

    def logits_shared(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[G, N, C]`` of one input ``[N, ...]`` seen by every member; the first layer
        is one matrix product for the whole group."""
        xt = x.reshape(len(x), -1).t()
        w0, b0 = self.weights[0], self.biases[0]
        g, out, d = w0.shape
        last = len(self.weights) - 1
        if last == 0:
            return torch.addmm(b0.reshape(-1, 1), w0.reshape(g * out, d), xt).view(g, out, -1).mT
        acts, _ = self._buffers(len(x))
        h = acts[0].view(g * out, -1)
        h = torch.addmm(b0.reshape(-1, 1), w0.reshape(g * out, d), xt, out=h).view(g, out, -1)
        h.relu_()
        for i, (w, b) in enumerate(zip(self.weights[1:], self.biases[1:], strict=True), 1):
            if i < last:
                h = torch.baddbmm(b.unsqueeze(-1), w, h, out=acts[i]).relu_()
            else:
                h = torch.baddbmm(b.unsqueeze(-1), w, h)
        return h.transpose(1, 2)

    def step(
        self,
        x: torch.Tensor,
        idx: torch.Tensor,
        teacher_log_probs: torch.Tensor,
        teacher_probs: torch.Tensor,
        loss: FusedKDLoss,
        hard_rows: torch.Tensor | None = None,
        lr: float | None = None,
        mix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One optimiser step (the recipe's; at ``lr``, default the base rate) on a
        feature-major batch: ``x`` ``[G, d, B]``, labels ``idx`` ``[G, 1, B]``, teacher targets
        ``[G, C, B]``; ``hard_rows`` ``[G, 1, B]``: per-row hard weights when the batch has
        unlabeled rows; ``mix`` (labels2, lam), ``[G, 1, B]`` each: mixup's hard target.
        Returns the per-member losses ``[G]``."""
        keep: list[torch.Tensor] = []
        z = self.forward(x, keep)
        hard_weight = loss.hard_weight if hard_rows is None else hard_rows
        losses, log_q_t, log_q1 = kd_forward_parts(
            z,
            teacher_log_probs,
            teacher_probs,
            idx,
            loss.t_bc,
            loss.soft_weight,
            hard_weight,
            1,
            loss.smoothing,
            mix,
        )
        dz = kd_logit_grad(
            log_q_t,
            teacher_probs,
            log_q1,
            idx,
            loss.soft_grad_weight,
            hard_weight,
            1,
            loss.smoothing,
            mix,
        )
        n = len(self.weights)
        _, grad_buf = self._buffers(x.shape[-1])
        for i in range(n - 1, -1, -1):
            torch.bmm(dz, keep[i].transpose(1, 2), out=self.grads[i])
            torch.sum(dz, 2, out=self.grads[n + i])
            if i > 0:
                dh = torch.bmm(self.weights[i].transpose(1, 2), dz, out=grad_buf[i - 1])
                # ReLU's backward, in place: dh where the layer's output was > 0, else 0. After
                # dropout the output is 0 where dropped, so the same mask drops those too.
                dz = torch.ops.aten.threshold_backward.grad_input(dh, keep[i], 0.0, grad_input=dh)
                if self.dropout[i - 1] > 0:
                    dz.mul_(1.0 / (1.0 - self.dropout[i - 1]))
        self._optimizer_step(self.lr if lr is None else float(lr))
        return losses

    def _optimizer_step(self, lr: float) -> None:
        if self._torch_opt is not None:
            for param_group in self._torch_opt.param_groups:
                param_group["lr"] = lr
            self._torch_opt.step()
            return
        # What torch.optim.Adam(W)(fused=True).step() does, without its per-call bookkeeping.
        torch._foreach_add_(self.steps, 1)
        kernel = torch._fused_adamw_ if self.recipe.optimizer == "adamw" else torch._fused_adam_
        kernel(
            self.params,
            self.grads,
            self.exp_avg,
            self.exp_avg_sq,
            [],
            self.steps,
            lr=lr,
            beta1=0.9,
            beta2=0.999,
            weight_decay=self.weight_decay,
            eps=1e-8,
            amsgrad=False,
            maximize=False,
        )
