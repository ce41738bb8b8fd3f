"""Distillation losses (Hinton, Vinyals & Dean 2015).

All functions are pure: tensors in, tensors out. They accept an optional leading *group*
dimension so that several students (a "group") can be trained at once, each with its own
temperature and soft/hard weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kd_loss", "kd_loss_from_log_probs", "soft_log_probs"]


def soft_log_probs(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """log softmax(logits / T) along the last dimension (stable for |logits| ~ 1e4)."""
    return F.log_softmax(logits / temperature, dim=-1)


def _as_group_tensor(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def kd_loss_from_log_probs(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    alpha: float | torch.Tensor,
) -> torch.Tensor:
    r"""Hinton's distillation loss with the teacher given as log-probabilities at T.

    ``teacher_log_probs`` must already be :math:`\log p_T` (the teacher's, or the teacher
    ensemble's, soft targets at the same temperature). See :func:`kd_loss` for the math.

    Shapes: ``student_logits`` ``[..., B, C]``; ``teacher_log_probs`` broadcastable to it;
    ``labels`` ``[..., B]`` (int64). ``temperature`` and ``alpha`` are floats or tensors of
    shape ``[...]`` (one value per group member). Returns a tensor of shape ``[...]``:
    a scalar for ungrouped inputs, one loss per member otherwise.
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
    ce = F.cross_entropy(
        student_logits.reshape(-1, num_classes), labels.reshape(-1), reduction="none"
    ).reshape(labels.shape)
    hard = ce.mean(dim=-1)
    return alpha_t * temperature_t**2 * soft + (1.0 - alpha_t) * hard


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    alpha: float | torch.Tensor,
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
        student_logits, teacher_log_probs, labels, temperature=temperature, alpha=alpha
    )
