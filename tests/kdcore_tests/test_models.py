from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from kdcore import (
    ArchParam,
    SoftTargets,
    TeacherEnsemble,
    build_student,
    count_flops,
    count_params,
    get_family,
    list_families,
    register_family,
)
from kdcore.families import StudentModel, TeacherModel, format_arch, mlp


def test_seed_teacher_size_and_flops_match_the_notes() -> None:
    teacher = TeacherModel(20, 2)
    assert count_params(teacher) == 46_658
    for batch in (1, 7):
        assert count_flops(teacher, torch.randn(batch, 20)) == 92_416
    ensemble = TeacherEnsemble([TeacherModel(20, 2) for _ in range(5)])
    assert count_params(ensemble) == 233_290
    assert count_flops(ensemble, torch.randn(3, 20)) == 5 * 92_416


def test_seed_student_is_about_one_thirtieth_of_five_teachers() -> None:
    student = StudentModel(20, 2)
    assert count_params(student) == 7_779
    assert 29 < 233_290 / 7_779 < 31


@pytest.mark.parametrize(
    ("d", "widths", "c"), [(13, (7, 11), 3), (5, (17,), 9), (31, (3, 5, 2), 4)]
)
def test_flops_equal_two_per_multiply_add_of_an_odd_mlp(
    d: int, widths: tuple[int, ...], c: int
) -> None:
    layers: list[nn.Module] = []
    fan_in = d
    for w in widths:
        layers += [nn.Linear(fan_in, w), nn.ReLU()]
        fan_in = w
    layers.append(nn.Linear(fan_in, c))
    dims = [d, *widths, c]
    macs = sum(a * b for a, b in itertools.pairwise(dims))
    assert count_flops(nn.Sequential(*layers), torch.randn(5, d)) == 2 * macs


