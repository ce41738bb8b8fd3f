from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdcore import kd_loss
from kdcore.losses import kd_loss_from_log_probs
from kdcore.teachers import combine_log_probs


def _logits(
    b: int = 8, c: int = 5, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    return torch.randn(b, c, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
def test_zero_soft_loss_and_gradient_when_student_equals_teacher(temperature: float) -> None:
    z = _logits()
    student = z.clone().requires_grad_()
    labels = torch.zeros(8, dtype=torch.long)
    loss = kd_loss(student, z, labels, temperature=temperature, alpha=1.0)
    loss.backward()
    assert abs(loss.item()) < 1e-6
    assert student.grad is not None and float(student.grad.abs().max()) < 1e-6


def test_matches_explicit_hinton_formula() -> None:
    s, t = _logits(seed=1, dtype=torch.float64), _logits(seed=2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    T, alpha = 3.0, 0.7
    p = torch.softmax(t / T, -1)
    q = torch.softmax(s / T, -1)
    kl = (p * (p.log() - q.log())).sum(-1).mean()  # batchmean
    ce = -torch.log_softmax(s, -1)[torch.arange(8), y].mean()
    expected = alpha * T**2 * kl + (1 - alpha) * ce
    got = kd_loss(s, t, y, temperature=T, alpha=alpha)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_soft_term_uses_batchmean_not_mean() -> None:
    s, t = _logits(seed=3), _logits(seed=4)
    y = torch.zeros(8, dtype=torch.long)
    got = kd_loss(s, t, y, temperature=1.0, alpha=1.0)
    log_q, log_p = F.log_softmax(s, -1), F.log_softmax(t, -1)
    batchmean = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    mean = (
        F.kl_div(log_q, log_p, log_target=True, reduction="sum") / s.numel()
    )  # the classic bug: / C too
    assert torch.allclose(got, batchmean, atol=1e-6)
    assert not torch.allclose(got, mean, atol=1e-6)


def test_kl_is_not_negative_and_arguments_are_in_order() -> None:
    s, t = _logits(seed=5), _logits(seed=6)
    y = torch.zeros(8, dtype=torch.long)
    loss = kd_loss(s, t, y, temperature=2.0, alpha=1.0)
    assert loss.item() > 0
    # KL(p_teacher || q_student), not the reverse.
    p, q = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    forward_kl = 4 * (p * (p / q).log()).sum(-1).mean()
    reverse_kl = 4 * (q * (q / p).log()).sum(-1).mean()
    assert torch.allclose(loss, forward_kl, atol=1e-5)
    assert not torch.allclose(loss, reverse_kl, atol=1e-3)


def test_alpha_zero_is_plain_cross_entropy() -> None:
    s, t = _logits(seed=7), _logits(seed=8)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    assert torch.allclose(kd_loss(s, t, y, temperature=5.0, alpha=0.0), F.cross_entropy(s, y))


def _soft_grad(s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    s = s.clone().requires_grad_()
    kd_loss(
        s, t, torch.zeros(len(s), dtype=torch.long), temperature=temperature, alpha=1.0
    ).backward()
    assert s.grad is not None
    return s.grad


def test_t_squared_keeps_soft_gradient_scale_stable_across_temperature() -> None:
    s, t = _logits(seed=9, dtype=torch.float64), _logits(seed=10, dtype=torch.float64)
    norms = {T: float(_soft_grad(s, t, T).norm()) for T in (5.0, 10.0, 20.0, 40.0)}
    # With T^2 the magnitude converges; without it, it would shrink 4x per doubling of T.
    for lo, hi in ((5.0, 10.0), (10.0, 20.0), (20.0, 40.0)):
        assert 0.8 < norms[hi] / norms[lo] < 1.25, norms


def test_high_temperature_gradient_tends_to_logit_matching() -> None:
    """Hinton eq. 4: with zero-mean logits, T^2 * dC/dz_i -> (z_i - v_i) / N per sample."""
    b, n = 16, 10
    z = _logits(b, n, seed=11, dtype=torch.float64)
    v = _logits(b, n, seed=12, dtype=torch.float64)
    z, v = z - z.mean(-1, keepdim=True), v - v.mean(-1, keepdim=True)
    target = (z - v) / n / b  # batchmean divides by the batch size
    errors = []
    for T in (10.0, 100.0, 1000.0):
        grad = _soft_grad(z, v, T)  # the loss already carries T^2
        errors.append(float((grad - target).norm() / target.norm()))
    assert errors[0] < 0.3
    assert errors[1] < errors[0] / 5 and errors[2] < errors[1] / 5, errors
    assert errors[2] < 5e-3


def test_finite_with_huge_logits() -> None:
    s = (_logits(seed=13) * 5e3).requires_grad_()
    t = _logits(seed=14) * 5e3
    y = torch.zeros(8, dtype=torch.long)
    loss = kd_loss(s, t, y, temperature=1.0, alpha=0.5)
    loss.backward()
    assert math.isfinite(loss.item())
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_grouped_losses_equal_individual_losses() -> None:
    s = torch.stack([_logits(seed=20 + g) for g in range(3)])
    t = _logits(seed=30)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    temps, alphas = torch.tensor([1.0, 4.0, 10.0]), torch.tensor([0.0, 0.5, 1.0])
    t_lp = torch.stack([F.log_softmax(t / T, -1) for T in temps])
    grouped = kd_loss_from_log_probs(s, t_lp, y.expand(3, -1), temperature=temps, alpha=alphas)
    single = torch.stack(
        [kd_loss(s[g], t, y, temperature=float(temps[g]), alpha=float(alphas[g])) for g in range(3)]
    )
    assert grouped.shape == (3,)
    assert torch.allclose(grouped, single, atol=1e-6)


def test_ensemble_soft_targets_mean_of_probabilities_and_of_logits() -> None:
    members = torch.stack([_logits(seed=40 + k) for k in range(4)])
    T = 3.0
    mean_prob = torch.softmax(members / T, -1).mean(0)
    assert torch.allclose(combine_log_probs(members, T, "mean_prob").exp(), mean_prob, atol=1e-6)
    mean_logit = torch.softmax(members.mean(0) / T, -1)
    assert torch.allclose(combine_log_probs(members, T, "mean_logit").exp(), mean_logit, atol=1e-6)
    with pytest.raises(ValueError, match="mean_prob"):
        combine_log_probs(members, T, "median")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("unlabeled", [False, True])
def test_fused_loss_matches_the_reference_value_and_gradient(
    unlabeled: bool, smoothing: float
) -> None:
    """The closed-form loss and gradient against autograd through the reference (which
    smooths with F.cross_entropy's label_smoothing), with unlabeled rows and smoothing."""
    from kdcore.losses import kd_loss_fused

    g, b, c = 3, 16, 7
    z = torch.randn(g, b, c, dtype=torch.float64, generator=torch.Generator().manual_seed(50)) * 3
    t_lp = F.log_softmax(
        torch.randn(g, b, c, dtype=torch.float64, generator=torch.Generator().manual_seed(51)), -1
    )
    y = torch.randint(0, c, (g, b), generator=torch.Generator().manual_seed(52))
    if unlabeled:  # rows without a label (-1), a different share per member, one member none
        y[0, ::3] = -1
        y[1, :11] = -1
        y[2] = -1
    temps = torch.tensor([1.0, 4.0, 20.0], dtype=torch.float64)
    alphas = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    kw = {"temperature": temps, "alpha": alphas, "label_smoothing": smoothing}
    ref = kd_loss_from_log_probs(z1, t_lp, y, **kw)
    fused = kd_loss_fused(z2, t_lp, y, **kw)
    assert torch.allclose(ref, fused, atol=1e-12)
    (ref * weights).sum().backward()
    (fused * weights).sum().backward()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda zz: kd_loss_fused(zz, t_lp, y, **kw),
        (z.clone().requires_grad_(),),
    )


def test_unlabeled_rows_enter_the_soft_term_only() -> None:
    """Label -1: the row's soft term counts, the hard term is the labelled rows' mean CE."""
    z = torch.randn(1, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t_lp = F.log_softmax(torch.randn(1, 6, 4, dtype=torch.float64), -1)
    y = torch.tensor([[0, 1, 2, -1, -1, 3]])
    t, a = torch.tensor([2.0], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    got = kd_loss_from_log_probs(z, t_lp, y, temperature=t, alpha=a)
    soft = (t_lp.exp() * (t_lp - F.log_softmax(z / 2.0, -1))).sum(-1).mean()
    lab = y[0] >= 0
    hard = F.cross_entropy(z[0][lab], y[0][lab])
    assert torch.allclose(got, 0.3 * 4.0 * soft + 0.7 * hard)
