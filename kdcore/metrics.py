"""Prediction metrics: accuracy and fidelity to the teacher (fractions and nats)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

__all__ = [
    "accuracy",
    "agreement",
    "expected_calibration_error",
    "kl_to_teacher",
    "mean_max_prob",
]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy as a fraction in [0, 1] (``logits`` may be log-probabilities)."""
    return float((logits.argmax(-1) == labels).float().mean())


def agreement(a_logits: torch.Tensor, b_logits: torch.Tensor) -> float:
    """Fraction of samples on which the two models' top-1 predictions agree."""
    return float((a_logits.argmax(-1) == b_logits.argmax(-1)).float().mean())


def kl_to_teacher(teacher_log_probs: torch.Tensor, student_logits: torch.Tensor) -> float:
    """KL(teacher ‖ student) at T = 1 in nats, summed over classes, averaged over samples."""
    log_q = F.log_softmax(student_logits, dim=-1)
    return float(F.kl_div(log_q, teacher_log_probs, log_target=True, reduction="batchmean"))


def mean_max_prob(log_probs: torch.Tensor) -> float:
    """Mean over samples of the largest class probability (how one-hot the targets are)."""
    return float(log_probs.exp().max(dim=-1).values.mean())


def expected_calibration_error(
    logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15
) -> float:
    """ECE with ``n_bins`` equal-width confidence bins: Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|."""
    probs = F.softmax(logits.float(), dim=-1)
    conf, pred = probs.max(dim=-1)
    correct = (pred == labels).float()
    edges = torch.linspace(0.0, 1.0, n_bins + 1)
    ece = torch.zeros(())
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return float(ece)