class _ElementwiseOnly(nn.Module):
    """A 'family' whose math the FLOP counter does not see (no matmul)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(-1) * self.w).sum(1)


def test_unknown_operators_give_a_clear_error_not_zero() -> None:
    with pytest.raises(ValueError, match="counted 0 FLOPs for _ElementwiseOnly"):
        count_flops(_ElementwiseOnly(), torch.randn(2, 4))


def test_mlp_family_shapes_and_registry() -> None:
    model = build_student("mlp", 20, 3, width=8, depth=3)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(20, 8), (8, 8), (8, 8), (8, 3)]
    assert "mlp" in list_families() and "seed_teacher" in list_families()
    with pytest.raises(KeyError, match=r"Valid names: .*mlp"):
        get_family("transformer")
    with pytest.raises(TypeError, match="unknown"):
        build_student("mlp", 20, 3, width=8, depth=2, heads=4)
    with pytest.raises(
        ValueError, match=r"'width' parameter of family 'mlp' must be an int in \[1, 4096\]"
    ):
        build_student("mlp", 20, 3, width=0, depth=1)
    with pytest.raises(ValueError):
        mlp(20, 2, width=0, depth=1)
    with pytest.raises(ValueError, match="needs inputs with 3 dimension"):
        build_student("cnn", 20, 3, channels=4, blocks=1)
    image_mlp = build_student("mlp", (1, 8, 8), 10, width=8, depth=1)
    assert image_mlp(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_users_can_register_a_family() -> None:
    def low_rank(input_shape: tuple[int, ...], num_classes: int, rank: int) -> nn.Module:
        return nn.Sequential(nn.Linear(input_shape[0], rank), nn.Linear(rank, num_classes))

    rank = ArchParam("rank", int, (1, 64), (1, 8))
    fam = register_family("test_lowrank", low_rank, (rank,), "low-rank linear", replace=True)
    model = build_student("test_lowrank", 10, 2, rank=3)
    assert count_params(model) == 10 * 3 + 3 + 3 * 2 + 2
    assert fam.label({"rank": 3}) == "rank 3"
    with pytest.raises(ValueError, match="already registered"):
        register_family("test_lowrank", low_rank, (rank,))
    with pytest.raises(TypeError, match="ArchParam"):
        register_family("test_bad", low_rank, ("rank",))  # type: ignore[arg-type]


def test_one_label_per_architecture() -> None:
    assert format_arch("mlp", {"width": 32, "depth": 2}) == "width 32 × depth 2"
    assert format_arch("cnn", {"channels": 16, "blocks": 2}) == "channels 16 × blocks 2"
    assert format_arch("seed_teacher", {}) == "seed_teacher"


@pytest.mark.parametrize(
    ("shape", "channels", "blocks"), [((1, 8, 8), 16, 2), ((3, 7, 5), 5, 3), ((2, 4, 4), 8, 4)]
)
def test_cnn_flops_equal_the_analytic_count(
    shape: tuple[int, int, int], channels: int, blocks: int
) -> None:
    c_in, h, w = shape
    macs = 0
    for _ in range(blocks):
        macs += h * w * channels * c_in * 9  # 3x3 conv, padding 1: output H x W
        if h >= 2 and w >= 2:
            h, w = h // 2, w // 2
        c_in = channels
    classes = 10
    macs += channels * h * w * classes
    model = build_student("cnn", shape, classes, channels=channels, blocks=blocks)
    assert count_flops(model, torch.randn(3, *shape)) == 2 * macs
    params = sum(p.numel() for p in model.parameters())
    assert count_params(model) == params > 0


def test_fused_ensemble_equals_the_loop() -> None:
    torch.manual_seed(0)
    ens = TeacherEnsemble([TeacherModel(6, 3) for _ in range(4)]).eval()
    x = torch.randn(9, 6)
    with torch.no_grad():
        assert torch.allclose(ens(x), ens.fused()(x), atol=1e-5)
    ens_logit = TeacherEnsemble(list(ens.members), combine="mean_logit").eval()
    with torch.no_grad():
        assert torch.allclose(ens_logit(x), ens_logit.fused()(x), atol=1e-5)


def test_cache_outputs_runs_every_member_once_per_split_in_eval_mode() -> None:
    torch.manual_seed(0)
    members = [TeacherModel(6, 3) for _ in range(3)]
    calls: list[int] = []
    for m in members:
        m.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    ens = TeacherEnsemble(members).train()
    splits = {"train": torch.randn(50, 6), "val": torch.randn(20, 6), "test": torch.randn(20, 6)}
    cached = ens.cache_outputs(splits)
    assert sorted(calls) == sorted([50] * 3 + [20] * 3 + [20] * 3)
    again = ens.cache_outputs({"val": splits["val"]})  # dropout off: deterministic
    assert torch.equal(cached["val"].member_log_probs(), again["val"].member_log_probs())
    assert ens.training  # mode restored
    targets = cached["train"]
    assert targets.log_probs(4.0) is targets.log_probs(4.0)  # memoised per temperature
    assert len(calls) == 12


def test_soft_targets_validate_combine_mode() -> None:
    with pytest.raises(ValueError, match="Unknown combine mode"):
        SoftTargets(torch.randn(2, 5, 3), "vote")


def test_soft_targets_public_surface() -> None:
    logits = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(0))
    targets = SoftTargets(logits, "mean_prob")
    assert len(targets) == 10 and targets.num_classes == 4 and targets.num_members == 3
    sub = targets.take(torch.tensor([1, 3]))
    assert len(sub) == 2
    assert torch.allclose(sub.log_probs(2.0), targets.log_probs(2.0)[[1, 3]])
    assert targets.member_log_probs(1.0).shape == (3, 10, 4)


def test_fused_ensemble_when_the_batch_equals_the_number_of_members() -> None:
    torch.manual_seed(0)
    ens = TeacherEnsemble([TeacherModel(6, 3) for _ in range(4)]).eval()
    x = torch.randn(4, 6)  # batch 4 == 4 members: must still be one shared input
    with torch.no_grad():
        assert torch.allclose(ens(x), ens.fused()(x), atol=1e-5)


@pytest.mark.parametrize(
    ("family", "shape", "fixed", "name"),
    [
        ("mlp", (20,), {"depth": 1}, "width"),
        ("mlp", (20,), {"depth": 3}, "width"),
        ("cnn", (1, 8, 8), {"blocks": 2}, "channels"),
    ],
)
@pytest.mark.parametrize("target", [300, 2_500, 40_000])
def test_arch_for_size_picks_the_nearest_count_on_a_log_scale(
    family: str, shape: tuple[int, ...], fixed: dict[str, int], name: str, target: int
) -> None:
    import math

    from kdcore.families import arch_for_size

    arch = arch_for_size(family, shape, 10, target, **fixed)
    assert {k: v for k, v in arch.items() if k != name} == fixed

    def params(v: int) -> int:
        return count_params(build_student(family, shape, 10, **{**fixed, name: v}))

    got = params(int(arch[name]))
    for v in (int(arch[name]) - 1, int(arch[name]) + 1):  # no neighbour is nearer the target
        if v >= 1:
            assert abs(math.log(got / target)) <= abs(math.log(params(v) / target))


def test_arch_for_size_refuses_a_family_without_a_size_parameter() -> None:
    from kdcore.families import arch_for_size

    with pytest.raises(ValueError, match="declares no size_param"):
        arch_for_size("seed_teacher", (20,), 2, 1000)


class _BNNet(nn.Module):
    """Conv, batch norm (running statistics), linear head: what vmap cannot stack safely."""

    def __init__(self, input_shape, num_classes, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_a_loop_grouped_family_keeps_each_members_best_epoch_running_statistics() -> None:
    """A family that groups by "loop" trains each member through its own slice of the
    stacked parameters and buffers: batch norm updates the member's running statistics, and
    the member kept is its best validation epoch's parameters *and* statistics — its own
    accuracy on validation is the one recorded."""
    from kdcore import Distiller, Member

    register_family(
        "test_bn_loop",
        _BNNet,
        (ArchParam("width", int, (1, 64), (2, 8)),),
        input_ranks=(3,),
        example_input_shape=(1, 6, 6),
        grouping="loop",
        replace=True,
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 6, 6, generator=g) * 3 + 1
    y = (x[:, 0, :3].mean((1, 2)) > x[:, 0, 3:].mean((1, 2))).long()
    d = Distiller(family="test_bn_loop", arch={"width": 4}, epochs=5, batch_size=32).fit(
        x[:300], y[:300], x[300:], y[300:], [Member(0), Member(1)]
    )
    assert d._group.backend == "loop"
    for g_, model in enumerate(d.models_):
        assert float(model.bn.running_mean.abs().sum()) > 0  # the statistics were updated
        with torch.no_grad():
            acc = (model(x[300:]).argmax(1) == y[300:]).float().mean().item()
        assert acc == pytest.approx(d.val_acc_[g_])
    assert not torch.equal(d.models_[0].bn.running_mean, d.models_[1].bn.running_mean)
    logits = d.predict_logits(x[300:])
    assert torch.allclose(logits[0], d.models_[0](x[300:]).detach(), atol=1e-5)


def test_a_source_resolves_prefixed_names_on_first_use() -> None:
    from kdcore.exceptions import UnknownNameError
    from kdcore.families import list_sources, register_source

    calls: list[str] = []

    def resolve(name: str) -> None:
        calls.append(name)
        if name != "tiny":
            raise UnknownNameError(f"demo knows 'tiny' only, not {name!r}")
        register_family(f"demo:{name}", mlp, (ArchParam("width", int), ArchParam("depth", int)))

    register_source("demo", resolve, "<net>")
    assert "demo:<net>" in list_sources()
    fam = get_family("demo:tiny")
    assert fam.name == "demo:tiny" and get_family("demo:tiny") is fam and calls == ["tiny"]
    with pytest.raises(UnknownNameError, match="demo knows 'tiny' only"):
        get_family("demo:other")
    with pytest.raises(UnknownNameError, match="demo:<net>"):
        get_family("nosuchsource:x")  # the valid names list the sources too


def test_optional_and_data_set_parameters() -> None:
    def build(input_shape, num_classes, width: int, depth: int = 1, vocab_size: int = 2):
        return mlp(input_shape, num_classes, width=width, depth=depth)

    fam = register_family(
        "test_optional",
        build,
        (
            ArchParam("width", int),
            ArchParam("depth", int, (1, 8), (1, 2), optional=True),
            ArchParam("vocab_size", int, (2, 10**6), (2, 10**6), from_data=True, optional=True),
        ),
        size_param="width",
        replace=True,
    )
    assert fam.searched_names == ("width", "depth")
    assert fam.label({"width": 8, "vocab_size": 100}) == "width 8"  # data and left-out: unnamed
    build_student("test_optional", (4,), 2, width=8)  # depth left out: the builder's own
    with pytest.raises(TypeError, match="missing \\['width'\\]"):
        build_student("test_optional", (4,), 2, depth=2)
    for bad in (
        ArchParam("width", int, optional=True, search=False),
        ArchParam("width", int, from_data=True),
    ):
        with pytest.raises(ValueError, match="must be a searched parameter"):
            register_family("test_bad_size", build, (bad,), size_param="width")
    with pytest.raises(ValueError, match="left out of searches must be optional"):
        ArchParam("p", int, search=False)
    tokens = register_family(
        "test_tokens", build, (ArchParam("width", int),), input_kind="tokens", replace=True
    )
    ids = tokens.example(3, (5,), {"vocab_size": 7}, torch.Generator().manual_seed(0))
    assert (
        ids.dtype == torch.long
        and ids.shape == (3, 5)
        and int(ids.min()) >= 1
        and int(ids.max()) < 7
    )


def test_one_distiller_fits_twice() -> None:
    """A Distiller keeps its last group for predict_logits; a second fit builds a new one (a
    method named like that attribute once made the second fit call the old group)."""
    from kdcore import Distiller, Member

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    d = Distiller(family="mlp", arch={"width": 8, "depth": 1}, epochs=1, batch_size=16)
    first = d.fit(x, y, x, y, [Member(seed=0)]).predict_logits(x)
    second = d.fit(x, y, x, y, [Member(seed=0), Member(seed=1)]).predict_logits(x)
    assert first.shape == (1, 64, 3) and second.shape == (2, 64, 3)
    assert torch.equal(first[0], second[0])  # the same seed, the same student
