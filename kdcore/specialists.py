"""Hinton's ensembles of specialists (Hinton, Vinyals & Dean 2015, §5): a generalist, specialists
on clusters of confusable classes (every other class merged into a *dustbin*), and their
combination by a KL problem solved for a batch of examples at once.

Combination. For one example let :math:`p_g` be the generalist's distribution over the C
classes, and for each *active* specialist m (its classes :math:`S_m` intersect the
generalist's top-n classes) :math:`p_m` its distribution over :math:`S_m` plus the dustbin.
The system's distribution is

.. math:: q^* = \\arg\\min_{q \\in \\Delta_C}\\; KL(p_g \\| q) + \\sum_{m\\ \\mathrm{active}}
          KL(p_m \\| P_m q)

where :math:`P_m q` keeps :math:`q_c` for :math:`c \\in S_m` and puts
:math:`1 - \\sum_{c \\in S_m} q_c` on the dustbin. Up to constants the objective is the
negative log-likelihood of a multinomial whose observations are partly *coarsened* (the
dustbin mass is "some class outside :math:`S_m`"), so it is convex in q and
:func:`solve_specialist_distribution` minimises it by the EM algorithm for grouped data:

.. math:: q_c \\leftarrow \\frac{1}{1 + |A|}\\Big(p_{g,c} + \\sum_{m \\in A,\\, c \\in S_m}
          p_{m,c} + \\sum_{m \\in A,\\, c \\notin S_m} p_{m,\\mathrm{dust}}
          \\frac{q_c}{1 - \\sum_{c' \\in S_m} q_{c'}}\\Big)

Each step is two matrix products over all examples and specialists (membership matrix
``[M, C]``), never a per-example loop; every step lowers the objective (EM's monotonicity),
and a row stops when none of its probabilities moves by more than ``tol`` (default 1e-6;
the objective is then within ~1e-10 nats of its minimum on random instances) or after
``max_iter`` steps (only rows still moving are iterated). Rows without an active specialist return :math:`p_g` exactly; a row
with one specialist covering every class and an empty dustbin returns
:math:`(p_g + p_m)/2` after one step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdcore.exceptions import ParameterError
from kdcore.recipes import Recipe, make_optimizer

__all__ = [
    "Specialist",
    "SpecialistCombiner",
    "SpecialistTraining",
    "cluster_classes",
    "dustbin_shift",
    "init_from_generalist",
    "membership_matrix",
    "solve_specialist_distribution",
    "specialist_objective",
    "train_specialist",
]


def membership_matrix(
    class_sets: Sequence[Sequence[int]], num_classes: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[M, C]`` float: 1 where class c belongs to specialist m."""
    s = torch.zeros(len(class_sets), num_classes, dtype=torch.float64, device=device)
    for m, classes in enumerate(class_sets):
        s[m, list(classes)] = 1.0
    return s


