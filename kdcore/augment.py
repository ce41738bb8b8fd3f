"""Batched image augmentation with a consistent teacher (Beyer et al. 2022; FKD, Shen & Xing 2022).

An :class:`Augment` turns a training row into a *view*: a random crop of the image padded by
``random_crop`` pixels (zeros in pixel space) on every side, a horizontal flip with
probability ½, and with ``mixup = a > 0`` a convex mix ``λ·view(x_i) + (1 − λ)·view(x_j)``
with a random partner ``j`` and ``λ ~ Beta(a, a)`` per row (the hard-label term then targets
``λ·onehot(y_i) + (1 − λ)·onehot(y_j)``). The student and its teacher always see the same
view, the "consistent teacher":

* ``teacher = "views"``: ``views = K`` views of every row are drawn once from ``seed``
  (:func:`draw_views`) and the teacher runs once on each (:func:`view_targets`); each epoch a
  student takes, per row, one of the K views at random and replays its stored target. The
  teacher's outputs cost ``K·N·C·M`` floats (``M`` ensemble members), the draws 14 bytes per
  view (:meth:`Views.nbytes`); the images themselves are rebuilt from the draws per epoch.
* ``teacher = "online"``: every epoch a student draws fresh views and the teacher runs on
  them (the teacher's cost every epoch, no memory beyond the epoch's views).

Everything is tensor work on whole sets at once (advanced indexing, ``torch.where``), no
per-sample Python. A member's draws come from its own stream, seeded by its seed, so a
student's views do not depend on the group it trains in. Images are augmented in pixel space:
``pixels = (x, mean, scale)`` undoes a per-feature standardisation first and redoes it after,
so a flip or a crop moves pixels, not standardised values (whose per-pixel scale differs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from kdcore.exceptions import ParameterError
from kdcore.teachers import SoftTargets

__all__ = [
    "AUGMENT_TEACHERS",
    "Augment",
    "OnlineTeacher",
    "PixelScale",
    "Views",
    "apply_views",
    "draw_views",
    "view_inputs",
    "view_targets",
]

AUGMENT_TEACHERS = ("views", "online")

# The teacher for `teacher = "online"`: a batch of (augmented) inputs -> its outputs on them.
OnlineTeacher = Callable[[torch.Tensor], SoftTargets]
# (mean, scale) per flattened feature: x = (pixels - mean) / scale; None: x are pixels
PixelScale = tuple[torch.Tensor, torch.Tensor] | None


@dataclass(frozen=True)
class Augment:
    """What a view is (module docstring). ``seed`` seeds the stored views of ``"views"``."""

    random_crop: int = 0
    hflip: bool = False
    mixup: float = 0.0
    teacher: str = "views"
    views: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.random_crop) != self.random_crop or not 0 <= self.random_crop <= 255:
            raise ParameterError(
                f"random_crop must be an integer in [0, 255] (pixels of padding). "
                f"Got {self.random_crop!r} instead."
            )
        if not 0.0 <= float(self.mixup) < float("inf"):
            raise ParameterError(f"mixup must be >= 0 (Beta(a, a)). Got {self.mixup!r} instead.")
        if self.teacher not in AUGMENT_TEACHERS:
            raise ParameterError(
                f"teacher must be one of {AUGMENT_TEACHERS}. Got {self.teacher!r} instead."
            )
        if int(self.views) != self.views or self.views < 1:
            raise ParameterError(f"views must be an integer >= 1. Got {self.views!r} instead.")

    @property
    def active(self) -> bool:
        """Whether any transform is on (an inactive Augment changes nothing)."""
        return self.random_crop > 0 or self.hflip or self.mixup > 0

    def describe(self) -> str:
        """One line for tables, e.g. ``"crop 1, flip, mixup 0.2; teacher: 8 views"``."""
        if not self.active:
            return "none"
        parts = [f"crop {self.random_crop}"] if self.random_crop else []
        parts += ["flip"] if self.hflip else []
        parts += [f"mixup {self.mixup:g}"] if self.mixup else []
        who = f"{self.views} views" if self.teacher == "views" else "online"
        return f"{', '.join(parts)}; teacher: {who}"

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        """Views are of images ``[C, H, W]`` (or ``[H, W]``) no smaller than the padding."""
        if not self.active:
            return
        if len(input_shape) not in (2, 3):
            raise ParameterError(
                "augmentation needs image inputs [C, H, W] or [H, W]. "
                f"Got input shape {list(input_shape)} instead."
            )


@dataclass(frozen=True)
class Views:
    """Draws of the augmentation, every field of one shape ``[..., N]`` (row ``i`` of the set):
    crop offsets ``dy, dx`` in ``[0, 2·pad]``, ``flip``, and for mixup the ``partner`` row with
    its own ``pdy, pdx, pflip`` and the weight ``lam`` of row ``i``."""

    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor
    partner: torch.Tensor
    pdy: torch.Tensor
    pdx: torch.Tensor
    pflip: torch.Tensor
    lam: torch.Tensor

    def select(self, index: tuple[torch.Tensor, ...] | torch.Tensor) -> Views:
        """The same draws at ``index`` (any indexing of the fields' shape)."""
        return Views(*(getattr(self, f.name)[index] for f in fields(self)))

    def flat(self) -> Views:
        """The same draws as one dimension (row-major)."""
        return Views(*(getattr(self, f.name).reshape(-1) for f in fields(self)))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(self))


