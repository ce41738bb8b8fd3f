"""The Distiller: trains a group of same-architecture students against cached soft targets.

Method. Teacher outputs are computed once per split outside the training loop
(:meth:`kdcore.TeacherEnsemble.cache_outputs`); the Distiller only indexes them. Data are
in-memory tensors iterated by a fresh random permutation per epoch and per member (no
DataLoader). All members of a group share the architecture and are stacked along a leading
member dimension (see :class:`kdcore._grouped.GroupedModel`); each has its own seed
(initialisation and shuffling), temperature and alpha, and its loss is summed with the
others', so its gradients — and, with element-wise Adam, its whole trajectory — are those it
would have alone. ``alpha = 0`` is the scratch baseline (hard labels only). Model selection
keeps, per member, the parameters of the epoch with the best *validation* accuracy; with
``patience`` a member stops improving its selection after that many epochs without gain.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kdcore._dense import DenseGroup, dense_layers
from kdcore._grouped import BACKENDS, GroupedModel
from kdcore.augment import Augment, EpochViews, OnlineTeacher, PixelScale
from kdcore.exceptions import ParameterError
from kdcore.families import build_student
from kdcore.losses import FusedKDLoss
from kdcore.recipes import Recipe, make_optimizer
from kdcore.teachers import SoftTargets

__all__ = ["Distiller", "Member"]

# "dense": Linear/ReLU stacks with the passes written out (kdcore._dense); "auto" takes it when
# the students qualify, else the batched path, else vmap (kdcore._grouped).
DISTILLER_BACKENDS = (*BACKENDS, "dense")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One student of a group: its seed, distillation temperature and soft weight alpha, and
    which of the teachers given to :meth:`Distiller.fit` it learns from (index ``teacher``)."""

    seed: int
    temperature: float = 1.0
    alpha: float = 0.0
    teacher: int = 0

    @property
    def is_scratch(self) -> bool:
        return self.alpha == 0.0