def _scatter(
    p_specialists: Sequence[torch.Tensor],
    class_sets: Sequence[Sequence[int]],
    num_classes: int,
    like: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Specialists' own-class probabilities on the C classes ``[M, N, C]`` and their dustbin
    probabilities ``[N, M]``."""
    n = like.shape[0]
    own = like.new_zeros(len(class_sets), n, num_classes)
    dust = like.new_zeros(n, len(class_sets))
    for m, (p, classes) in enumerate(zip(p_specialists, class_sets, strict=True)):
        if p.shape != (n, len(classes) + 1):
            raise ParameterError(
                f"specialist {m} must give probabilities [N, |S_m| + 1] = [{n}, "
                f"{len(classes) + 1}]; got {list(p.shape)}."
            )
        own[m][:, list(classes)] = p[:, :-1].to(like.dtype)
        dust[:, m] = p[:, -1].to(like.dtype)
    return own, dust


def specialist_objective(
    q: torch.Tensor,
    p_general: torch.Tensor,
    p_specialists: Sequence[torch.Tensor],
    class_sets: Sequence[Sequence[int]],
    active: torch.Tensor,
) -> torch.Tensor:
    """Per row: :math:`KL(p_g \\| q) + \\sum_{m\\ active} KL(p_m \\| P_m q)` (nats), ``[N]``."""
    q = q.double()
    eps = 1e-300

    def kl(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        p = p.double()
        return torch.where(p > 0, p * (p.clamp_min(eps).log() - r.clamp_min(eps).log()), 0.0).sum(
            -1
        )

    total = kl(p_general, q)
    for m, (p, classes) in enumerate(zip(p_specialists, class_sets, strict=True)):
        on = q[:, list(classes)]
        projected = torch.cat([on, (1 - on.sum(-1, keepdim=True)).clamp_min(0)], dim=-1)
        total = total + active[:, m].double() * kl(p, projected)
    return total


def solve_specialist_distribution(
    p_general: torch.Tensor,
    p_specialists: Sequence[torch.Tensor],
    class_sets: Sequence[Sequence[int]],
    active: torch.Tensor,
    *,
    tol: float = 1e-6,
    max_iter: int = 2000,
) -> torch.Tensor:
    """The distribution q ``[N, C]`` that minimises the specialists' KL objective per row.

    ``p_general`` ``[N, C]``: the generalist's probabilities. ``p_specialists``: one
    ``[N, |S_m| + 1]`` tensor per specialist, the classes of ``class_sets[m]`` in that order
    and the dustbin last. ``active`` ``[N, M]`` bool: the specialists that take part in each
    row. Solved by batched EM in float64 (see the module docstring); returns ``p_general``'s
    dtype.
    """
    if p_general.dim() != 2:
        raise ParameterError(f"p_general must be [N, C]; got {list(p_general.shape)}.")
    n, c = p_general.shape
    if len(p_specialists) != len(class_sets):
        raise ParameterError(
            f"need one class set per specialist; got {len(p_specialists)} specialists and "
            f"{len(class_sets)} class sets."
        )
    if active.shape != (n, len(class_sets)):
        raise ParameterError(
            f"active must be [N, M] = [{n}, {len(class_sets)}]; got {list(active.shape)}."
        )
    pg = p_general.double()
    if not class_sets or not bool(active.any()):
        return p_general.clone()
    a = active.to(pg.device, torch.float64)
    s = membership_matrix(class_sets, c, pg.device)  # [M, C]
    own, dust = _scatter(p_specialists, class_sets, c, pg)
    # Observed (uncoarsened) mass per class: generalist plus active specialists' own classes.
    fixed = pg + torch.einsum("nm,mnc->nc", a, own)
    ad = a * dust  # [N, M]: dustbin mass of active specialists
    z = 1.0 + a.sum(-1, keepdim=True)
    outside = 1.0 - s  # [M, C]
    q = pg.clone()
    # Rows converge at different rates: iterate only on those still moving.
    live = torch.nonzero(a.sum(-1) > 0).flatten()
    fixed, ad, z, ql = fixed[live], ad[live], z[live], q[live]
    for _ in range(max_iter):
        rest = (1.0 - ql @ s.T).clamp_min(1e-300)  # [n, M]: q's mass outside S_m
        q_new = (fixed + ql * ((ad / rest) @ outside)) / z
        q_new = q_new / q_new.sum(-1, keepdim=True)  # guards rounding drift only
        moving = (q_new - ql).abs().amax(-1) > tol
        q[live] = q_new
        if not bool(moving.any()):
            break
        live, fixed, ad, z, ql = live[moving], fixed[moving], ad[moving], z[moving], q_new[moving]
    return q.to(p_general.dtype)


class SpecialistCombiner:
    """The combiner (:class:`kdcore.Combiner` protocol) of a generalist and its specialists.

    ``outputs[0]`` is the generalist's logits ``[N, C]``; ``outputs[1 + m]`` specialist m's
    logits ``[N, |S_m| + 1]`` (its classes, then the dustbin, already corrected for the
    dustbin's oversampling). At temperature T every member's softmax at T enters the KL
    problem; the active specialists of a row are those whose classes meet the generalist's
    top-``top_n`` classes (a ranking that does not depend on T).
    """

    name = "specialists"

    def __init__(
        self, class_sets: Sequence[Sequence[int]], top_n: int = 2, tol: float = 1e-6
    ) -> None:
        if top_n < 1:
            raise ParameterError(f"top_n must be >= 1; got {top_n}.")
        self.class_sets = tuple(tuple(int(c) for c in s) for s in class_sets)
        self.top_n = int(top_n)
        self.tol = tol

    def active(self, generalist_logits: torch.Tensor) -> torch.Tensor:
        """``[N, M]`` bool: specialists whose classes meet the generalist's top-n."""
        n, c = generalist_logits.shape
        top = generalist_logits.topk(min(self.top_n, c), dim=-1).indices
        in_top = torch.zeros(n, c, dtype=torch.bool, device=generalist_logits.device)
        in_top.scatter_(1, top, True)
        s = membership_matrix(self.class_sets, c, generalist_logits.device).bool()
        return (in_top.unsqueeze(1) & s.unsqueeze(0)).any(-1)

    def log_probs(self, outputs: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
        general, specialists = outputs[0], outputs[1:]
        if len(specialists) != len(self.class_sets):
            raise ParameterError(
                f"expected the generalist and {len(self.class_sets)} specialists; got "
                f"{len(outputs)} outputs."
            )
        p_g = F.softmax(general / temperature, dim=-1)
        p_s = [F.softmax(v / temperature, dim=-1) for v in specialists]
        q = solve_specialist_distribution(
            p_g, p_s, self.class_sets, self.active(general), tol=self.tol
        )
        return q.clamp_min(torch.finfo(q.dtype).tiny).log()

    def member_log_probs(self, outputs: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
        """Only the generalist predicts every class: ``[1, N, C]``."""
        return F.log_softmax(outputs[0] / temperature, dim=-1).unsqueeze(0)

    def num_classes(self, outputs: Sequence[torch.Tensor]) -> int:
        return int(outputs[0].shape[-1])

    def __repr__(self) -> str:
        sizes = [len(s) for s in self.class_sets]
        return f"SpecialistCombiner({len(sizes)} specialists of sizes {sizes}, top_n={self.top_n})"


def dustbin_shift(n_own: int, n_other: int) -> float:
    """The dustbin logit's correction for training on half own classes, half dustbin:
    :math:`\\log(n_{other} / n_{own})` (Bayes' rule: natural prior ratio over the 1:1 ratio
    seen in training)."""
    return math.log(max(n_other, 1) / max(n_own, 1))


# ---------------------------------------------------------------------- class clusters
def _kmeans(
    points: torch.Tensor, k: int, generator: torch.Generator, n_init: int = 10, iters: int = 100
) -> torch.Tensor:
    """Lloyd's K-means with k-means++ seeding; the best of ``n_init`` runs by inertia.
    Returns the label of each point."""
    n = len(points)
    best_labels, best_inertia = torch.zeros(n, dtype=torch.long), math.inf
    for _ in range(n_init):
        centres = [points[int(torch.randint(n, (1,), generator=generator))]]
        for _ in range(1, k):
            d2 = torch.cdist(points, torch.stack(centres)).min(-1).values.pow(2)
            if float(d2.sum()) <= 0:
                pick = int(torch.randint(n, (1,), generator=generator))
            else:
                pick = int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))
            centres.append(points[pick])
        c = torch.stack(centres)
        labels = torch.zeros(n, dtype=torch.long)
        for _ in range(iters):
            labels_new = torch.cdist(points, c).argmin(-1)
            for j in range(k):
                if bool((labels_new == j).any()):
                    c[j] = points[labels_new == j].mean(0)
            if bool((labels_new == labels).all()):
                break
            labels = labels_new
        inertia = float((points - c[labels]).pow(2).sum())
        if inertia < best_inertia:
            best_labels, best_inertia = labels.clone(), inertia
    return best_labels


def cluster_classes(
    probs: torch.Tensor,
    n_clusters: int,
    *,
    min_size: int = 2,
    max_size: int | None = None,
    seed: int = 0,
) -> list[list[int]]:
    """Disjoint clusters of classes that a generalist confuses, as in Hinton et al. §5.1.

    Method: the covariance matrix ``[C, C]`` of the generalist's predicted probabilities
    ``probs`` ``[N, C]`` (over the transfer set); K-means (k-means++ seeding, best of 10
    seeded runs) on its columns, so classes predicted together land together. A cluster
    larger than ``max_size`` is split by 2-means until it fits; one smaller than
    ``min_size`` is dropped (its classes stay with the generalist alone). Clusters are
    returned sorted, each sorted by class id.
    """
    c = probs.shape[1]
    if not 1 <= n_clusters <= c:
        raise ParameterError(f"n_clusters must be in [1, {c}]; got {n_clusters}.")
    p = probs.double()
    centred = p - p.mean(0, keepdim=True)
    cov = centred.T @ centred / max(len(p) - 1, 1)
    gen = torch.Generator().manual_seed(seed)
    labels = _kmeans(cov, n_clusters, gen)
    pending = [torch.nonzero(labels == j).flatten().tolist() for j in range(n_clusters)]
    out: list[list[int]] = []
    while pending:
        cluster = pending.pop()
        if max_size is not None and len(cluster) > max_size:
            sub = _kmeans(cov[cluster], 2, gen)
            halves = [[cluster[i] for i in range(len(cluster)) if int(sub[i]) == j] for j in (0, 1)]
            if not halves[0] or not halves[1]:  # identical points: split in order
                halves = [cluster[: len(cluster) // 2], cluster[len(cluster) // 2 :]]
            pending.extend(halves)
        elif len(cluster) >= min_size:
            out.append(sorted(cluster))
    return sorted(out)


# ---------------------------------------------------------------------- specialists
class Specialist(nn.Module):
    """A network with ``|S| + 1`` outputs (its classes, then the dustbin) whose dustbin logit
    carries the oversampling correction :func:`dustbin_shift` as a buffer."""

    def __init__(self, net: nn.Module, n_classes: int, shift: float = 0.0) -> None:
        super().__init__()
        self.net = net
        bias = torch.zeros(n_classes + 1)
        bias[-1] = shift
        self.register_buffer("dustbin_bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x) + self.dustbin_bias
        return out


def init_from_generalist(
    generalist: nn.Module, specialist_net: nn.Module, classes: Sequence[int]
) -> nn.Module:
    """Copy the generalist's weights into a specialist network of the same family.

    Tensors of equal shape are copied; the output layer (first dimension C in the generalist,
    ``|S| + 1`` in the specialist) keeps the rows of ``classes`` and starts the dustbin row
    as the mean of the other rows (weights) and their log-sum-exp (bias), so the dustbin
    begins close to the generalist's total probability of the other classes."""
    src, dst = generalist.state_dict(), specialist_net.state_dict()
    idx = torch.as_tensor(list(classes))
    out = {}
    for key, ref in dst.items():
        g = src[key]
        if g.shape == ref.shape:
            out[key] = g.clone()
            continue
        if g.shape[1:] != ref.shape[1:] or ref.shape[0] != len(idx) + 1:
            raise ParameterError(
                f"layer {key!r}: generalist shape {list(g.shape)} cannot seed specialist shape "
                f"{list(ref.shape)}."
            )
        keep = torch.ones(g.shape[0], dtype=torch.bool)
        keep[idx] = False
        rest = g[keep]
        dust = rest.logsumexp(0) if g.dim() == 1 else rest.mean(0)
        out[key] = torch.cat([g[idx], dust.unsqueeze(0)])
    specialist_net.load_state_dict(out)
    return specialist_net


@dataclass(frozen=True)
class SpecialistTraining:
    """How one specialist trains (:func:`train_specialist`); ``recipe`` None: Adam at a
    constant rate (:class:`kdcore.Recipe`)."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    recipe: Recipe | None = None


def train_specialist(
    generalist: nn.Module,
    family: str,
    arch: dict[str, int | float],
    classes: Sequence[int],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    how: SpecialistTraining | None = None,
) -> tuple[Specialist, float]:
    """Train one specialist; return it (eval mode, on the CPU) and its validation accuracy.

    It starts from the generalist (:func:`init_from_generalist`). Every epoch it sees all
    training examples of its classes and as many others, drawn afresh without replacement
    (its dustbin), with hard-label cross-entropy and the ``recipe``'s optimiser, schedule and
    label smoothing (default: Adam at a constant rate). Its dustbin logit is then shifted
    by :func:`dustbin_shift` so it predicts for the natural class mix; the epoch kept is the
    one with the best accuracy on the whole validation split (own classes vs dustbin),
    corrected. ``train`` and ``val`` are ``(x, y)`` of the whole splits; ``how``: epochs,
    batch size, learning rate, weight decay, seed, device and recipe
    (:class:`SpecialistTraining`)."""
    from kdcore.families import build_student

    how = how or SpecialistTraining()
    (x_train, y_train), (x_val, y_val) = train, val
    epochs, batch_size, lr, seed = how.epochs, how.batch_size, how.lr, how.seed
    classes = [int(c) for c in classes]
    num_classes = int(max(int(y_train.max()), int(y_val.max()))) + 1
    lookup = torch.full((num_classes,), len(classes), dtype=torch.long)
    lookup[classes] = torch.arange(len(classes))
    yt, yv = lookup[y_train], lookup[y_val]
    own = torch.nonzero(yt < len(classes)).flatten()
    other = torch.nonzero(yt == len(classes)).flatten()
    n_dust = min(len(own), len(other))
    shift = dustbin_shift(len(own), len(other)) - dustbin_shift(len(own), n_dust)
    dev = torch.device(how.device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        net = build_student(family, tuple(x_train.shape[1:]), len(classes) + 1, **arch)
        init_from_generalist(generalist, net, classes)
        model = Specialist(net, len(classes), shift).to(dev)
        recipe = how.recipe or Recipe()
        opt = make_optimizer(list(model.parameters()), recipe, lr, how.weight_decay, fused=False)
        per_epoch = -(-(len(own) + n_dust) // batch_size)
        step = 0
        gen = torch.Generator().manual_seed(seed + 7919)
        xv, yv_d = x_val.to(dev), yv.to(dev)

        def val_acc() -> float:
            model.eval()
            with torch.no_grad():
                acc = float((model(xv).argmax(-1) == yv_d).float().mean())
            model.train()
            return acc

        best_acc, best_state = val_acc(), {k: v.clone() for k, v in model.state_dict().items()}
        for _ in range(epochs):
            pick = other[torch.randperm(len(other), generator=gen)[:n_dust]]
            rows = torch.cat([own, pick])
            rows = rows[torch.randperm(len(rows), generator=gen)]
            xe, ye = x_train[rows].to(dev), yt[rows].to(dev)
            model.train()
            for lo in range(0, len(rows), batch_size):
                # The training mix is 1:1, so the dustbin correction is off while training.
                logits = model.net(xe[lo : lo + batch_size])
                loss = F.cross_entropy(
                    logits, ye[lo : lo + batch_size], label_smoothing=recipe.label_smoothing
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for param_group in opt.param_groups:
                    param_group["lr"] = lr * recipe.lr_factor(step, per_epoch, epochs)
                opt.step()
                step += 1
            acc = val_acc()
            if acc > best_acc:
                best_acc, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
    return model.cpu().eval(), best_acc