def draw_views(
    augment: Augment, shape: tuple[int, ...], n_rows: int, rng: np.random.Generator
) -> Views:
    """Draws of shape ``shape`` for a set of ``n_rows`` rows (vectorised, from ``rng``)."""
    pad = int(augment.random_crop)

    def offsets() -> torch.Tensor:
        return torch.from_numpy(rng.integers(0, 2 * pad + 1, size=shape, dtype=np.uint8))

    def flips() -> torch.Tensor:
        on = rng.random(size=shape) < 0.5 if augment.hflip else np.zeros(shape, dtype=bool)
        return torch.from_numpy(on)

    dy, dx, flip = offsets(), offsets(), flips()
    if augment.mixup > 0:
        partner = torch.from_numpy(rng.integers(0, n_rows, size=shape, dtype=np.int32))
        pdy, pdx, pflip = offsets(), offsets(), flips()
        lam = torch.from_numpy(rng.beta(augment.mixup, augment.mixup, size=shape).astype("f4"))
    else:
        partner = torch.zeros(shape, dtype=torch.int32)
        pdy, pdx, pflip = dy, dx, flip
        lam = torch.ones(shape)
    return Views(dy, dx, flip, partner, pdy, pdx, pflip, lam)


def stored_views(augment: Augment, n_rows: int) -> Views:
    """The ``augment.views`` stored views ``[K, N]`` of a set of ``n_rows`` rows (``"views"``)."""
    rng = np.random.default_rng([augment.seed, n_rows, 17])
    return draw_views(augment, (augment.views, n_rows), n_rows, rng)


def _crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """``x`` ``[M, C, H, W]`` pixels: each image cropped at its offsets from the zero-padded
    image, then mirrored where ``flip``; one gather for the whole batch."""
    m, _, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # [M, H', W', C]
        rows = dy.to(x.device, torch.long).unsqueeze(1) + torch.arange(h, device=x.device)
        cols = dx.to(x.device, torch.long).unsqueeze(1) + torch.arange(w, device=x.device)
        batch = torch.arange(m, device=x.device).view(m, 1, 1)
        x = padded[batch, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)
    if bool(flip.any()):
        x = torch.where(flip.to(x.device).view(m, 1, 1, 1), x.flip(-1), x)
    return x


def apply_views(
    pixels: torch.Tensor, rows: torch.Tensor, views: Views, augment: Augment
) -> torch.Tensor:
    """The views of ``rows`` (``[M]`` indices into ``pixels``) drawn in ``views`` (fields
    ``[M]``): ``[M, *image]`` pixels. ``pixels`` is the set's images in pixel space."""
    shape = pixels.shape[1:]
    images = pixels.reshape(len(pixels), -1, *shape[-2:])  # [N, C, H, W]
    pad = int(augment.random_crop)
    out = _crop_flip(images[rows.to(pixels.device)], views.dy, views.dx, views.flip, pad)
    if augment.mixup > 0:
        other = _crop_flip(
            images[views.partner.to(pixels.device, torch.long)],
            views.pdy,
            views.pdx,
            views.pflip,
            pad,
        )
        lam = views.lam.to(out.device, out.dtype).view(-1, 1, 1, 1)
        out = torch.lerp(other, out, lam)  # λ·view(x_i) + (1 − λ)·view(x_j)
    return out.reshape(len(rows), *shape)


def to_pixels(x: torch.Tensor, scale: PixelScale) -> torch.Tensor:
    if scale is None:
        return x
    mean, std = (s.to(x.device, x.dtype).view(x.shape[1:]) for s in scale)
    return x * std + mean


def from_pixels(x: torch.Tensor, scale: PixelScale) -> torch.Tensor:
    if scale is None:
        return x
    mean, std = (s.to(x.device, x.dtype).view(x.shape[1:]) for s in scale)
    return (x - mean) / std


def view_inputs(x: torch.Tensor, augment: Augment, pixel_scale: PixelScale = None) -> torch.Tensor:
    """The ``K`` stored views of every row of ``x`` (``[N, *image]``, standardised as given):
    ``[K, N, *image]``, what students of a ``"views"`` fit see and the teacher ran on."""
    views = stored_views(augment, len(x))
    pixels = to_pixels(x, pixel_scale)
    rows = torch.arange(len(x)).repeat(augment.views)
    out = from_pixels(apply_views(pixels, rows, views.flat(), augment), pixel_scale)
    return out.reshape(augment.views, *x.shape)


