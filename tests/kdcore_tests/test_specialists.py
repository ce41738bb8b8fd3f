"""Specialists: the KL combination solver, the combiner, class clusters, specialist training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kdcore import Distiller, Member, Recipe, SoftTargets, TeacherEnsemble, build_student
from kdcore.specialists import (
    SpecialistCombiner,
    SpecialistTraining,
    cluster_classes,
    init_from_generalist,
    solve_specialist_distribution,
    specialist_objective,
    train_specialist,
)


def _instance(n: int, m: int, c: int, size: int, seed: int, p_active: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(c, generator=g)
    sets = [perm[i * size : (i + 1) * size].tolist() for i in range(m)]
    pg = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64) * 2, -1)
    ps = [
        torch.softmax(torch.randn(n, size + 1, generator=g, dtype=torch.float64) * 2, -1)
        for _ in sets
    ]
    active = torch.rand(n, m, generator=g) < p_active
    return pg, ps, sets, active


def test_no_active_specialist_returns_the_generalist_exactly() -> None:
    pg, ps, sets, _ = _instance(50, 3, 12, 4, 0)
    q = solve_specialist_distribution(pg, ps, sets, torch.zeros(50, 3, dtype=torch.bool))
    assert torch.equal(q, pg)
    # and row by row: rows without an active specialist are untouched when others have one
    active = torch.zeros(50, 3, dtype=torch.bool)
    active[::2, 0] = True
    q = solve_specialist_distribution(pg, ps, sets, active)
    assert torch.allclose(q[1::2], pg[1::2], atol=1e-12)
    assert not torch.allclose(q[::2], pg[::2], atol=1e-3)


def test_one_specialist_covering_every_class_with_empty_dustbin_gives_the_mean() -> None:
    g = torch.Generator().manual_seed(1)
    pg = torch.softmax(torch.randn(20, 7, generator=g), -1)
    pm = torch.softmax(torch.randn(20, 7, generator=g), -1)
    order = [3, 0, 6, 1, 5, 2, 4]  # the specialist lists the classes in its own order
    p_spec = torch.cat([pm[:, order], torch.zeros(20, 1)], dim=1)
    q = solve_specialist_distribution(pg, [p_spec], [order], torch.ones(20, 1, dtype=torch.bool))
    assert torch.allclose(q, (pg + pm) / 2, atol=1e-6)


def _reference(pg, ps, sets, active) -> torch.Tensor:
    """A generic optimiser: L-BFGS on softmax logits, float64, run to convergence."""
    z = pg.clamp_min(1e-12).log().clone().requires_grad_()
    opt = torch.optim.LBFGS(
        [z],
        lr=1,
        max_iter=400,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = specialist_objective(torch.softmax(z, -1), pg, ps, sets, active).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(z.detach(), -1)


@pytest.mark.parametrize("seed", range(4))
def test_the_solver_is_not_worse_than_a_reference_optimiser(seed: int) -> None:
    # overlapping class sets too (Hinton's specialists may share classes)
    pg, ps, sets, active = _instance(40, 4, 16, 4, seed, p_active=0.7)
    if seed % 2:
        sets = [[0, 1, 2, 3], [2, 3, 4, 5], [5, 6, 7, 8], [8, 9, 0, 4]]
    q = solve_specialist_distribution(pg, ps, sets, active)
    ref = _reference(pg, ps, sets, active)
    mine = specialist_objective(q, pg, ps, sets, active)
    theirs = specialist_objective(ref, pg, ps, sets, active)
    assert bool((mine <= theirs + 1e-8).all()), float((mine - theirs).max())
    assert torch.allclose(q.sum(-1), torch.ones(40, dtype=q.dtype), atol=1e-9)
    assert bool((q >= 0).all())


def test_every_em_step_lowers_the_objective() -> None:
    pg, ps, sets, active = _instance(200, 5, 25, 5, 7, p_active=0.8)
    values = [
        float(
            specialist_objective(
                solve_specialist_distribution(pg, ps, sets, active, tol=0.0, max_iter=k),
                pg,
                ps,
                sets,
                active,
            ).sum()
        )
        for k in range(1, 12)
    ]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(values))


def test_the_documented_size_is_solved_to_tolerance() -> None:
    """10,000 examples x 10 specialists x 50 classes (its speed: benchmarks/test_bench_specialists)."""
    pg, ps, sets, active = _instance(10_000, 10, 50, 5, 3, p_active=0.3)
    pg, ps = pg.float(), [p.float() for p in ps]
    q = solve_specialist_distribution(pg, ps, sets, active)
    assert q.shape == (10_000, 50) and q.dtype == torch.float32
    tight = solve_specialist_distribution(pg, ps, sets, active, tol=1e-12, max_iter=100_000)
    gap = specialist_objective(q, pg, ps, sets, active) - specialist_objective(
        tight, pg, ps, sets, active
    )
    assert float(gap.max()) < 1e-5


def test_specialists_that_agree_with_the_generalist_change_nothing() -> None:
    """If every specialist's distribution is the generalist's, projected, q is the generalist."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(30, 9, generator=g) * 3
    sets = [[0, 1, 2], [3, 4], [6, 7, 8]]
    pg = torch.softmax(logits, -1)
    outs = [logits]
    for s in sets:
        rest = torch.ones(9, dtype=torch.bool)
        rest[s] = False
        outs.append(torch.cat([logits[:, s], logits[:, rest].logsumexp(-1, keepdim=True)], 1))
    comb = SpecialistCombiner(sets, top_n=3)
    assert torch.allclose(comb.log_probs(outs, 1.0).exp(), pg, atol=1e-5)
    assert comb.num_classes(outs) == 9
    assert comb.member_log_probs(outs, 2.0).shape == (1, 30, 9)
    # activity: the generalist's top-n meets the specialist's classes
    active = comb.active(logits)
    top = logits.topk(3, -1).indices
    for i in range(30):
        for m, s in enumerate(sets):
            assert bool(active[i, m]) == bool(set(top[i].tolist()) & set(s))


