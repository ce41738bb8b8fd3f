"""The timm and Hugging Face families against the libraries' own models: the declared
parameters build the constructor arguments the docs state, and kdbench's parameter and FLOP
counts equal the library model's (FlopCounterMode run here on the model timm or transformers
builds, independently of kdbench)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import bench.models  # noqa: F401 — registers the timm: and hf: sources
from bench.group.cost import student_cost
from kdcore import build_student, get_family
from kdcore.exceptions import UnknownNameError
from kdcore.families import arch_for_size


def _library_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    return counter.get_total_flops() // len(x)


def _timm(name: str, **kwargs):
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


def _hf_bert(vocab: int, length: int, classes: int, hidden: int, heads: int, layers: int, ffn: int):
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(
        BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                   num_attention_heads=heads, intermediate_size=ffn,
                   max_position_embeddings=length, num_labels=classes, pad_token_id=0)
    )  # fmt: skip


def _hf_vit(
    side: int, channels: int, classes: int, patch: int, hidden: int, heads: int, layers: int
):
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(
        ViTConfig(image_size=side, patch_size=patch, num_channels=channels, hidden_size=hidden,
                  num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=4 * hidden, num_labels=classes)
    )  # fmt: skip


CASES = {
    # family, input shape, arch -> the library model as the docs say the arch maps to it
    "resnet": (
        "timm:resnet18", (1, 28, 28), {"width": 0.25, "blocks": 1},
        lambda: _timm("resnet18", num_classes=10, in_chans=1, channels=(16, 32, 64, 128),
                      layers=(1, 1, 1, 1)),
    ),
    "resnet stock": (
        "timm:resnet18", (3, 32, 32), {},
        lambda: _timm("resnet18", num_classes=10, in_chans=3),
    ),
    # timm publishes these multipliers as variants of their own
    "mobilenetv3": (
        "timm:mobilenetv3_small_100", (3, 32, 32), {"width": 0.5},
        lambda: _timm("mobilenetv3_small_050", num_classes=10, in_chans=3),
    ),
    "efficientnet": (
        "timm:efficientnet_b0", (3, 32, 32), {"width": 1.1, "depth": 1.2},
        lambda: _timm("efficientnet_b2", num_classes=10, in_chans=3),
    ),
    "vit": (
        "timm:vit_tiny_patch16_224", (3, 32, 32),
        {"head_width": 16, "heads": 2, "depth": 2, "patch_size": 8},
        lambda: _timm("vit_tiny_patch16_224", num_classes=10, in_chans=3, img_size=32,
                      embed_dim=32, num_heads=2, depth=2, patch_size=8),
    ),
    "hf bert": (
        "hf:bert", (20,), {"head_width": 8, "heads": 2, "layers": 2, "ffn": 2.0, "vocab_size": 50},
        lambda: _hf_bert(50, 20, 10, 16, 2, 2, 32),
    ),
    "hf vit": (
        "hf:vit", (3, 16, 16), {"head_width": 8, "heads": 2, "layers": 1, "patch_size": 4},
        lambda: _hf_vit(16, 3, 10, 4, 16, 2, 1),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_params_and_flops_equal_the_library_models_own(case: str) -> None:
    family, shape, arch, library = CASES[case]
    ours = build_student(family, shape, 10, **arch)
    theirs = library()
    params, flops = student_cost(family, arch, shape, 10)
    assert params == sum(p.numel() for p in theirs.parameters())
    gen = torch.Generator().manual_seed(0)
    x = get_family(family).example(2, shape, arch, gen)
    assert flops == _library_flops(theirs, x)
    # the same weights in both: the same outputs
    inner = getattr(ours, "hf", ours)
    inner.load_state_dict(theirs.state_dict())
    out_theirs = theirs.eval()(x)
    out_theirs = getattr(out_theirs, "logits", out_theirs)
    assert torch.allclose(ours.eval()(x), out_theirs, atol=1e-5)


@pytest.mark.parametrize(
    ("family", "targets"),
    [  # the smallest reach: resnet18's 64-channel stem, mobilenetv3's head at width 0.05
        ("timm:resnet18", (50_000, 500_000)),
        ("timm:mobilenetv3_small_100", (200_000, 800_000)),
        ("hf:bert", (5_000, 50_000)),
    ],
)
def test_the_capacity_axis_solves_a_width_for_a_parameter_target(
    family: str, targets: tuple[int, int]
) -> None:
    shape = (20,) if family == "hf:bert" else (3, 32, 32)
    fixed = {"heads": 2, "layers": 1, "vocab_size": 100} if family == "hf:bert" else {}
    for target in targets:
        arch = arch_for_size(family, shape, 10, target, **fixed)
        params = sum(p.numel() for p in build_student(family, shape, 10, **arch).parameters())
        assert 0.5 * target < params < 2.0 * target, (family, target, arch, params)


def test_names_timm_has_not_or_kdbench_has_not_declared_are_refused_clearly() -> None:
    with pytest.raises(UnknownNameError, match=r"not a timm architecture.*declares the kinds"):
        get_family("timm:resnet_made_up")
    with pytest.raises(UnknownNameError, match=r"no kdbench declaration.*register_family"):
        get_family("timm:convnext_atto")
    with pytest.raises(UnknownNameError, match="hf:"):
        get_family("hf:gpt_made_up")