def view_targets(
    teacher: OnlineTeacher,
    x: torch.Tensor,
    augment: Augment,
    pixel_scale: PixelScale = None,
    batch_rows: int = 65536,
) -> SoftTargets:
    """The teacher's outputs on the ``K`` stored views of ``x``: one :class:`SoftTargets` over
    ``K·N`` rows, row ``k·N + i`` the view ``k`` of row ``i`` (what :meth:`Distiller.fit` takes
    as the teacher of a ``"views"`` fit on ``x``). The teacher runs on ``batch_rows`` views at
    a time."""
    views = view_inputs(x, augment, pixel_scale).reshape(-1, *x.shape[1:])
    return _run(teacher, views, batch_rows)


def _run(teacher: OnlineTeacher, x: torch.Tensor, batch_rows: int) -> SoftTargets:
    """The teacher on ``x``, ``batch_rows`` rows at a time, as one :class:`SoftTargets`."""
    parts = [teacher(x[i : i + batch_rows]) for i in range(0, len(x), batch_rows)]
    out = parts[0]
    for p in parts[1:]:
        out = out.cat(p)
    return out


class EpochViews:
    """A fit's augmentation: each epoch, every member's views of its shuffled rows, their
    teacher targets and mixup's labels (used by :class:`kdcore.Distiller`).

    Members that share a seed share a stream, hence their views (a distilled student and its
    scratch twin see the same images), and each distinct stream is augmented once.
    """

    def __init__(
        self,
        augment: Augment,
        x: torch.Tensor,
        members: list[tuple[int, float, int | None]],
        teachers: list[SoftTargets] | list[OnlineTeacher],
        pixel_scale: PixelScale,
        num_classes: int,
        eval_batch_size: int = 8192,
    ) -> None:
        self.augment = augment
        self.shape = tuple(x.shape[1:])
        self.pixels = to_pixels(x, pixel_scale)
        self.pixel_scale = pixel_scale
        self.members = members  # (seed, temperature, teacher index or None for scratch)
        self.teachers = teachers
        self.num_classes = num_classes
        self.eval_batch_size = eval_batch_size
        self.seeds = list(dict.fromkeys(seed for seed, _, _ in members))
        # the first member of each seed: its shuffle is the seed's (every member of a seed has it)
        self.first = [next(g for g, m in enumerate(members) if m[0] == s) for s in self.seeds]
        self.which = [self.seeds.index(m[0]) for m in members]  # member -> its seed's views
        self.streams = {s: np.random.default_rng([s, 7331]) for s in self.seeds}
        self.stored = stored_views(augment, len(x)) if augment.teacher == "views" else None

    def epoch(
        self, order: torch.Tensor, y: torch.Tensor, temps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """``x`` ``[G, N, ...]``, teacher log-probabilities at each member's T ``[G, N, C]``
        (None without teachers) and mixup's ``(labels2, lam)`` ``[G, N]`` (None without mixup)
        for an epoch whose member ``g`` visits rows ``order[g]``."""
        n = order.shape[1]
        draws: list[Views] = []
        view_rows: list[torch.Tensor] = []
        for s, g in zip(self.seeds, self.first, strict=True):
            src = order[g].cpu()
            rng = self.streams[s]
            if self.stored is not None:
                k = torch.from_numpy(rng.integers(0, self.augment.views, size=n))
                draws.append(self.stored.select((k, src)))
                view_rows.append(k * n + src)
            else:
                draws.append(draw_views(self.augment, (n,), n, rng))
        rows = order[self.first].reshape(-1)
        flat = Views(*(torch.cat([getattr(d, f.name) for d in draws]) for f in fields(Views)))
        x_seeds = from_pixels(
            apply_views(self.pixels, rows, flat, self.augment), self.pixel_scale
        ).reshape(len(self.seeds), n, *self.shape)
        which = torch.tensor(self.which, device=order.device)
        x_epoch = x_seeds[which]
        mix = None
        if self.augment.mixup > 0:
            partner = flat.partner.to(y.device, torch.long).view(len(self.seeds), n)
            lam = flat.lam.to(self.pixels.device, self.pixels.dtype).view(len(self.seeds), n)
            mix = (y[partner][which], lam[which])
        return x_epoch, self._targets(x_seeds, view_rows, temps), mix

    def _targets(
        self, x_seeds: torch.Tensor, view_rows: list[torch.Tensor], temps: torch.Tensor
    ) -> torch.Tensor | None:
        if not self.teachers:
            return None
        s_count, n = x_seeds.shape[:2]
        online: dict[int, SoftTargets] = {}
        out = []
        for g, (seed, _, teacher) in enumerate(self.members):
            if teacher is None:
                out.append(x_seeds.new_zeros(n, self.num_classes))
                continue
            i = self.seeds.index(seed)
            t = float(temps[g])
            if self.stored is not None:
                stored = self.teachers[teacher]
                assert isinstance(stored, SoftTargets)
                out.append(stored.log_probs(t)[view_rows[i].to(x_seeds.device)])
                continue
            if teacher not in online:
                fn = self.teachers[teacher]
                assert callable(fn)
                flat = x_seeds.reshape(s_count * n, *self.shape)
                online[teacher] = _run(fn, flat, self.eval_batch_size)
            out.append(online[teacher].log_probs(t)[i * n : (i + 1) * n].to(x_seeds.device))
        return torch.stack(out)