def test_cluster_classes_recovers_planted_groups_of_confused_classes() -> None:
    g = torch.Generator().manual_seed(0)
    groups = [[0, 4, 8], [1, 5, 9, 11], [2, 6], [3, 7, 10]]
    n = 3000
    true = torch.randint(12, (n,), generator=g)
    logits = torch.full((n, 12), -4.0)
    for grp in groups:
        for c in grp:  # mass spread over the true class's siblings
            rows = torch.isin(true, torch.tensor(grp))
            logits[rows, c] = torch.randn(int(rows.sum()), generator=g)
    logits[torch.arange(n), true] += 2.0
    probs = torch.softmax(logits, -1)
    assert cluster_classes(probs, 4, seed=0) == sorted(sorted(s) for s in groups)
    # size range: too-large clusters split, too-small dropped
    split = cluster_classes(probs, 4, min_size=2, max_size=3, seed=0)
    assert all(2 <= len(s) <= 3 for s in split)
    assert all(any(set(s) <= set(grp) for grp in groups) for s in split)  # never mixes groups
    assert len({c for s in split for c in s}) >= 10  # at most a split-off single class dropped
    assert [2, 6] not in cluster_classes(probs, 4, min_size=3, seed=0)


def _blobs(n: int, c: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, 6, generator=torch.Generator().manual_seed(99)) * 1.5
    y = torch.randint(c, (n,), generator=g)
    return centres[y] + torch.randn(n, 6, generator=g), y


