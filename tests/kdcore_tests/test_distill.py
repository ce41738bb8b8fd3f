from __future__ import annotations

import pytest
import torch
from torch import nn

from kdcore import Distiller, Member, SoftTargets


def _data(n: int = 400, d: int = 6, c: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, c, generator=g)
    y = (x @ w).argmax(-1)
    return x, y


@pytest.fixture(scope="module")
def task():
    x, y = _data()
    xv, yv = _data(150, seed=1)
    teacher = SoftTargets(torch.randn(2, len(x), 3, generator=torch.Generator().manual_seed(5)) * 3)
    return x, y, xv, yv, teacher


def _fit(task, members, **kw) -> Distiller:
    x, y, xv, yv, teacher = task
    params = {"arch": {"width": 16, "depth": 2}, "epochs": 4, "batch_size": 64, "lr": 3e-3} | kw
    return Distiller(**params).fit(x, y, xv, yv, members, teacher=teacher)


def test_grouped_members_match_students_trained_alone(task) -> None:
    members = [Member(0, 4.0, 0.9), Member(1, 2.0, 0.5), Member(0, 1.0, 0.0)]
    group = _fit(task, members)
    x = task[2]
    grouped_logits = group.predict_logits(x)
    for g, m in enumerate(members):
        alone = _fit(task, [m])
        assert alone.best_epoch_[0] == group.best_epoch_[g]
        assert torch.allclose(alone.predict_logits(x)[0], grouped_logits[g], atol=1e-4, rtol=1e-4)
        for p_alone, p_group in zip(
            alone.models_[0].parameters(), group.models_[g].parameters(), strict=True
        ):
            assert torch.allclose(p_alone, p_group, atol=1e-5, rtol=1e-4)


def test_members_differ_by_seed_and_temperature(task) -> None:
    fit = _fit(task, [Member(0, 4.0, 0.9), Member(1, 4.0, 0.9)])
    a, b = fit.predict_logits(task[2])
    assert not torch.allclose(a, b)


def test_selection_uses_the_best_validation_epoch(task) -> None:
    fit = _fit(task, [Member(3, 2.0, 0.7)], epochs=6)
    val_curve = [h["val_acc"][0] for h in fit.history_]
    best = max(range(len(val_curve)), key=lambda i: val_curve[i])
    assert fit.best_epoch_[0] == best + 1
    assert fit.val_acc_[0] == pytest.approx(val_curve[best])
    _x, _y, xv, yv, _ = task
    acc = float((fit.models_[0](xv).argmax(-1) == yv).float().mean())
    assert acc == pytest.approx(fit.val_acc_[0], abs=1e-6)


def test_patience_stops_early(task) -> None:
    fit = _fit(task, [Member(0, 2.0, 0.5)], epochs=50, patience=1, lr=1e-1)
    assert fit.epochs_run_ < 50


def test_scratch_needs_no_teacher_and_distillation_does(task) -> None:
    x, y, xv, yv, _ = task
    fit = Distiller(arch={"width": 8, "depth": 1}, epochs=2).fit(x, y, xv, yv, [Member(0)])
    assert len(fit.models_) == 1
    with pytest.raises(ValueError, match="need teacher soft targets"):
        Distiller(arch={"width": 8, "depth": 1}, epochs=2).fit(x, y, xv, yv, [Member(0, 4.0, 0.5)])
    with pytest.raises(ValueError, match="alpha must be in"):
        Distiller(arch={"width": 8, "depth": 1}).fit(x, y, xv, yv, [Member(0, 4.0, 1.5)])


def test_diverging_member_is_reported_not_raised(task) -> None:
    fit = _fit(task, [Member(0, 4.0, 0.9)], lr=1e30, epochs=3)
    assert 0 in fit.failed_
    assert "non-finite" in fit.failed_[0]


