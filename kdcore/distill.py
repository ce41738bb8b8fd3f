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
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from kdcore._dense import DenseGroup, dense_layers
from kdcore._grouped import BACKENDS, GroupedModel
from kdcore.augment import Augment, EpochViews, OnlineTeacher, PixelScale
from kdcore.exceptions import ParameterError
from kdcore.families import build_student, get_family
from kdcore.losses import FusedKDLoss
from kdcore.recipes import Recipe, make_optimizer
from kdcore.teachers import SoftTargets

__all__ = ["Distiller", "Member"]

# "dense": Linear/ReLU stacks with the passes written out (kdcore._dense); "auto" takes it when
# the students qualify, else the batched path, else vmap (kdcore._grouped).
DISTILLER_BACKENDS = (*BACKENDS, "dense")

log = logging.getLogger(__name__)

Teacher = SoftTargets | OnlineTeacher
# A student: a registered family name (kdcore.families), or a callable returning a fresh module
Family = str | Callable[..., torch.nn.Module]


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

    ``family`` is a registered family name (built with ``arch`` by
    :func:`kdcore.build_student` for the data's input shape and class count) or any callable
    returning a fresh ``nn.Module`` (called as ``family(**arch)`` once per member, under the
    member's seed; every call must build the same architecture).
    """

    def __init__(  # noqa: PLR0913 — keyword-only hyper-parameters, as the estimator contract has them
        self,
        *,
        family: Family = "mlp",
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
    def _active_augment(self) -> Augment | None:
        return self.augment if self.augment is not None and self.augment.active else None

    def _validate(self, d: _Data, members: Sequence[Member]) -> None:
        self._validate_members(members, d.teachers)
        self._validate_teachers(d)
        if len(d.x_train) != len(d.y_train) or len(d.x_val) != len(d.y_val):
            raise ParameterError("x and y must have the same number of samples.")
        if bool((d.y_train < -1).any()) or bool((d.y_val < 0).any()):
            raise ParameterError(
                "labels must be class indices >= 0 (y_train may mark an unlabeled row with -1). "
                f"Got min y_train {int(d.y_train.min())}, min y_val {int(d.y_val.min())}."
            )
        if bool((d.y_train < 0).any()) and not d.teachers:
            raise ParameterError("unlabeled rows (label -1) need teacher soft targets.")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"{name} must be >= 1. Got {getattr(self, name)} instead.")
        if self.backend not in DISTILLER_BACKENDS:
            raise ParameterError(
                f"backend must be one of {DISTILLER_BACKENDS}. Got {self.backend!r} instead."
            )

    @staticmethod
    def _validate_members(members: Sequence[Member], teachers: list[Teacher]) -> None:
        if not members:
            raise ParameterError("fit() needs at least one Member.")
        for m in members:
            if not 0.0 <= m.alpha <= 1.0:
                raise ParameterError(f"Member alpha must be in [0, 1]. Got {m.alpha} instead.")
            if not m.temperature > 0:
                raise ParameterError(
                    f"Member temperature must be > 0. Got {m.temperature} instead."
                )
            if not m.is_scratch and not 0 <= m.teacher < len(teachers):
                raise ParameterError(
                    "Members with alpha > 0 need teacher soft targets (teacher=...); member "
                    f"teacher index {m.teacher} is not among the {len(teachers)} given."
                )

    def _validate_teachers(self, d: _Data) -> None:
        aug = self._active_augment()
        online = aug is not None and aug.teacher == "online"
        if aug is not None:
            aug.check_shape(tuple(d.x_train.shape[1:]))
            if aug.mixup > 0 and bool((d.y_train < 0).any()):
                raise ParameterError(
                    "mixup needs every training row labelled (mixed hard targets); "
                    "y_train has unlabeled rows (label -1)."
                )
        for t in d.teachers:
            if online != (not isinstance(t, SoftTargets)):
                raise ParameterError(
                    "augment.teacher = 'online' takes teachers as callables (a batch of inputs "
                    "-> its SoftTargets), any other fit cached SoftTargets. "
                    f"Got {type(t).__name__}."
                )
            k = aug.views if aug is not None and not online else 1
            if isinstance(t, SoftTargets) and len(t) != k * len(d.x_train):
                views = f" and {k} views of each (kdcore.view_targets)" if k > 1 else ""
                raise ParameterError(
                    f"teacher targets cover {len(t)} samples but x_train has "
                    f"{len(d.x_train)}{views}."
                )
        if len({t.num_classes for t in d.teachers if isinstance(t, SoftTargets)}) > 1:
            raise ParameterError("every teacher must predict the same classes.")

    # ------------------------------------------------------------------ training
    def fit(  # noqa: PLR0913 — the data (four tensors) and the members, then keyword-only options
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
        members: Sequence[Member],
        *,
        teacher: Teacher | Sequence[Teacher] | None = None,
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
        (:func:`kdcore.augment.view_targets` of ``x_train``), for ``"online"`` it is a callable
        run on every epoch's views. ``pixel_scale`` ``(mean, scale)`` per feature undoes
        ``x_train``'s standardisation for the transforms (they move pixels). ``num_classes``:
        the students' outputs (default: the teacher's, else the largest label + 1).
        """
        members = list(members)
        teachers: list[Teacher] = (
            []
            if teacher is None
            else [teacher]
            if isinstance(teacher, SoftTargets) or callable(teacher)
            else list(teacher)
        )
        data = _Data(x_train, y_train, x_val, y_val, teachers, pixel_scale, num_classes)
        self._validate(data, members)
        start = time.perf_counter()
        if not self.grouped and len(members) > 1:
            # the baseline grouping is measured against: each member a group of one, in turn
            solo = Distiller(**(self.get_params() | {"grouped": True}))
            self._join(
                [
                    Distiller(**solo.get_params()).fit(
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
            )
        else:
            self._subs: list[Distiller] | None = None
            run = self._setup(data.to(torch.device(self.device)), members)
            # Dropout (if any) draws from the global RNG: fork it and seed it from the group's
            # seeds so every fit is reproducible and leaves the caller's RNG state untouched.
            device = run.x_train.device
            with torch.random.fork_rng(
                devices=[device.index or 0] if device.type == "cuda" else []
            ):
                torch.manual_seed(run.seed)
                self._train(run, on_epoch)
        self.train_time_s_ = time.perf_counter() - start
        return self

    def _build(self, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        if callable(self.family):
            return self.family(**(self.arch or {}))
        return build_student(self.family, input_shape, num_classes, **(self.arch or {}))

    def _build_group(
        self, d: _Data, members: list[Member], num_classes: int
    ) -> tuple[GroupedModel, Any]:
        """One module per member, built under its seed, stacked on the training device; and
        the dense path's layers (None where it does not apply)."""
        device = d.x_train.device
        modules = []
        for m in members:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(m.seed)
                modules.append(self._build(tuple(d.x_train.shape[1:]), num_classes))
        layers = dense_layers(modules[0]) if self.backend in ("auto", "dense") else None
        if self.backend == "dense" and layers is None:
            raise ParameterError(
                "backend='dense' covers [Flatten] (Linear ReLU [Dropout])* Linear stacks with "
                f"biases; {_name(self.family)} students are not one. Use backend='auto'."
            )
        backend = self.backend
        if backend == "auto" and isinstance(self.family, str):
            backend = get_family(self.family).grouping  # e.g. "loop" for library models
        group = GroupedModel(modules, backend="auto" if layers else backend)
        group.params = {k: v.detach().to(device).requires_grad_() for k, v in group.params.items()}
        group.buffers = {k: v.to(device) for k, v in group.buffers.items()}
        return group, layers

    def _setup(self, d: _Data, members: list[Member]) -> _Run:
        """The group ready to train: one module per member (built under its seed), stacked;
        the dense path or an optimiser; per-member constants, targets and shuffling streams."""
        device = d.x_train.device
        cached = [t for t in d.teachers if isinstance(t, SoftTargets)]
        num_classes = d.num_classes
        if num_classes is None:
            num_classes = int(max(d.y_train.max().item(), d.y_val.max().item())) + 1
            num_classes = cached[0].num_classes if cached else num_classes
        group, layers = self._build_group(d, members, num_classes)
        seed = sum(m.seed * 1_000_003**i for i, m in enumerate(members)) % 2**31
        recipe = self.recipe or Recipe()
        dense = (
            DenseGroup(group, layers, self.lr, self.weight_decay, self.fused_adam, seed, recipe)
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
        aug = self._active_augment()
        views = (
            EpochViews(
                aug,
                d.x_train,
                [(m.seed, m.temperature, None if m.is_scratch else m.teacher) for m in members],
                cast(
                    "list[SoftTargets] | list[OnlineTeacher]",
                    [t.to(device) if isinstance(t, SoftTargets) else t for t in d.teachers],
                ),
                d.pixel_scale,
                num_classes,
                self.eval_batch_size,
            )
            if aug is not None
            else None
        )
        targets = (
            None
            if views is not None
            else self._member_targets(
                members, cached, len(d.x_train), num_classes, d.x_train, device
            )
        )
        # token ids are integers: the loss constants are floats whatever the inputs
        dtype = d.x_train.dtype if d.x_train.is_floating_point() else torch.get_default_dtype()
        return _Run(
            group=group,
            dense=dense,
            optimizer=optimizer,
            members=members,
            temps=torch.tensor([m.temperature for m in members], dtype=dtype, device=device),
            alphas=torch.tensor([m.alpha for m in members], dtype=dtype, device=device),
            targets=targets,
            generators=[torch.Generator().manual_seed(m.seed + 7919) for m in members],
            rows=torch.arange(len(members), device=device).unsqueeze(1),
            views=views,
            recipe=recipe,
            seed=seed,
            x_train=d.x_train,
            y_train=d.y_train,
            x_val=d.x_val,
            y_val=d.y_val,
        )

    def _train(self, r: _Run, on_epoch: Callable[[int, torch.Tensor], None] | None) -> None:
        """The epochs: a fresh permutation per member, one pass (dense or autograd), the
        validation accuracy, and the per-member selection (:class:`_Selection`)."""
        n_train, g_count = len(r.x_train), len(r.members)
        # the selection keeps buffers too: batch norm's running statistics of the best epoch
        sel = _Selection.start({**r.group.params, **r.group.buffers}, g_count, r.x_train.device)
        loss_fn = FusedKDLoss(r.temps, r.alphas, r.recipe.label_smoothing)
        # label -1: an unlabeled row (soft term only; the hard term averages the labelled rows)
        fdtype = r.temps.dtype
        labelled = (r.y_train >= 0).to(fdtype) if bool((r.y_train < 0).any()) else None
        y_train = r.y_train.clamp(min=0)
        live = r.dense.group_params if r.dense else lambda: {**r.group.params, **r.group.buffers}
        feature_major = self._feature_major(r) if r.dense is not None and r.views is None else None
        per_epoch = -(-n_train // self.batch_size)
        for epoch in range(1, self.epochs + 1):
            r.group.train()
            first = (epoch - 1) * per_epoch
            lrs = [
                self.lr * r.recipe.lr_factor(first + b, per_epoch, self.epochs)
                for b in range(per_epoch)
            ]
            order = torch.stack([torch.randperm(n_train, generator=g) for g in r.generators]).to(
                r.x_train.device
            )
            batch = _Epoch(
                order, y_train[order], lrs, None if labelled is None else labelled[order]
            )
            if r.views is not None:
                batch.x, batch.t, batch.mix = r.views.epoch(order, y_train, r.temps)
            if r.dense is not None:
                loss_sum = self._dense_epoch(r, loss_fn, batch, feature_major)
            else:
                loss_sum = self._autograd_epoch(r, loss_fn, batch)
            train_loss = (loss_sum / per_epoch).cpu()
            val_acc = self._accuracy(r.group, r.x_val, r.y_val, r.dense).cpu()
            sel.update(epoch, train_loss, val_acc, live())
            if self.patience is not None:
                sel.frozen |= sel.stale >= self.patience
            if on_epoch is not None:
                on_epoch(epoch, val_acc)
            if bool(sel.frozen.all()):
                break

        if r.dense is not None:
            r.group.params = {k: v.detach() for k, v in r.dense.group_params().items()}
        self._group = r.group
        self._best_params = sel.best_params
        self.models_ = [r.group.member(g, sel.best_params) for g in range(g_count)]
        self.members_ = r.members
        self.val_acc_ = sel.best_acc.cpu().tolist()
        self.best_epoch_ = sel.best_epoch.tolist()
        self.failed_ = sel.failed
        self.history_ = sel.history
        self.epochs_run_ = len(sel.history)

    @staticmethod
    def _feature_major(r: _Run) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The dense path's data, feature-major and made once: ``[d, N]`` inputs and
        ``[G, C, N]`` targets."""
        x_t = r.x_train.reshape(len(r.x_train), -1).t().contiguous()
        t_t = r.targets.transpose(1, 2).contiguous() if r.targets is not None else None
        return x_t, t_t

    @classmethod
    def concat(cls, fits: Sequence[Distiller]) -> Distiller:
        """Fitted distillers of one architecture as one: member ``i`` of the result is the
        ``i``-th member over ``fits`` in order (e.g. students that learnt from a transfer set
        with unlabeled rows next to scratch baselines fitted on its labelled rows alone)."""
        if not fits:
            raise ParameterError("concat needs at least one fitted Distiller. Got none.")
        out = cls(**fits[0].get_params())
        out._join(fits)
        out.train_time_s_ = sum(f.train_time_s_ for f in fits)
        return out

    def _join(self, fits: Sequence[Distiller]) -> None:
        """Take the fitted state of ``fits``, member after member."""
        self._subs = list(fits)
        self.models_ = [m for f in fits for m in f.models_]
        self.members_ = [m for f in fits for m in f.members_]
        self.val_acc_ = [a for f in fits for a in f.val_acc_]
        self.best_epoch_ = [e for f in fits for e in f.best_epoch_]
        self.failed_ = {}
        offset = 0
        for f in fits:
            self.failed_ |= {offset + i: why for i, why in f.failed_.items()}
            offset += len(f.members_)
        self.epochs_run_ = max(f.epochs_run_ for f in fits)
        self.history_ = [
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
            for e in range(self.epochs_run_)
        ]

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
        dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
        zeros = torch.zeros(n_train, num_classes, dtype=dtype, device=device)
        return torch.stack(
            [
                zeros if m.is_scratch else teachers[m.teacher].log_probs(m.temperature).to(device)
                for m in members
            ]
        )

    def _autograd_epoch(self, r: _Run, loss_fn: FusedKDLoss, e: _Epoch) -> torch.Tensor:
        """One epoch through autograd on the batched or vmap path. The epoch's data are
        gathered once per member (``x`` ``[G, N, ...]``, teacher targets ``t`` ``[G, N, C]``;
        ``labelled`` ``[G, N]`` when some rows have no label; ``mix`` mixup's second labels
        and weights ``[G, N]``); every batch is then a contiguous slice (a view), so the step
        itself does no indexing work; batch ``b`` steps at learning rate ``lrs[b]``. Returns
        the summed batch losses."""
        assert r.optimizer is not None
        if r.views is None:
            e.x = r.x_train[e.order]
            e.t = (
                r.targets[torch.arange(len(r.members), device=e.order.device).unsqueeze(1), e.order]
                if r.targets is not None
                else None
            )
        x_epoch, t_epoch = e.x, e.t
        assert x_epoch is not None
        p_epoch = t_epoch.exp() if t_epoch is not None else None
        params = r.group.parameters()
        total = torch.zeros(len(x_epoch), device=x_epoch.device)
        for b, lo in enumerate(range(0, x_epoch.shape[1], self.batch_size)):
            hi = lo + self.batch_size
            logits = r.group(x_epoch[:, lo:hi])
            lab = None if e.labelled is None else e.labelled[:, lo:hi]
            mix_b = None if e.mix is None else (e.mix[0][:, lo:hi], e.mix[1][:, lo:hi])
            if t_epoch is not None and p_epoch is not None:
                losses = loss_fn(
                    logits, t_epoch[:, lo:hi], e.y[:, lo:hi], p_epoch[:, lo:hi], lab, mix_b
                )
            else:
                losses = loss_fn(logits, torch.zeros_like(logits), e.y[:, lo:hi], None, lab, mix_b)
            for p in params:  # cheaper than optimizer.zero_grad() for a handful of tensors
                p.grad = None
            losses.sum().backward()
            for param_group in r.optimizer.param_groups:
                param_group["lr"] = e.lrs[b]
            r.optimizer.step()
            total += losses.detach()
        return total

    def _dense_epoch(
        self,
        r: _Run,
        loss_fn: FusedKDLoss,
        e: _Epoch,
        feature_major: tuple[torch.Tensor, torch.Tensor | None] | None,
    ) -> torch.Tensor:
        """One epoch on the dense path: each member's data gathered feature-major once
        (``[G, d, N]`` inputs, ``[G, C, N]`` targets), then a step per batch (a view). Returns
        the sum of the per-member batch losses."""
        dense = r.dense
        assert dense is not None
        g_count, n_train = e.order.shape
        if feature_major is None:  # views: [G, n, ...] -> feature-major [G, d, n]
            assert e.x is not None
            x_epoch = e.x.reshape(g_count, n_train, -1).transpose(1, 2).contiguous()
            t_t = None if e.t is None else e.t.transpose(1, 2).contiguous()
        else:  # [d, G·N] -> [G, d, N] as a view: the BLAS reads a batch as is
            x_t, targets_t = feature_major
            x_epoch = x_t.index_select(1, e.order.reshape(-1)).view(-1, g_count, n_train)
            x_epoch = x_epoch.transpose(0, 1)
            t_t = (
                None
                if targets_t is None
                else targets_t.gather(2, e.order.unsqueeze(1).expand(-1, targets_t.shape[1], -1))
            )
        g, _, n = x_epoch.shape
        idx = e.y.unsqueeze(1)
        if t_t is None:  # scratch only: the soft term weighs 0
            t_t = x_epoch.new_zeros(g, dense.num_classes, n)
        p_t = t_t.exp()
        mix_t = None if e.mix is None else (e.mix[0].unsqueeze(1), e.mix[1].unsqueeze(1))
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
                    if e.labelled is None
                    else loss_fn.hard_rows(e.labelled[:, lo:hi]).transpose(1, 2),
                    lr=e.lrs[b],
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
        live, live_buffers = self._group.params, self._group.buffers
        best = self._best_params  # the best epoch's parameters and buffers
        self._group.params = {k: best[k] for k in live}
        self._group.buffers = {k: best.get(k, v) for k, v in live_buffers.items()}
        try:
            self._group.eval()
            return self._predict(self._group, x.to(next(iter(live.values())).device)).cpu()
        finally:
            self._group.params, self._group.buffers = live, live_buffers


def _name(family: Family) -> str:
    return repr(family) if isinstance(family, str) else getattr(family, "__name__", repr(family))


@dataclass
class _Data:
    """What :meth:`Distiller.fit` trains on."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    teachers: list[Teacher]
    pixel_scale: PixelScale
    num_classes: int | None

    def to(self, device: torch.device) -> _Data:
        return _Data(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_val.to(device),
            self.y_val.to(device),
            self.teachers,
            self.pixel_scale,
            self.num_classes,
        )


@dataclass
class _Run:
    """A group ready to train (:meth:`Distiller._setup`): its stacked model, the dense path or
    an optimiser, per-member constants, teacher targets and shuffling streams, and the data."""

    group: GroupedModel
    dense: DenseGroup | None
    optimizer: torch.optim.Optimizer | None
    members: list[Member]
    temps: torch.Tensor
    alphas: torch.Tensor
    targets: torch.Tensor | None  # [G, N, C] log-probabilities at each member's T
    generators: list[torch.Generator]
    rows: torch.Tensor  # [G, 1]: member indices, to gather each member's targets
    views: EpochViews | None
    recipe: Recipe
    seed: int  # the group's seed: dropout's RNG and the dense path's
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@dataclass
class _Epoch:
    """One epoch's order and data per member (``x``/``t`` filled by the pass or the views)."""

    order: torch.Tensor  # [G, N]
    y: torch.Tensor
    lrs: list[float]
    labelled: torch.Tensor | None
    x: torch.Tensor | None = None
    t: torch.Tensor | None = None
    mix: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class _Selection:
    """Per member: the parameters of its best validation epoch, that epoch, how many epochs
    since it improved, whether it is frozen (diverged, or out of patience), and the history."""

    best_params: dict[str, torch.Tensor]
    best_acc: torch.Tensor
    best_epoch: torch.Tensor
    stale: torch.Tensor
    frozen: torch.Tensor
    failed: dict[int, str] = field(default_factory=dict)
    history: list[dict[str, list[float]]] = field(default_factory=list)

    @classmethod
    def start(
        cls, params: dict[str, torch.Tensor], g_count: int, device: torch.device
    ) -> _Selection:
        return cls(
            best_params={k: v.detach().clone() for k, v in params.items()},
            best_acc=torch.full((g_count,), -1.0, device=device),
            best_epoch=torch.zeros(g_count, dtype=torch.long),
            stale=torch.zeros(g_count, dtype=torch.long),
            frozen=torch.zeros(g_count, dtype=torch.bool),
        )

    def update(
        self,
        epoch: int,
        train_loss: torch.Tensor,
        val_acc: torch.Tensor,
        live: dict[str, torch.Tensor],
    ) -> None:
        """After ``epoch``: a non-finite loss fails (and freezes) its member; a member more
        accurate on validation than ever keeps this epoch's parameters."""
        g_count = len(val_acc)
        for g in range(g_count):
            if g not in self.failed and not math.isfinite(float(train_loss[g])):
                self.failed[g] = f"diverged: non-finite training loss at epoch {epoch}"
                self.frozen[g] = True
        improved = (val_acc > self.best_acc.cpu()) & ~self.frozen
        if bool(improved.any()):
            mask = improved.to(self.best_acc.device)
            for k, v in live.items():
                shape = (g_count,) + (1,) * (v.dim() - 1)
                self.best_params[k] = torch.where(mask.view(shape), v.detach(), self.best_params[k])
            self.best_acc = torch.where(mask, val_acc.to(mask.device), self.best_acc)
            self.best_epoch[improved] = epoch
        self.stale = torch.where(improved, torch.zeros_like(self.stale), self.stale + 1)
        self.history.append({"train_loss": train_loss.tolist(), "val_acc": val_acc.tolist()})