def test_a_specialist_starts_from_the_generalist_and_corrects_its_dustbin() -> None:
    x, y = _blobs(1200, 8, 0)
    xv, yv = _blobs(400, 8, 1)
    arch = {"width": 32, "depth": 2}
    generalist = Distiller(arch=arch, epochs=3).fit(x, y, xv, yv, [Member(0)]).models_[0]
    classes = [5, 2]
    net = init_from_generalist(generalist, build_student("mlp", (6,), 3, **arch), classes)
    with torch.no_grad():
        assert torch.allclose(net(xv)[:, :2], generalist(xv)[:, classes], atol=1e-6)
    spec, val_acc = train_specialist(
        generalist, "mlp", arch, classes, (x, y), (xv, yv), SpecialistTraining(epochs=3)
    )
    n_own = int(torch.isin(y, torch.tensor(classes)).sum())
    assert float(spec.dustbin_bias[-1]) == pytest.approx(math.log((len(y) - n_own) / n_own))
    assert float(spec.dustbin_bias[:-1].abs().sum()) == 0.0
    assert 0.0 <= val_acc <= 1.0
    again, _ = train_specialist(
        generalist, "mlp", arch, classes, (x, y), (xv, yv), SpecialistTraining(epochs=3)
    )
    with torch.no_grad():
        assert torch.equal(spec(xv), again(xv))  # seeded
    # the system is a teacher like any ensemble: combiner protocol, soft targets at any T
    system = TeacherEnsemble([generalist, spec], combine=SpecialistCombiner([classes], top_n=2))
    targets = system.eval().cache_outputs({"train": x})["train"]
    assert targets.num_classes == 8 and targets.num_members == 2
    lp = targets.log_probs(4.0)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(len(x)), atol=1e-5)


def test_a_specialist_trains_with_its_recipe() -> None:
    """The default recipe is the plain Adam loop; another recipe (SGD, cosine with warm-up,
    label smoothing) is followed and gives another specialist."""
    x, y = _blobs(1200, 8, 0)
    xv, yv = _blobs(400, 8, 1)
    arch = {"width": 32, "depth": 2}
    generalist = Distiller(arch=arch, epochs=3).fit(x, y, xv, yv, [Member(0)]).models_[0]
    args = (generalist, "mlp", arch, [5, 2], (x, y), (xv, yv))
    plain, _ = train_specialist(*args, SpecialistTraining(epochs=5))
    same, _ = train_specialist(*args, SpecialistTraining(epochs=5, recipe=Recipe()))
    sgd = Recipe(optimizer="sgd", schedule="cosine", warmup_epochs=1, label_smoothing=0.1)
    other, _ = train_specialist(*args, SpecialistTraining(epochs=5, lr=0.05, recipe=sgd))
    with torch.no_grad():
        assert torch.equal(plain(xv), same(xv))
        assert not torch.allclose(plain(xv), other(xv), atol=1e-3)


def test_members_of_one_group_can_learn_from_different_teachers() -> None:
    x, y = _blobs(600, 4, 0)
    xv, yv = _blobs(200, 4, 1)
    g = torch.Generator().manual_seed(3)
    a = SoftTargets(torch.randn(len(x), 4, generator=g) * 2)
    b = SoftTargets(torch.randn(len(x), 4, generator=g) * 2)
    kw = {"arch": {"width": 16, "depth": 1}, "epochs": 3, "batch_size": 64}
    both = Distiller(**kw).fit(
        x,
        y,
        xv,
        yv,
        [Member(0, 3.0, 0.9, teacher=0), Member(0, 3.0, 0.9, teacher=1)],
        teacher=[a, b],
    )
    only_b = Distiller(**kw).fit(x, y, xv, yv, [Member(0, 3.0, 0.9)], teacher=b)
    logits = both.predict_logits(xv)
    assert torch.allclose(logits[1], only_b.predict_logits(xv)[0], atol=1e-4)
    assert not torch.allclose(logits[0], logits[1], atol=1e-3)
    with pytest.raises(ValueError, match="teacher index 2"):
        Distiller(**kw).fit(x, y, xv, yv, [Member(0, 3.0, 0.9, teacher=2)], teacher=[a, b])
