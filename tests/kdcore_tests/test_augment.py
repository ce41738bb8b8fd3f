"""Augmentation with a consistent teacher (kdcore.augment): views are the transforms they
claim to be, every target is the teacher's output on the exact view, grouped training equals
members trained alone, and mixup's closed-form gradient is the reference's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdcore import Distiller, Member, ParameterError, SoftTargets, TeacherEnsemble
from kdcore.augment import Augment, EpochViews, stored_views, view_inputs, view_targets
from kdcore.losses import FusedKDLoss

SHAPE = (1, 8, 8)


def _data(n: int = 240, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPE, generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.fixture(scope="module")
def teacher() -> TeacherEnsemble:
    x, y = _data()
    xv, yv = _data(80, 1)
    fit = Distiller(family="cnn", arch={"channels": 4, "blocks": 1}, epochs=2).fit(
        x, y, xv, yv, [Member(0), Member(1)]
    )
    return TeacherEnsemble(fit.models_).eval()


def _online(ens: TeacherEnsemble):  # type: ignore[no-untyped-def]
    return lambda batch: ens.cache_outputs({"x": batch})["x"]


def _reference_view(img: torch.Tensor, dy: int, dx: int, flip: bool, pad: int) -> torch.Tensor:
    out = F.pad(img, (pad,) * 4)[..., dy : dy + img.shape[-2], dx : dx + img.shape[-1]]
    return out.flip(-1) if flip else out


def test_a_view_is_a_padded_crop_then_maybe_a_flip() -> None:
    x, _ = _data(50)
    aug = Augment(random_crop=2, hflip=True, views=4, seed=3)
    views = view_inputs(x, aug)
    assert views.shape == (4, *x.shape)
    flips = 0
    for k in range(4):
        for i in range(50):
            candidates = [
                _reference_view(x[i], dy, dx, f, 2)
                for dy in range(5)
                for dx in range(5)
                for f in (False, True)
            ]
            hits = [j for j, c in enumerate(candidates) if torch.equal(c, views[k, i])]
            assert hits, f"view {k} of row {i} is no crop/flip of it"
            flips += hits[0] % 2
    assert 60 < flips < 140  # about half of the 200 views are mirrored
    assert torch.equal(view_inputs(x, aug), views)  # stored views are a function of the seed
    assert not torch.equal(view_inputs(x, Augment(random_crop=2, hflip=True, views=4)), views)


def test_views_move_pixels_not_standardised_values() -> None:
    x, _ = _data(20)
    mean = torch.linspace(-1, 1, 64)
    scale = torch.linspace(0.5, 2, 64)
    aug = Augment(hflip=True, views=2, seed=1)
    got = view_inputs(x, aug, (mean, scale))
    pixels = x * scale.view(SHAPE) + mean.view(SHAPE)
    for k in range(2):
        for i in range(20):
            raw = got[k, i] * scale.view(SHAPE) + mean.view(SHAPE)
            assert torch.allclose(raw, pixels[i], atol=1e-5) or torch.allclose(
                raw, pixels[i].flip(-1), atol=1e-5
            )


def test_mixup_views_mix_two_views_with_beta_weights() -> None:
    x, _ = _data(400)
    aug = Augment(mixup=0.4, views=1, seed=2)
    views = view_inputs(x, aug)[0]
    draws = stored_views(aug, len(x))
    assert draws.nbytes == 14 * len(x)  # the draws of one view: 14 bytes, as documented
    lam = draws.lam[0]
    partner = draws.partner[0].long()
    assert torch.allclose(
        views,
        lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[partner],
        atol=1e-6,
    )
    # Beta(0.4, 0.4): mean 1/2, variance 1/(4·(2·0.4 + 1)) ≈ 0.139
    assert abs(float(lam.mean()) - 0.5) < 0.05
    assert abs(float(lam.var()) - 1 / (4 * 1.8)) < 0.03


def test_the_target_of_a_stored_view_is_the_teachers_output_on_that_view(
    teacher: TeacherEnsemble,
) -> None:
    x, _ = _data(60)
    aug = Augment(random_crop=1, hflip=True, mixup=0.3, views=3, seed=5)
    targets = view_targets(_online(teacher), x, aug, batch_rows=50)
    assert len(targets) == 3 * 60
    views = view_inputs(x, aug)
    for k in range(3):
        direct = teacher.cache_outputs({"v": views[k]})["v"].log_probs(4.0)
        assert torch.allclose(targets.log_probs(4.0)[k * 60 : (k + 1) * 60], direct, atol=1e-6)


@pytest.mark.parametrize("mode", ["views", "online"])
def test_every_epoch_target_is_the_teachers_output_on_the_students_view(
    teacher: TeacherEnsemble, mode: str
) -> None:
    x, y = _data(90)
    aug = Augment(random_crop=1, hflip=True, mixup=0.5, teacher=mode, views=4, seed=7)
    fn = _online(teacher)
    teachers = [view_targets(fn, x, aug)] if mode == "views" else [fn]
    members = [(3, 2.0, 0), (4, 5.0, 0), (3, 1.0, None)]  # seed, T, teacher (None: scratch)
    ev = EpochViews(aug, x, members, teachers, None, 4)
    temps = torch.tensor([2.0, 5.0, 1.0])
    seen = []
    for epoch in range(2):
        g = torch.Generator().manual_seed(epoch)
        order = torch.stack([torch.randperm(90, generator=g) for _ in members])
        order[2] = order[0]  # the scratch twin shares member 0's seed, hence its shuffle
        xe, te, mix = ev.epoch(order, y, temps)
        assert te is not None and mix is not None
        for gi, (_, t, who) in enumerate(members):
            if who is None:
                assert torch.equal(te[gi], torch.zeros_like(te[gi]))
                continue
            direct = teacher.cache_outputs({"v": xe[gi]})["v"].log_probs(t)
            assert torch.allclose(te[gi], direct, atol=1e-5)
        assert torch.equal(xe[0], xe[2])  # one seed, one stream: the twin sees the same views
        assert not torch.equal(xe[0], xe[1])
        assert mix[0].dtype == torch.long and bool(((mix[1] >= 0) & (mix[1] <= 1)).all())
        seen.append(xe[0].clone())
    assert not torch.equal(seen[0], seen[1])  # a fresh view of each row every epoch


@pytest.mark.parametrize("mode", ["views", "online"])
@pytest.mark.parametrize(
    ("family", "arch"),
    [("mlp", {"width": 12, "depth": 1}), ("cnn", {"channels": 3, "blocks": 1})],
)
def test_grouped_training_with_augmentation_equals_members_alone(
    teacher: TeacherEnsemble, mode: str, family: str, arch: dict[str, int]
) -> None:
    x, y = _data(200)
    xv, yv = _data(60, 1)
    aug = Augment(random_crop=1, hflip=True, mixup=0.2, teacher=mode, views=3)
    fn = _online(teacher)
    tg = view_targets(fn, x, aug) if mode == "views" else fn
    members = [Member(1, 2.0, 0.5), Member(2, 4.0, 0.9), Member(1, 1.0, 0.0)]
    common = {"family": family, "arch": arch, "epochs": 3, "augment": aug}
    together = Distiller(**common).fit(x, y, xv, yv, members, teacher=tg)
    alone = Distiller(**common, grouped=False).fit(x, y, xv, yv, members, teacher=tg)
    assert together.val_acc_ == alone.val_acc_
    for a, b in zip(together.models_, alone.models_, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-5)
    plain = Distiller(family=family, arch=arch, epochs=3).fit(
        x, y, xv, yv, members, teacher=teacher.cache_outputs({"t": x})["t"]
    )
    first = next(plain.models_[0].parameters())
    assert not torch.allclose(first, next(together.models_[0].parameters()))


def test_one_stored_view_trains_as_the_plain_fit_on_that_view(teacher: TeacherEnsemble) -> None:
    """With K = 1 a views fit is a plain fit on the view: the rows and their targets pair up."""
    x, y = _data(200)
    xv, yv = _data(60, 1)
    aug = Augment(random_crop=2, hflip=True, views=1, seed=4)
    fn = _online(teacher)
    members = [Member(1, 3.0, 0.7), Member(2, 1.0, 0.0)]
    common = {"family": "cnn", "arch": {"channels": 3, "blocks": 1}, "epochs": 3}
    aug_fit = Distiller(**common, augment=aug).fit(
        x, y, xv, yv, members, teacher=view_targets(fn, x, aug)
    )
    x_view = view_inputs(x, aug)[0]
    plain = Distiller(**common).fit(x_view, y, xv, yv, members, teacher=fn(x_view))
    assert aug_fit.val_acc_ == plain.val_acc_
    for a, b in zip(aug_fit.models_, plain.models_, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixup_loss_and_gradient_match_the_mixed_cross_entropy(smoothing: float) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 16, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t_lp = torch.log_softmax(torch.randn(3, 16, 5, generator=g, dtype=torch.float64), -1)
    y1, y2 = torch.randint(0, 5, (3, 16), generator=g), torch.randint(0, 5, (3, 16), generator=g)
    lam = torch.rand(3, 16, generator=g, dtype=torch.float64)
    temps = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    alphas = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64)
    got = FusedKDLoss(temps, alphas, smoothing)(z, t_lp, y1, None, None, (y2, lam))

    def ce(labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            z.reshape(-1, 5), labels.reshape(-1), reduction="none", label_smoothing=smoothing
        ).reshape(3, 16)

    hard = (lam * ce(y1) + (1 - lam) * ce(y2)).mean(-1)
    log_q = torch.log_softmax(z / temps.view(-1, 1, 1), -1)
    soft = (t_lp.exp() * (t_lp - log_q)).sum(-1).mean(-1)
    want = alphas * temps**2 * soft + (1 - alphas) * hard
    assert torch.allclose(got, want)
    (g_got,) = torch.autograd.grad(got.sum(), z)
    (g_want,) = torch.autograd.grad(want.sum(), z)
    assert torch.allclose(g_got, g_want)


def test_dense_batched_and_vmap_paths_agree_under_mixup(teacher: TeacherEnsemble) -> None:
    x, y = _data(200)
    xv, yv = _data(60, 1)
    aug = Augment(random_crop=1, mixup=0.3, views=2)
    tg = view_targets(_online(teacher), x, aug)
    members = [Member(1, 2.0, 0.5), Member(2, 1.0, 0.0)]
    fits = [
        Distiller(
            family="mlp", arch={"width": 10, "depth": 1}, epochs=3, augment=aug, backend=b
        ).fit(x, y, xv, yv, members, teacher=tg)
        for b in ("dense", "batched", "vmap")
    ]
    for other in fits[1:]:
        for a, b in zip(fits[0].models_, other.models_, strict=True):
            for p, q in zip(a.parameters(), b.parameters(), strict=True):
                assert torch.allclose(p, q, atol=1e-4)


def test_bad_augmentation_is_a_one_line_error(teacher: TeacherEnsemble) -> None:
    x, y = _data(40)
    with pytest.raises(ParameterError, match="random_crop must be an integer"):
        Augment(random_crop=-1)
    with pytest.raises(ParameterError, match="teacher must be one of"):
        Augment(teacher="cached")
    with pytest.raises(ParameterError, match="views must be an integer >= 1"):
        Augment(views=0)
    with pytest.raises(ParameterError, match="mixup must be >= 0"):
        Augment(mixup=-0.1)
    flat = torch.randn(40, 64)
    d = Distiller(family="mlp", epochs=1, augment=Augment(hflip=True))
    with pytest.raises(ParameterError, match="needs image inputs"):
        d.fit(flat, y, flat, y, [Member(0)])
    aug = Augment(hflip=True, views=3)
    plain = teacher.cache_outputs({"x": x})["x"]
    with pytest.raises(ParameterError, match="and 3 views of each"):
        Distiller(family="cnn", epochs=1, augment=aug).fit(
            x, y, x, y, [Member(0, 2.0, 0.5)], teacher=plain
        )
    with pytest.raises(ParameterError, match="takes teachers as callables"):
        Distiller(family="cnn", epochs=1, augment=Augment(hflip=True, teacher="online")).fit(
            x, y, x, y, [Member(0, 2.0, 0.5)], teacher=plain
        )
    unlabeled = y.clone()
    unlabeled[:5] = -1
    with pytest.raises(ParameterError, match="mixup needs every training row labelled"):
        Distiller(family="cnn", epochs=1, augment=Augment(mixup=0.2, views=1)).fit(
            x,
            unlabeled,
            x,
            y,
            [Member(0, 2.0, 0.5)],
            teacher=view_targets(_online(teacher), x, Augment(mixup=0.2, views=1)),
        )
    assert isinstance(plain, SoftTargets)