@pytest.mark.parametrize("depth", [1, 3])
def test_dense_path_trains_what_the_autograd_path_trains(task, depth: int) -> None:
    """The written-out passes (backend 'dense', what 'auto' takes for MLPs) follow the autograd
    path's trajectory: same selected epochs, same weights up to float rounding. A scratch
    member and an uneven last batch are in the group."""
    members = [Member(0, 4.0, 0.9), Member(1, 2.0, 0.5), Member(2, 1.0, 0.0)]
    arch = {"width": 12, "depth": depth}
    dense = _fit(task, members, arch=arch, backend="dense", batch_size=48)
    autograd = _fit(task, members, arch=arch, backend="batched", batch_size=48)
    assert dense.best_epoch_ == autograd.best_epoch_
    assert dense.val_acc_ == pytest.approx(autograd.val_acc_, abs=1e-6)
    for g in range(len(members)):
        assert [h["train_loss"][g] for h in dense.history_] == pytest.approx(
            [h["train_loss"][g] for h in autograd.history_], rel=1e-4
        )
        for a, b in zip(
            dense.models_[g].parameters(), autograd.models_[g].parameters(), strict=True
        ):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    x = task[2]
    assert torch.allclose(dense.predict_logits(x), autograd.predict_logits(x), atol=1e-4)


def test_dense_path_without_any_teacher_matches_autograd(task) -> None:
    x, y, xv, yv, _ = task
    fits = [
        Distiller(arch={"width": 8, "depth": 2}, epochs=3, backend=b).fit(
            x, y, xv, yv, [Member(0), Member(1)]
        )
        for b in ("dense", "batched")
    ]
    assert fits[0].best_epoch_ == fits[1].best_epoch_
    assert torch.allclose(fits[0].predict_logits(xv), fits[1].predict_logits(xv), atol=1e-4)


def test_dense_backend_names_what_it_covers(task) -> None:
    with pytest.raises(ValueError, match=r"backend='dense' covers .*'cnn'"):
        x = torch.randn(64, 1, 8, 8)
        Distiller(family="cnn", arch={"channels": 4, "blocks": 1}, backend="dense").fit(
            x, torch.zeros(64, dtype=torch.long), x, torch.zeros(64, dtype=torch.long), [Member(0)]
        )


DENSE_STACKS = {  # [Flatten] (Linear ReLU [Dropout])* Linear, with biases
    "flatten_relu": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)
    ),
    "one_linear": lambda: nn.Sequential(nn.Linear(4, 2)),
    "with_dropout": lambda: nn.Sequential(
        nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.25), nn.Linear(3, 2)
    ),
}
OTHER_STACKS = {
    "dropout_before_relu": lambda: nn.Sequential(
        nn.Linear(4, 3), nn.Dropout(0.1), nn.ReLU(), nn.Linear(3, 2)
    ),
    "tanh": lambda: nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)),
    "no_bias": lambda: nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2)),
    "ends_in_relu": lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU()),
    "bare_linear": lambda: nn.Linear(4, 2),
}


@pytest.mark.parametrize(
    ("name", "dense"),
    [*((n, True) for n in DENSE_STACKS), *((n, False) for n in OTHER_STACKS)],
)
def test_the_dense_backend_takes_linear_relu_stacks_only(name: str, dense: bool) -> None:
    from kdcore import ArchParam, register_family

    build = {**DENSE_STACKS, **OTHER_STACKS}[name]
    family = f"test_dense_{name}"
    register_family(
        family,
        lambda input_shape, num_classes, k=1: build(),
        (ArchParam("k", int, bounds=(1, 1), default=(1, 1)),),
        "a fixed stack for the dense-path test",
        input_ranks=(1,),
        example_input_shape=(4,),
        replace=True,
    )
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    fit = Distiller(family=family, arch={"k": 1}, epochs=1, backend="dense")
    if dense:
        assert fit.fit(x, y, x, y, [Member(0)]).models_
    else:
        with pytest.raises(ValueError, match="backend='dense' covers"):
            fit.fit(x, y, x, y, [Member(0)])


