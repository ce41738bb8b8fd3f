"""The usual tutorial-style KD training loop, kept only as the baseline for ``make bench``.

A ``torch.utils.data.DataLoader`` over the training tensors, the teacher ensemble run on every
batch, one student, ``optimizer.step()`` per batch — what most KD code does. It uses the same
hyper-parameters, initialisation, batch order (the same seeded permutation as
:class:`kdcore.Distiller`), loss and best-validation-epoch selection as the fast path, so both
reach the same accuracy and only their cost differs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from kdcore import TeacherEnsemble, build_student
from kdcore.losses import kd_loss_from_log_probs

__all__ = ["reference_kd_fit"]


class _SeededPermutation(Sampler[int]):
    """A new random permutation each epoch from a seeded generator (as the fast path draws)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.n


def reference_kd_fit(  # noqa: PLR0913 — the tutorial loop's data and its knobs, keyword-only
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    ensemble: TeacherEnsemble,
    *,
    width: int,
    depth: int,
    temperature: float,
    alpha: float,
    epochs: int,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[torch.nn.Module, float]:
    """Train one student the usual way; return it (best validation epoch) and its val accuracy."""
    num_classes = int(y_train.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = build_student(
            "mlp", tuple(x_train.shape[1:]), num_classes, width=width, depth=depth
        )
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=batch_size,
        sampler=_SeededPermutation(len(x_train), seed),
    )
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    ensemble.eval()
    best_acc, best_state = -1.0, copy.deepcopy(student.state_dict())
    for _ in range(epochs):
        student.train()
        for xb, yb in loader:
            with torch.no_grad():  # the teacher runs on every batch, every epoch
                soft = ensemble.combiner.log_probs(ensemble.member_outputs(xb), temperature)
            loss = kd_loss_from_log_probs(
                student(xb), soft, yb, temperature=temperature, alpha=alpha
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        student.eval()
        with torch.no_grad():
            acc = float((student(x_val).argmax(-1) == y_val).float().mean())
        if acc > best_acc:
            best_acc, best_state = acc, copy.deepcopy(student.state_dict())
    student.load_state_dict(best_state)
    return student.eval(), best_acc