class Distiller:
    """Train students of one architecture by Hinton distillation (or from scratch).

    Follows the estimator contract: ``__init__`` stores hyper-parameters, :meth:`fit`
    validates, trains and returns ``self``; learned state ends in ``_``:

    * ``models_`` — one standalone ``nn.Module`` per member (eval mode, best-val epoch), on
      the CPU whatever ``device`` trained it (move it with ``.to(device)``)
    * ``val_acc_`` — best validation accuracy per member (fraction)
    * ``best_epoch_`` — the selected epoch per member (1-based)
    * ``failed_`` — ``{member index: reason}`` for members whose loss became non-finite
    * ``history_`` — per epoch: mean train loss and validation accuracy per member
    * ``train_time_s_`` — wall time of the whole group's training
    """

    def __init__(
        self,
        *,
        family: str = "mlp",
        arch: dict[str, int | float] | None = None,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        patience: int | None = None,
        fused_adam: bool = True,
        device: str = "cpu",
        eval_batch_size: int = 8192,
        grouped: bool = True,
        backend: str = "auto",
        recipe: Recipe | None = None,
        augment: Augment | None = None,
    ) -> None:
        self.family = family
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.fused_adam = fused_adam
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.grouped = grouped
        self.backend = backend
        self.recipe = recipe  # None: Adam at a constant rate (Recipe())
        self.augment = augment  # None: no augmentation (kdcore.augment)

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters as ``__init__`` takes them: ``Distiller(**d.get_params())``
        is an unfitted copy of ``d``."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    # ------------------------------------------------------------------ validation
    def _validate(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
        members: Sequence[Member],
        teachers: list[SoftTargets] | list[OnlineTeacher],
    ) -> None:
        if not members:
            raise ParameterError("fit() needs at least one Member.")
        for m in members:
            if not 0.0 <= m.alpha <= 1.0:
                raise ParameterError(f"Member alpha must be in [0, 1]. Got {m.alpha} instead.")
            if not m.temperature > 0:
                raise ParameterError(
                    f"Member temperature must be > 0. Got {m.temperature} instead."
                )
        for m in members:
            if not m.is_scratch and not 0 <= m.teacher < len(teachers):
                raise ParameterError(
                    "Members with alpha > 0 need teacher soft targets (teacher=...); member "
                    f"teacher index {m.teacher} is not among the {len(teachers)} given."
                )
        aug = self.augment if self.augment is not None and self.augment.active else None
        online = aug is not None and aug.teacher == "online"
        if aug is not None:
            aug.check_shape(tuple(x_train.shape[1:]))
            if aug.mixup > 0 and bool((y_train < 0).any()):
                raise ParameterError(
                    "mixup needs every training row labelled (mixed hard targets); "
                    "y_train has unlabeled rows (label -1)."
                )
        for t in teachers:
            if online != (not isinstance(t, SoftTargets)):
                raise ParameterError(
                    "augment.teacher = 'online' takes teachers as callables (a batch of inputs "
                    "-> its SoftTargets), any other fit cached SoftTargets. "
                    f"Got {type(t).__name__}."
                )
            k = aug.views if aug is not None and not online else 1
            if isinstance(t, SoftTargets) and len(t) != k * len(x_train):
                views = f" and {k} views of each (kdcore.view_targets)" if k > 1 else ""
                raise ParameterError(
                    f"teacher targets cover {len(t)} samples but x_train has {len(x_train)}{views}."
                )
        cached = [t for t in teachers if isinstance(t, SoftTargets)]
        if len({t.num_classes for t in cached}) > 1:
            raise ParameterError("every teacher must predict the same classes.")
        if len(x_train) != len(y_train) or len(x_val) != len(y_val):
            raise ParameterError("x and y must have the same number of samples.")
        if bool((y_train < -1).any()) or bool((y_val < 0).any()):
            raise ParameterError(
                "labels must be class indices >= 0 (y_train may mark an unlabeled row with -1). "
                f"Got min y_train {int(y_train.min())}, min y_val {int(y_val.min())}."
            )
        if bool((y_train < 0).any()) and not teachers:
            raise ParameterError("unlabeled rows (label -1) need teacher soft targets.")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"{name} must be >= 1. Got {getattr(self, name)} instead.")
        if self.backend not in DISTILLER_BACKENDS:
            raise ParameterError(
                f"backend must be one of {DISTILLER_BACKENDS}. Got {self.backend!r} instead."
            )

    # ------------------------------------------------------------------ training
    # Long by design: the epoch loop shares its state (best parameters, stale and frozen
    # members, failures, history) across every step; the epochs themselves are methods.
    def fit(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
        members: Sequence[Member],
        *,
        teacher: SoftTargets
        | OnlineTeacher
        | Sequence[SoftTargets]
        | Sequence[OnlineTeacher]
        | None = None,
        on_epoch: Callable[[int, torch.Tensor], None] | None = None,
        pixel_scale: PixelScale = None,
        num_classes: int | None = None,
    ) -> Distiller:
        """Train ``members`` (same architecture) at once; select each on validation accuracy.

        ``y_train`` may mark a row as unlabeled with ``-1`` (a transfer set's extra rows): it
        enters the soft term only, and the hard term of a batch is the mean cross-entropy of
        its labelled rows, so ``alpha`` keeps weighing the two terms whatever the labelled
        share (a scratch member learns nothing from such a row, but its optimiser still steps;
        train scratch baselines on the labelled rows alone).

        ``teacher`` holds the cached soft targets of the *training* split: one teacher, or
        several (member ``m`` learns from ``teacher[m.teacher]``, e.g. the same student
        taught by two teachers in one group). ``on_epoch(epoch,
        val_acc)`` is called after every epoch with the per-member validation accuracies; it
        may raise (e.g. ``optuna.TrialPruned``) to abandon the fit.

        With an active ``augment`` (:mod:`kdcore.augment`) every member trains on views of its
        rows, drawn from its own seeded stream, and learns from the teacher's output on the
        same view: for ``teacher = "views"`` ``teacher`` holds the outputs on the stored views
        (:func:`kdcore.view_targets` of ``x_train``), for ``"online"`` it is a callable run on
        every epoch's views. ``pixel_scale`` ``(mean, scale)`` per feature undoes ``x_train``'s
        standardisation for the transforms (they move pixels). ``num_classes``: the students'
        outputs (default: the teacher's, else the largest label + 1).
        """
        members = list(members)
        teachers: list[Any] = (
            []
            if teacher is None
            else [teacher]
            if isinstance(teacher, SoftTargets) or callable(teacher)
            else list(teacher)
        )
        self._validate(x_train, y_train, x_val, y_val, members, teachers)
        start = time.perf_counter()
        if not self.grouped and len(members) > 1:
            return self._fit_one_by_one(
                x_train,
                y_train,
                x_val,
                y_val,
                members,
                teacher,
                on_epoch,
                start,
                pixel_scale,
                num_classes,
            )
        self._subs: list[Distiller] | None = None
        device = torch.device(self.device)
        x_train, y_train = x_train.to(device), y_train.to(device)
        x_val, y_val = x_val.to(device), y_val.to(device)
        n_train = len(x_train)
        cached = [t for t in teachers if isinstance(t, SoftTargets)]
        if num_classes is None:
            num_classes = int(max(y_train.max().item(), y_val.max().item())) + 1
            num_classes = cached[0].num_classes if cached else num_classes
        input_shape = tuple(x_train.shape[1:])
        g_count = len(members)

        modules = []
        for m in members:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(m.seed)
                modules.append(
                    build_student(self.family, input_shape, num_classes, **(self.arch or {}))
                )
        layers = dense_layers(modules[0]) if self.backend in ("auto", "dense") else None
        if self.backend == "dense" and layers is None:
            raise ParameterError(
                "backend='dense' covers [Flatten] (Linear ReLU [Dropout])* Linear stacks with "
                f"biases; {self.family!r} students are not one. Use backend='auto'."
            )
        group = GroupedModel(modules, backend="auto" if layers else self.backend)
        group.params = {k: v.detach().to(device).requires_grad_() for k, v in group.params.items()}
        group.buffers = {k: v.to(device) for k, v in group.buffers.items()}
        group_seed = sum(m.seed * 1_000_003**i for i, m in enumerate(members)) % 2**31
        recipe = self.recipe or Recipe()
        dense = (
            DenseGroup(
                group, layers, self.lr, self.weight_decay, self.fused_adam, group_seed, recipe
            )
            if layers
            else None
        )
        optimizer = (
            None
            if dense
            else make_optimizer(
                group.parameters(), recipe, self.lr, self.weight_decay, self.fused_adam
            )
        )

        temps = torch.tensor([m.temperature for m in members], dtype=x_train.dtype, device=device)
        alphas = torch.tensor([m.alpha for m in members], dtype=x_train.dtype, device=device)
        aug = self.augment if self.augment is not None and self.augment.active else None
        views = (
            EpochViews(
                aug,
                x_train,
                [(m.seed, m.temperature, None if m.is_scratch else m.teacher) for m in members],
                [t.to(device) if isinstance(t, SoftTargets) else t for t in teachers],
                pixel_scale,
                num_classes,
                self.eval_batch_size,
            )
            if aug is not None
            else None
        )
        targets = (
            None
            if views is not None
            else self._member_targets(members, cached, n_train, num_classes, x_train, device)
        )
        generators = [torch.Generator().manual_seed(m.seed + 7919) for m in members]
        rows = torch.arange(g_count, device=device).unsqueeze(1)

        # Dropout (if any) draws from the global RNG: fork it and seed it from the group's seeds
        # so every fit is reproducible and leaves the caller's RNG state untouched.
        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(group_seed)
            self._train(
                group,
                dense,
                optimizer,
                x_train,
                y_train,
                x_val,
                y_val,
                members,
                temps,
                alphas,
                targets,
                generators,
                rows,
                on_epoch,
                views,
            )
        self.train_time_s_ = time.perf_counter() - start
        return self

    # Long by design: the loop over epochs keeps the selection state (best parameters, stale,
    # frozen and failed members, history) in locals shared by every epoch; an epoch's steps
    # are the two *_epoch methods.
    def _train(
        self,
        group: GroupedModel,
        dense: DenseGroup | None,
        optimizer: torch.optim.Optimizer | None,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
        members: list[Member],
        temps: torch.Tensor,
        alphas: torch.Tensor,
        targets: torch.Tensor | None,
        generators: list[torch.Generator],
        rows: torch.Tensor,
        on_epoch: Callable[[int, torch.Tensor], None] | None,
        views: EpochViews | None = None,
    ) -> None:
        device = x_train.device
        n_train, g_count = len(x_train), len(members)
        best_params = {k: v.detach().clone() for k, v in group.params.items()}
        best_acc = torch.full((g_count,), -1.0, device=device)
        best_epoch = torch.zeros(g_count, dtype=torch.long)
        stale = torch.zeros(g_count, dtype=torch.long)
        frozen = torch.zeros(g_count, dtype=torch.bool)
        failed: dict[int, str] = {}
        history: list[dict[str, list[float]]] = []
        recipe = self.recipe or Recipe()
        loss_fn = FusedKDLoss(temps, alphas, recipe.label_smoothing)
        # label -1: an unlabeled row (soft term only; the hard term averages the labelled rows)
        labelled = (y_train >= 0).to(x_train.dtype) if bool((y_train < 0).any()) else None
        y_train = y_train.clamp(min=0)
        live = dense.group_params if dense else lambda: group.params
        if dense is not None and views is None:  # feature-major, made once: [d, N], [G, C, N]
            x_t = x_train.reshape(n_train, -1).t().contiguous()
            targets_t = targets.transpose(1, 2).contiguous() if targets is not None else None

        per_epoch = -(-n_train // self.batch_size)
        for epoch in range(1, self.epochs + 1):
            group.train()
            first = (epoch - 1) * per_epoch
            lrs = [
                self.lr * recipe.lr_factor(first + b, per_epoch, self.epochs)
                for b in range(per_epoch)
            ]
            order = torch.stack([torch.randperm(n_train, generator=g) for g in generators]).to(
                device
            )
            y_epoch = y_train[order]
            lab = None if labelled is None else labelled[order]
            mix: tuple[torch.Tensor, torch.Tensor] | None = None
            if views is not None:
                x_epoch, t_epoch, mix = views.epoch(order, y_train, temps)
            if dense is not None:
                if views is not None:  # [G, n, ...] -> feature-major [G, d, n]
                    x_dense = x_epoch.reshape(g_count, n_train, -1).transpose(1, 2).contiguous()
                    t_dense = None if t_epoch is None else t_epoch.transpose(1, 2).contiguous()
                else:  # [d, G·N] -> [G, d, N] as a view: the BLAS reads a batch as is
                    x_dense = x_t.index_select(1, order.reshape(-1)).view(-1, g_count, n_train)
                    x_dense = x_dense.transpose(0, 1)
                    t_dense = (
                        None
                        if targets_t is None
                        else targets_t.gather(
                            2, order.unsqueeze(1).expand(-1, targets_t.shape[1], -1)
                        )
                    )
                loss_sum = self._dense_epoch(
                    dense, loss_fn, x_dense, y_epoch, t_dense, lrs, lab, mix
                )
            else:
                assert optimizer is not None
                if views is None:
                    x_epoch = x_train[order]
                    t_epoch = targets[rows, order] if targets is not None else None
                loss_sum = self._autograd_epoch(
                    group, optimizer, loss_fn, x_epoch, y_epoch, t_epoch, lrs, lab, mix
                )
            n_batches = -(-n_train // self.batch_size)
            train_loss = (loss_sum / n_batches).cpu()
            val_acc = self._accuracy(group, x_val, y_val, dense).cpu()
            for g in range(g_count):
                if g not in failed and not math.isfinite(float(train_loss[g])):
                    failed[g] = f"diverged: non-finite training loss at epoch {epoch}"
                    frozen[g] = True
            improved = (val_acc > best_acc.cpu()) & ~frozen
            if bool(improved.any()):
                mask_dev = improved.to(device)
                for k, v in live().items():
                    shape = (g_count,) + (1,) * (v.dim() - 1)
                    best_params[k] = torch.where(mask_dev.view(shape), v.detach(), best_params[k])
                best_acc = torch.where(mask_dev, val_acc.to(device), best_acc)
                best_epoch[improved] = epoch
            stale = torch.where(improved, torch.zeros_like(stale), stale + 1)
            if self.patience is not None:
                frozen |= stale >= self.patience
            history.append({"train_loss": train_loss.tolist(), "val_acc": val_acc.tolist()})
            if on_epoch is not None:
                on_epoch(epoch, val_acc)
            if bool(frozen.all()):
                break

        if dense is not None:
            group.params = {k: v.detach() for k, v in dense.group_params().items()}
        self._group = group
        self._best_params = best_params
        self.models_ = [group.member(g, best_params) for g in range(g_count)]
        self.members_ = members
        self.val_acc_ = best_acc.cpu().tolist()
        self.best_epoch_ = best_epoch.tolist()
        self.failed_ = failed
        self.history_ = history
        self.epochs_run_ = len(history)

    @classmethod
    def concat(cls, fits: Sequence[Distiller]) -> Distiller:
        """Fitted distillers of one architecture as one: member ``i`` of the result is the
        ``i``-th member over ``fits`` in order (e.g. students that learnt from a transfer set
        with unlabeled rows next to scratch baselines fitted on its labelled rows alone)."""
        if not fits:
            raise ParameterError("concat needs at least one fitted Distiller. Got none.")
        out = cls(**fits[0].get_params())
        out._subs = list(fits)
        out.models_ = [m for f in fits for m in f.models_]
        out.members_ = [m for f in fits for m in f.members_]
        out.val_acc_ = [a for f in fits for a in f.val_acc_]
        out.best_epoch_ = [e for f in fits for e in f.best_epoch_]
        out.failed_ = {}
        offset = 0
        for f in fits:
            out.failed_ |= {offset + i: why for i, why in f.failed_.items()}
            offset += len(f.members_)
        out.epochs_run_ = max(f.epochs_run_ for f in fits)
        out.history_ = [
            {
                k: [
                    v
                    for f in fits
                    for v in (
                        f.history_[e][k] if e < len(f.history_) else [math.nan] * len(f.members_)
                    )
                ]
                for k in ("train_loss", "val_acc")
            }
            for e in range(out.epochs_run_)
        ]
        out.train_time_s_ = sum(f.train_time_s_ for f in fits)
        return out

    def _fit_one_by_one(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
        members: list[Member],
        teacher: Any,
        on_epoch: Callable[[int, torch.Tensor], None] | None,
        start: float,
        pixel_scale: PixelScale = None,
        num_classes: int | None = None,
    ) -> Distiller:
        """``grouped=False``: each member in its own group of one, one after the other (the
        baseline that grouping is measured against); same results, more time."""
        subs = [
            Distiller(**(self.get_params() | {"grouped": True})).fit(
                x_train,
                y_train,
                x_val,
                y_val,
                [m],
                teacher=teacher,
                on_epoch=on_epoch if i == 0 else None,
                pixel_scale=pixel_scale,
                num_classes=num_classes,
            )
            for i, m in enumerate(members)
        ]
        self._subs = subs
        self.models_ = [s.models_[0] for s in subs]
        self.members_ = members
        self.val_acc_ = [s.val_acc_[0] for s in subs]
        self.best_epoch_ = [s.best_epoch_[0] for s in subs]
        self.failed_ = {i: s.failed_[0] for i, s in enumerate(subs) if 0 in s.failed_}
        self.epochs_run_ = max(s.epochs_run_ for s in subs)
        self.history_ = [
            {
                k: [s.history_[e][k][0] if e < len(s.history_) else float("nan") for s in subs]
                for k in ("train_loss", "val_acc")
            }
            for e in range(self.epochs_run_)
        ]
        self.train_time_s_ = time.perf_counter() - start
        return self

    def _member_targets(
        self,
        members: list[Member],
        teachers: list[SoftTargets],
        n_train: int,
        num_classes: int,
        like: torch.Tensor,
        device: torch.device,
    ) -> torch.Tensor | None:
        if not teachers:
            return None
        zeros = torch.zeros(n_train, num_classes, dtype=like.dtype, device=device)
        return torch.stack(
            [
                zeros if m.is_scratch else teachers[m.teacher].log_probs(m.temperature).to(device)
                for m in members
            ]
        )

    def _autograd_epoch(
        self,
        group: GroupedModel,
        optimizer: torch.optim.Optimizer,
        loss_fn: FusedKDLoss,
        x_epoch: torch.Tensor,
        y_epoch: torch.Tensor,
        t_epoch: torch.Tensor | None,
        lrs: list[float],
        labelled: torch.Tensor | None = None,
        mix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One epoch through autograd on the batched or vmap path. The epoch's data are
        gathered once per member (``x_epoch`` ``[G, N, ...]``, ``y_epoch``, teacher targets
        ``t_epoch`` ``[G, N, C]``; ``labelled`` ``[G, N]`` when some rows have no label;
        ``mix`` mixup's second labels and weights ``[G, N]``); every batch is then a
        contiguous slice (a view), so the step itself does no indexing work; batch ``b``
        steps at learning rate ``lrs[b]``. Returns the summed batch losses."""
        p_epoch = t_epoch.exp() if t_epoch is not None else None
        params = group.parameters()
        total = torch.zeros(len(x_epoch), device=x_epoch.device)
        for b, lo in enumerate(range(0, x_epoch.shape[1], self.batch_size)):
            hi = lo + self.batch_size
            logits = group(x_epoch[:, lo:hi])
            lab = None if labelled is None else labelled[:, lo:hi]
            mix_b = None if mix is None else (mix[0][:, lo:hi], mix[1][:, lo:hi])
            if t_epoch is not None and p_epoch is not None:
                losses = loss_fn(
                    logits, t_epoch[:, lo:hi], y_epoch[:, lo:hi], p_epoch[:, lo:hi], lab, mix_b
                )
            else:
                losses = loss_fn(
                    logits, torch.zeros_like(logits), y_epoch[:, lo:hi], None, lab, mix_b
                )
            for p in params:  # cheaper than optimizer.zero_grad() for a handful of tensors
                p.grad = None
            losses.sum().backward()
            for param_group in optimizer.param_groups:
                param_group["lr"] = lrs[b]
            optimizer.step()
            total += losses.detach()
        return total

    def _dense_epoch(
        self,
        dense: DenseGroup,
        loss_fn: FusedKDLoss,
        x_epoch: torch.Tensor,
        y_epoch: torch.Tensor,
        t_t: torch.Tensor | None,
        lrs: list[float],
        labelled: torch.Tensor | None = None,
        mix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One epoch on the dense path: each member's data gathered feature-major once
        (``x_epoch`` ``[G, d, N]``, targets ``t_t`` ``[G, C, N]``), then a step per batch (a
        view). Returns the sum of the per-member batch losses."""
        g, _, n = x_epoch.shape
        idx = y_epoch.unsqueeze(1)
        if t_t is None:  # scratch only: the soft term weighs 0
            t_t = x_epoch.new_zeros(g, dense.num_classes, n)
        p_t = t_t.exp()
        mix_t = None if mix is None else (mix[0].unsqueeze(1), mix[1].unsqueeze(1))
        total = torch.zeros(g, device=x_epoch.device)
        with torch.no_grad():
            for b, lo in enumerate(range(0, n, self.batch_size)):
                hi = lo + self.batch_size
                total += dense.step(
                    x_epoch[..., lo:hi],
                    idx[..., lo:hi],
                    t_t[..., lo:hi],
                    p_t[..., lo:hi],
                    loss_fn,
                    None
                    if labelled is None
                    else loss_fn.hard_rows(labelled[:, lo:hi]).transpose(1, 2),
                    lr=lrs[b],
                    mix=None if mix_t is None else (mix_t[0][..., lo:hi], mix_t[1][..., lo:hi]),
                )
        return total

    @torch.no_grad()
    def _accuracy(
        self,
        group: GroupedModel,
        x: torch.Tensor,
        y: torch.Tensor,
        dense: DenseGroup | None = None,
    ) -> torch.Tensor:
        if dense is not None:
            logits = torch.cat(
                [
                    dense.logits_shared(x[i : i + self.eval_batch_size])
                    for i in range(0, len(x), self.eval_batch_size)
                ],
                dim=1,
            )
            return (logits.argmax(-1) == y).float().mean(-1)
        group.eval()
        logits = self._predict(group, x)
        group.train()
        return (logits.argmax(-1) == y).float().mean(-1)

    def _predict(self, group: GroupedModel, x: torch.Tensor) -> torch.Tensor:
        chunks = [
            group.shared(x[i : i + self.eval_batch_size])
            for i in range(0, len(x), self.eval_batch_size)
        ]
        return torch.cat(chunks, dim=1)

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[G, N, C]`` of every member at its selected epoch."""
        subs: list[Distiller] | None = getattr(self, "_subs", None)
        if subs is not None:
            return torch.cat([s.predict_logits(x) for s in subs])
        live = self._group.params
        self._group.params = self._best_params
        try:
            self._group.eval()
            return self._predict(self._group, x.to(next(iter(live.values())).device)).cpu()
        finally:
            self._group.params = live
