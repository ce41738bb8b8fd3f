"""Distillation losses (Hinton, Vinyals & Dean 2015).

All functions are pure: tensors in, tensors out. They accept an optional leading *group*
dimension so that several students (a "group") can be trained at once, each with its own
temperature and soft/hard weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["FusedKDLoss", "kd_loss", "kd_loss_from_log_probs", "kd_loss_fused", "topk_kd_loss"]


def _as_group_tensor(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def kd_loss_from_log_probs(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    alpha: float | torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Hinton's distillation loss with the teacher given as log-probabilities at T.

    ``teacher_log_probs`` must already be :math:`\log p_T` (the teacher's, or the teacher
    ensemble's, soft targets at the same temperature). See :func:`kd_loss` for the math.

    Shapes: ``student_logits`` ``[..., B, C]``; ``teacher_log_probs`` broadcastable to it;
    ``labels`` ``[..., B]`` (int64; ``-1`` marks an unlabeled row, which enters the soft term
    only: the hard term is then the mean over the batch's labelled rows, 0 when it has none). ``temperature`` and ``alpha`` are floats or tensors of
    shape ``[...]`` (one value per group member). ``label_smoothing`` ε smooths the hard
    term only: its target is ``(1 − ε)·onehot(y) + ε/C`` (``F.cross_entropy``'s). Returns a
    tensor of shape ``[...]``: a scalar for ungrouped inputs, one loss per member otherwise.
    """
    temperature_t = _as_group_tensor(temperature, student_logits)
    alpha_t = _as_group_tensor(alpha, student_logits)
    # Broadcast per-member scalars over the batch and class dimensions.
    t_bc = temperature_t.reshape((*temperature_t.shape, 1, 1))
    log_q_t = F.log_softmax(student_logits / t_bc, dim=-1)
    # KL(p || q) = sum_c p_c (log p_c - log q_c); log_target keeps it finite for tiny p_c.
    kl = F.kl_div(log_q_t, teacher_log_probs.expand_as(log_q_t), log_target=True, reduction="none")
    soft = kl.sum(dim=-1).mean(dim=-1)  # "batchmean": sum over classes, mean over the batch
    num_classes = student_logits.shape[-1]
    labelled = labels >= 0
    ce = F.cross_entropy(
        student_logits.reshape(-1, num_classes),
        labels.clamp(min=0).reshape(-1),
        reduction="none",
        label_smoothing=label_smoothing,
    ).reshape(labels.shape)
    if bool(labelled.all()):
        hard = ce.mean(dim=-1)
    else:  # unlabeled rows (label -1): the hard term is the mean over the labelled rows
        w = labelled.to(ce.dtype)
        hard = (ce * w).sum(dim=-1) / w.sum(dim=-1).clamp(min=1.0)
    return alpha_t * temperature_t**2 * soft + (1.0 - alpha_t) * hard


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    alpha: float | torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Knowledge-distillation loss of Hinton, Vinyals & Dean (2015).

    .. math::

        L = \alpha\,T^2\,\mathrm{KL}\big(p_T \,\|\, q_T\big)
            + (1-\alpha)\,\mathrm{CE}\big(\mathrm{softmax}(z),\,y\big),
        \qquad p_T = \mathrm{softmax}(v/T),\; q_T = \mathrm{softmax}(z/T)

    with teacher logits :math:`v`, student logits :math:`z` and hard labels :math:`y`.
    The KL term uses *batchmean* reduction (sum over classes, mean over the batch), not
    PyTorch's default ``mean`` that also divides by the number of classes. The :math:`T^2`
    factor keeps the soft-gradient magnitude roughly constant across temperatures: the
    gradient of the soft term w.r.t. :math:`z_i` is :math:`(q_i - p_i)/T` per sample, which at
    high :math:`T` with zero-mean logits tends to :math:`(z_i - v_i)/(N T^2)` (logit matching,
    Hinton eq. 4), so :math:`T^2 \cdot` gradient tends to :math:`(z_i - v_i)/N`.

    ``alpha = 0`` is plain cross-entropy (the scratch baseline), ``alpha = 1`` pure soft
    targets. The student is deployed at :math:`T = 1`. Computed with ``log_softmax`` so that
    logits of magnitude 1e4 stay finite.

    Shapes as in :func:`kd_loss_from_log_probs`; ``teacher_logits`` has the student's shape.
    """
    temperature_t = _as_group_tensor(temperature, student_logits)
    t_bc = temperature_t.reshape((*temperature_t.shape, 1, 1))
    teacher_log_probs = F.log_softmax(teacher_logits / t_bc, dim=-1)
    return kd_loss_from_log_probs(
        student_logits,
        teacher_log_probs,
        labels,
        temperature=temperature,
        alpha=alpha,
        label_smoothing=label_smoothing,
    )


def topk_kd_loss(
    student_logits: torch.Tensor,
    top_index: torch.Tensor,
    top_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    alpha: float | torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Hinton's loss when only the teacher's top ``K`` logits per example were kept.

    With the teacher's kept classes :math:`S` (``top_index``, ``[..., B, K]``) and their
    logits :math:`v_S` (``top_logits``), both distributions are renormalised over the *same*
    support :math:`S`:

    .. math::

        L = \alpha\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(v_S/T)\,\|\,
            \mathrm{softmax}(z_S/T)\big) + (1-\alpha)\,\mathrm{CE}\big(\mathrm{softmax}(z),\,y\big)

    where :math:`z_S` gathers the student's logits at :math:`S`; the hard term is over all
    classes, as in :func:`kd_loss`. Normalising the student over all classes instead (while
    the teacher is renormalised over :math:`S`) compares two distributions on different
    supports — the KL is then not zero even when the student copies the teacher's kept
    logits, and it pushes mass off the classes the teacher did not keep (the bug maxtext
    fixed in its PR #4056). With :math:`K = C` (every class kept, any order) this is exactly
    :func:`kd_loss`. The soft term's gradient is zero at the classes outside :math:`S`.
    Shapes and group dimensions as in :func:`kd_loss_from_log_probs`.
    """
    temperature_t = _as_group_tensor(temperature, student_logits)
    t_bc = temperature_t.reshape((*temperature_t.shape, 1, 1))
    index = top_index.expand(*student_logits.shape[:-1], top_index.shape[-1])
    kept = student_logits.gather(-1, index)
    teacher_log_probs = F.log_softmax(top_logits / t_bc, dim=-1)
    unlabeled = torch.full_like(labels, -1)  # the soft term alone, over S
    soft = kd_loss_from_log_probs(
        kept, teacher_log_probs, unlabeled, temperature=temperature, alpha=1.0
    )
    hard = kd_loss_from_log_probs(
        student_logits,
        torch.zeros_like(student_logits),  # unused: alpha 0 keeps only the hard term
        labels,
        temperature=1.0,
        alpha=0.0,
        label_smoothing=label_smoothing,
    )
    alpha_t = _as_group_tensor(alpha, student_logits)
    return alpha_t * soft + (1.0 - alpha_t) * hard


