"""Training recipes: each schedule's learning rate per step against its formula (torch's own
schedulers), and every optimiser trained alike on the dense and the autograd paths."""

from __future__ import annotations

import math
import re

import pytest
import torch

from kdcore import Distiller, Member, ParameterError, Recipe, SoftTargets


def _torch_lrs(make, steps: int, per_epoch: int | None = None, base: float = 0.1) -> list[float]:
    """The learning rate torch's scheduler gives each step (stepped per batch, or per epoch)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = make(opt)
    out = []
    for t in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if per_epoch is None or (t + 1) % per_epoch == 0:
            sched.step()
    return out


SPE, EPOCHS = 7, 6
N = SPE * EPOCHS
SCHEDULERS = {
    "cosine": (
        Recipe(schedule="cosine"),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=N),
        None,
    ),
    "step": (
        Recipe(schedule="step", milestones=(2, 4), gamma=0.5),
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2, 4], gamma=0.5),
        SPE,
    ),
    "onecycle": (
        Recipe(schedule="onecycle"),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=N),
        None,
    ),
    "constant": (Recipe(), lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=1.0), None),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_each_schedule_gives_torchs_learning_rate_at_every_step(name: str) -> None:
    recipe, make, per_epoch = SCHEDULERS[name]
    want = _torch_lrs(make, N, per_epoch)
    got = [0.1 * recipe.lr_factor(t, SPE, EPOCHS) for t in range(N)]
    assert got == pytest.approx(want, abs=1e-12)


def test_warmup_rises_linearly_then_the_schedule_runs_over_the_rest() -> None:
    r = Recipe(schedule="cosine", warmup_epochs=2)
    warm = 2 * SPE
    for t in range(warm):
        assert r.lr_factor(t, SPE, EPOCHS) == pytest.approx((t + 1) / warm)
    for t in range(warm, N):
        u = t - warm
        assert r.lr_factor(t, SPE, EPOCHS) == pytest.approx(
            (1 + math.cos(math.pi * u / (N - warm))) / 2
        )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"schedule": "linear"}, "schedule must be one of"),
        ({"momentum": 1.0}, "momentum must be in [0, 1)"),
        ({"nesterov": True}, "nesterov needs optimizer 'sgd'"),
        ({"schedule": "onecycle", "warmup_epochs": 1}, "warms up by itself"),
        ({"milestones": (3, 2)}, "milestones must be increasing"),
        ({"gamma": 0.0}, "gamma must be in (0, 1]"),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1)"),
    ],
)
def test_a_bad_recipe_is_refused_with_its_rule(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ParameterError, match=re.escape(fragment)):
        Recipe(**kwargs)


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x @ torch.randn(6, 3, generator=g)).argmax(-1)


RECIPES = [
    Recipe(optimizer="sgd", momentum=0.9, nesterov=True, schedule="cosine", warmup_epochs=1),
    Recipe(optimizer="sgd", momentum=0.0, schedule="step", milestones=(2,), gamma=0.3),
    Recipe(optimizer="adamw", schedule="onecycle"),
    Recipe(optimizer="adam", schedule="cosine", warmup_epochs=1, label_smoothing=0.1),
]


@pytest.mark.parametrize("recipe", RECIPES, ids=Recipe.describe)
def test_every_backend_trains_alike_under_a_recipe(recipe: Recipe) -> None:
    """The dense path (its own fused or foreach step) and the autograd paths (torch.optim)
    follow the same trajectory under the recipe; a scratch member and an uneven last batch
    are in the group; and the recipe changes what is learnt."""
    x, y = _data(300, 0)
    xv, yv = _data(100, 1)
    teacher = SoftTargets(torch.randn(1, 300, 3, generator=torch.Generator().manual_seed(3)) * 3)
    members = [Member(0, 4.0, 0.9), Member(1, 2.0, 0.5), Member(2, 1.0, 0.0)]
    params = {
        "arch": {"width": 12, "depth": 2},
        "epochs": 4,
        "batch_size": 64,
        "lr": 0.05 if recipe.optimizer == "sgd" else 3e-3,
        "weight_decay": 1e-3,
        "recipe": recipe,
    }
    fits = {
        b: Distiller(**params, backend=b).fit(x, y, xv, yv, members, teacher=teacher)
        for b in ("dense", "batched", "vmap")
    }
    ref = fits["batched"].predict_logits(xv)
    for b in ("dense", "vmap"):
        assert fits[b].best_epoch_ == fits["batched"].best_epoch_, b
        assert torch.allclose(fits[b].predict_logits(xv), ref, atol=1e-4), b
    plain = Distiller(**(params | {"recipe": None}), backend="dense").fit(
        x, y, xv, yv, members, teacher=teacher
    )
    assert not torch.allclose(plain.predict_logits(xv), ref, atol=1e-3)


def test_the_default_recipe_is_adam_at_a_constant_rate() -> None:
    x, y = _data(200, 0)
    xv, yv = _data(80, 1)
    a = Distiller(epochs=3, arch={"width": 8, "depth": 1}).fit(x, y, xv, yv, [Member(0)])
    b = Distiller(epochs=3, arch={"width": 8, "depth": 1}, recipe=Recipe()).fit(
        x, y, xv, yv, [Member(0)]
    )
    assert torch.equal(a.predict_logits(xv), b.predict_logits(xv))
