"""Top-k distillation (kdcore.losses.topk_kd_loss): teacher and student renormalised over the
teacher's kept classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdcore.losses import kd_loss, topk_kd_loss


def _data(b: int = 6, c: int = 7, group: tuple[int, ...] = ()) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(*group, b, c, generator=g, dtype=torch.float64) * 3
    v = torch.randn(b, c, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, c, (*group, b), generator=g)
    return z, v, y


def test_keeping_every_class_in_any_order_is_the_dense_loss() -> None:
    z, v, y = _data()
    for order in (torch.arange(7), torch.randperm(7, generator=torch.Generator().manual_seed(1))):
        idx = order.expand(6, 7)
        got = topk_kd_loss(z, idx, v.gather(-1, idx), y, temperature=2.5, alpha=0.7)
        want = kd_loss(z, v, y, temperature=2.5, alpha=0.7)
        torch.testing.assert_close(got, want)


def test_a_group_of_students_with_their_own_temperature_and_alpha() -> None:
    z, v, y = _data(group=(3,))
    idx = torch.arange(7).expand(6, 7)
    t, a = (
        torch.tensor([1.0, 2.0, 4.0], dtype=z.dtype),
        torch.tensor([0.5, 0.9, 1.0], dtype=z.dtype),
    )
    got = topk_kd_loss(z, idx, v, y, temperature=t, alpha=a)
    torch.testing.assert_close(got, kd_loss(z, v, y, temperature=t, alpha=a))


def test_the_soft_term_is_zero_when_the_student_copies_the_kept_logits() -> None:
    """Renormalised over the same support, a student whose kept logits equal the teacher's
    (up to a constant) has no soft loss, whatever it puts elsewhere; normalising the student
    over all classes (maxtext's bug) would not."""
    z, v, y = _data()
    idx = v.topk(3, dim=-1).indices
    z = z.clone()
    z.scatter_(-1, idx, v.gather(-1, idx) + 5.0)
    loss = topk_kd_loss(z, idx, v.gather(-1, idx), y, temperature=2.0, alpha=1.0)
    assert float(loss) < 1e-12
    p = F.softmax(v.gather(-1, idx) / 2.0, dim=-1)
    wrong = (p * (p.log() - F.log_softmax(z / 2.0, dim=-1).gather(-1, idx))).sum(-1).mean()
    assert float(wrong) > 1e-3


def test_the_gradient_is_checked_and_zero_outside_the_kept_classes() -> None:
    z, v, y = _data()
    idx = v.topk(3, dim=-1).indices
    top = v.gather(-1, idx)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: topk_kd_loss(s, idx, top, y, temperature=3.0, alpha=0.6), (z,)
    )
    topk_kd_loss(z, idx, top, y, temperature=3.0, alpha=1.0).backward()
    outside = torch.ones_like(z, dtype=torch.bool).scatter_(-1, idx, False)
    assert float(z.grad[outside].abs().max()) == 0.0
    assert float(z.grad[~outside].abs().max()) > 0.0