def kd_forward_parts(  # noqa: PLR0913 — a step's tensors, precomputed per member: nothing allocated
    z: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    teacher_probs: torch.Tensor,
    idx: torch.Tensor,
    t_bc: torch.Tensor,
    soft_weight: torch.Tensor,
    hard_weight: torch.Tensor,
    class_dim: int,
    smoothing: float = 0.0,
    mix: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grouped KD loss ``[G]`` from logits ``z`` (``[G, B, C]`` with ``class_dim = -1``, or
    feature-major ``[G, C, B]`` with ``class_dim = 1``), plus log q_T and log q_1 for the
    gradient. ``idx``: the labels with a singleton class dimension; per-member constants
    ``[G, 1, 1]`` (T, alpha·T², 1 − alpha); ``hard_weight`` may also be per row (``[G, B, 1]``,
    or ``[G, 1, B]`` feature-major: :meth:`FusedKDLoss.hard_rows`). ``mix = (idx2, lam)``
    (mixup, in ``idx``'s layout): the hard target is ``lam·onehot(idx) + (1 − lam)·onehot(idx2)``
    (before smoothing)."""
    log_q_t = F.log_softmax(z / t_bc, dim=class_dim)
    log_q1 = F.log_softmax(z, dim=class_dim)
    # per sample: w_s · Σ_c p (log p − log q_T) − w_h · log q_1[y], then the batch mean
    per_sample = (teacher_probs * (teacher_log_probs - log_q_t)).sum(class_dim, keepdim=True)
    nll = log_q1.gather(class_dim, idx)
    if mix is not None:
        nll = torch.lerp(log_q1.gather(class_dim, mix[0]), nll, mix[1])
    if smoothing:
        c = log_q1.shape[class_dim]
        nll = nll * (1.0 - smoothing) + log_q1.sum(class_dim, keepdim=True) * (smoothing / c)
    per_sample = per_sample * soft_weight - nll * hard_weight
    return per_sample.mean(dim=(-2, -1)), log_q_t, log_q1


def kd_logit_grad(  # noqa: PLR0913 — a step's tensors, precomputed per member: nothing allocated
    log_q_t: torch.Tensor,
    teacher_probs: torch.Tensor,
    log_q1: torch.Tensor,
    idx: torch.Tensor,
    soft_grad_weight: torch.Tensor,
    hard_weight: torch.Tensor,
    class_dim: int,
    smoothing: float = 0.0,
    mix: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """d(per-member loss)/dz in closed form: (alpha T (q_T − p_T) + (1 − alpha)(q_1 −
    target)) / B with target ``(1 − ε)·onehot(y) + ε/C`` (``onehot(y)`` mixed as in
    :func:`kd_forward_parts` under ``mix``), in the layout of :func:`kd_forward_parts`."""
    hard = log_q1.exp()
    if mix is None:
        hard.scatter_add_(
            class_dim,
            idx,
            torch.full(idx.shape, smoothing - 1.0, dtype=hard.dtype, device=hard.device),
        )
    else:
        lam = mix[1].to(hard.dtype).expand(idx.shape)
        hard.scatter_add_(class_dim, idx, lam * (smoothing - 1.0))
        hard.scatter_add_(class_dim, mix[0], (1.0 - lam) * (smoothing - 1.0))
    if smoothing:
        hard.sub_(smoothing / log_q1.shape[class_dim])
    grad = log_q_t.exp().sub_(teacher_probs).mul_(soft_grad_weight)
    batch = log_q_t.shape[-1 if class_dim in (1, -2) else -2]
    return grad.add_(hard.mul_(hard_weight)).div_(batch)


class _FusedKD(torch.autograd.Function):
    """Forward and closed-form backward of :func:`kd_loss_from_log_probs` for grouped inputs.

    d/dz [alpha T² KL(p_T ‖ q_T)] = alpha T (q_T − p_T) / B and d/dz [(1−alpha) CE] =
    (1−alpha)(softmax(z) − onehot(y)) / B, so the backward pass is a handful of element-wise
    ops instead of autograd's trip through log_softmax, kl_div and cross_entropy — the loss is
    a large share of a small student's step. Per-member constants arrive precomputed with
    shape ``[G, 1, 1]``: T, alpha·T², alpha·T and 1 − alpha.
    """

    @staticmethod
    def forward(  # noqa: PLR0913 — autograd.Function takes the step's tensors positionally
        ctx: torch.autograd.function.FunctionCtx,
        z: torch.Tensor,
        teacher_log_probs: torch.Tensor,
        teacher_probs: torch.Tensor,
        labels: torch.Tensor,
        t_bc: torch.Tensor,
        soft_weight: torch.Tensor,
        soft_grad_weight: torch.Tensor,
        hard_weight: torch.Tensor,
        smoothing: float = 0.0,
        mix_labels: torch.Tensor | None = None,
        mix_lam: torch.Tensor | None = None,
    ) -> torch.Tensor:
        idx = labels.unsqueeze(-1)
        mix = None
        if mix_labels is not None and mix_lam is not None:
            mix = (mix_labels.unsqueeze(-1), mix_lam.unsqueeze(-1).to(z.dtype))
        loss, log_q_t, log_q1 = kd_forward_parts(
            z,
            teacher_log_probs,
            teacher_probs,
            idx,
            t_bc,
            soft_weight,
            hard_weight,
            -1,
            smoothing,
            mix,
        )
        ctx.save_for_backward(log_q_t, teacher_probs, log_q1, idx, soft_grad_weight, hard_weight)
        ctx.smoothing = smoothing  # type: ignore[attr-defined]
        ctx.mix = mix  # type: ignore[attr-defined]
        return loss

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        log_q_t, p, log_q1, idx, soft_grad_weight, hard_weight = ctx.saved_tensors  # type: ignore[attr-defined]
        smoothing = ctx.smoothing  # type: ignore[attr-defined]
        mix = ctx.mix  # type: ignore[attr-defined]
        grad = kd_logit_grad(
            log_q_t, p, log_q1, idx, soft_grad_weight, hard_weight, -1, smoothing, mix
        )
        scale = grad_out.view(-1, 1, 1)
        return grad.mul_(scale), *([None] * 10)


class FusedKDLoss:
    """Per-member constants of a group, computed once; call with a batch to get ``[G]`` losses.

    Same value as :func:`kd_loss_from_log_probs`; its gradient is the closed form above.
    """

    def __init__(
        self, temperature: torch.Tensor, alpha: torch.Tensor, label_smoothing: float = 0.0
    ) -> None:
        self.smoothing = float(label_smoothing)  # ε of the hard term's target
        self.t_bc = temperature.view(-1, 1, 1)
        a = alpha.view(-1, 1, 1)
        self.soft_weight = a * self.t_bc**2
        self.soft_grad_weight = a * self.t_bc
        self.hard_weight = 1.0 - a

    def hard_rows(self, labelled: torch.Tensor) -> torch.Tensor:
        """Per-row hard weights ``[G, B, 1]`` for a batch with unlabeled rows: ``labelled`` is
        ``[G, B]`` (1 labelled, 0 not); a row weighs ``(1 − alpha) · B / n_labelled`` so that
        the batch mean is ``(1 − alpha)`` times the mean cross-entropy of the labelled rows
        (as :func:`kd_loss_from_log_probs`)."""
        n = labelled.sum(-1, keepdim=True).clamp(min=1.0)
        return self.hard_weight * (labelled * (labelled.shape[-1] / n)).unsqueeze(-1)

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_log_probs: torch.Tensor,
        labels: torch.Tensor,
        teacher_probs: torch.Tensor | None = None,
        labelled: torch.Tensor | None = None,
        mix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``[G]`` losses; ``labelled`` (``[G, B]``, floats) marks the labelled rows of a batch
        that has unlabeled ones (their labels may then be any valid class index); ``mix =
        (labels2, lam)`` (``[G, B]`` each): mixup's hard target ``lam·onehot(labels) + (1 −
        lam)·onehot(labels2)``."""
        teacher_log_probs = teacher_log_probs.expand_as(student_logits)
        probs = (
            teacher_log_probs.exp()
            if teacher_probs is None
            else teacher_probs.expand_as(student_logits)
        )
        loss: torch.Tensor = _FusedKD.apply(
            student_logits,
            teacher_log_probs,
            probs,
            labels,
            self.t_bc,
            self.soft_weight,
            self.soft_grad_weight,
            self.hard_weight if labelled is None else self.hard_rows(labelled),
            self.smoothing,
            None if mix is None else mix[0],
            None if mix is None else mix[1],
        )
        return loss


def kd_loss_fused(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: torch.Tensor,
    alpha: torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """:func:`kd_loss_from_log_probs` for grouped inputs ``[G, B, C]`` with one temperature and
    alpha per member (tensors ``[G]``); same value, closed-form gradient (faster backward);
    labels ``-1`` (unlabeled rows) and ``label_smoothing`` as there."""
    unlabeled = labels < 0
    loss = FusedKDLoss(temperature, alpha, label_smoothing)
    if not bool(unlabeled.any()):
        return loss(student_logits, teacher_log_probs, labels)
    return loss(
        student_logits,
        teacher_log_probs,
        labels.clamp(min=0),
        labelled=(~unlabeled).to(student_logits.dtype),
    )