def test_dense_dropout_is_reproducible_and_learns_like_torch_dropout() -> None:
    """The seed teacher (Dropout 0.3) on the dense path: the same seeds give the same weights;
    its dropout draws its own masks (NumPy PCG64), so it is compared with torch's dropout on
    the autograd path by what it learns, and with dropout off by what it does to training."""
    x, y = _data(1800, d=10, c=3, seed=2)
    x, y, xv, yv = x[:1200], y[:1200], x[1200:], y[1200:]

    def fit(backend: str, seed: int = 0, **kw) -> Distiller:
        params = {"family": "seed_teacher", "epochs": 6, "batch_size": 64, "lr": 1e-3} | kw
        return Distiller(**params, backend=backend).fit(x, y, xv, yv, [Member(seed)])

    a, b = fit("dense"), fit("dense")
    for pa, pb in zip(a.models_[0].parameters(), b.models_[0].parameters(), strict=True):
        assert torch.equal(pa, pb)
    other = fit("dense", seed=1)
    assert not torch.equal(a.predict_logits(xv), other.predict_logits(xv))
    torch_dropout = fit("batched")
    assert a.val_acc_[0] > 0.85
    assert a.val_acc_[0] == pytest.approx(torch_dropout.val_acc_[0], abs=0.04)
    # Dropout on: the training loss (measured with dropout) stays above the same network's
    # without dropout, as with torch's dropout.
    without = Distiller(
        family="mlp", arch={"width": 256, "depth": 2}, epochs=6, batch_size=64, lr=1e-3
    ).fit(x, y, xv, yv, [Member(0)])
    for fitted in (a, torch_dropout):
        assert fitted.history_[-1]["train_loss"][0] > without.history_[-1]["train_loss"][0]


def test_get_params_makes_an_unfitted_copy() -> None:
    d = Distiller(family="mlp", arch={"width": 8, "depth": 1}, epochs=3, lr=1e-2, grouped=False)
    copy = Distiller(**d.get_params())
    assert copy.get_params() == d.get_params()
    assert copy.epochs == 3 and copy.lr == 1e-2 and not hasattr(copy, "models_")


def test_every_deliberate_error_has_one_root_and_keeps_its_builtin_kind() -> None:
    from kdcore import KDCoreError, ParameterError, UnknownNameError, get_family

    x, y = torch.randn(16, 4), torch.zeros(16, dtype=torch.long)
    with pytest.raises(ParameterError, match="alpha must be in"):
        Distiller(epochs=1).fit(x, y, x, y, [Member(0, 1.0, 1.5)])
    with pytest.raises(UnknownNameError, match=r"Valid names: .*mlp") as err:
        get_family("no_such_family")
    assert isinstance(err.value, KDCoreError) and isinstance(err.value, KeyError)
    assert not str(err.value).startswith("'")  # not KeyError's quoted message
    assert issubclass(ParameterError, ValueError) and issubclass(ParameterError, KDCoreError)


def test_unlabeled_rows_train_alike_on_every_backend_and_change_the_student(task) -> None:
    """Rows labelled -1 (a transfer set's unlabeled rows) enter the soft term only, the same
    way on the written-out dense passes and through autograd; they change what is learned."""
    x, y, xv, yv, teacher = task
    y_u = y.clone()
    y_u[::4] = -1
    members = [Member(0, 4.0, 0.9), Member(1, 2.0, 0.5)]
    params = {"arch": {"width": 12, "depth": 2}, "epochs": 4, "batch_size": 48}
    fits = {
        b: Distiller(**params, backend=b).fit(x, y_u, xv, yv, members, teacher=teacher)
        for b in ("dense", "batched")
    }
    assert fits["dense"].best_epoch_ == fits["batched"].best_epoch_
    assert torch.allclose(
        fits["dense"].predict_logits(xv), fits["batched"].predict_logits(xv), atol=1e-4
    )
    labelled = Distiller(**params, backend="dense").fit(x, y, xv, yv, members, teacher=teacher)
    assert not torch.allclose(labelled.predict_logits(xv), fits["dense"].predict_logits(xv))
    with pytest.raises(ValueError, match="unlabeled rows"):
        Distiller(**params).fit(x, y_u, xv, yv, [Member(0)])


def test_concat_joins_fits_member_by_member(task) -> None:
    """Distiller.concat: member i of the result is member i over the fits, in order (what
    kdbench does when scratch twins learn from other rows than the distilled students)."""
    xv = task[2]
    a = _fit(task, [Member(0, 4.0, 0.9), Member(1, 2.0, 0.5)])
    b = _fit(task, [Member(2, 1.0, 0.0)], lr=1e30, epochs=3)  # diverges: failed_ moves to 2
    both = Distiller.concat([a, b])
    assert both.members_ == a.members_ + b.members_
    assert both.val_acc_ == a.val_acc_ + b.val_acc_
    assert set(both.failed_) == {2} and both.failed_[2] == b.failed_[0]
    logits = both.predict_logits(xv)
    torch.testing.assert_close(logits[:2], a.predict_logits(xv))
    assert len(both.history_) == max(a.epochs_run_, b.epochs_run_)
    assert len(both.history_[0]["val_acc"]) == 3
