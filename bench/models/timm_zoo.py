"""timm architectures as kdbench families: ``[student] family = "timm:resnet18"``.

Each *kind* of timm architecture is declared once (:data:`KINDS`): the timm module its names
come from, its architecture parameters with their rules, and how they become the constructor
arguments timm takes. A name resolves to the kind of the module that defines it, so every
timm ResNet, MobileNetV3, EfficientNet or ViT variant is a family with no further code:

* **ResNet** (``timm.models.resnet``, cardinality 1): ``width`` — a channel multiplier of the
  four stages (64·w, 128·w, 256·w, 512·w channels before the block's expansion; the capacity
  axis); ``blocks`` — blocks per stage (optional: the variant's own, e.g. 2-2-2-2 for
  resnet18, 3-4-6-3 for resnet50). The stem is the variant's.
* **MobileNetV3** (``timm.models.mobilenetv3``) and **EfficientNet**
  (``timm.models.efficientnet``): ``width`` — timm's ``channel_multiplier``; ``depth`` —
  its ``depth_multiplier`` (optional: 1).
* **ViT** (``timm.models.vision_transformer``): ``head_width`` — channels per attention head
  (``embed_dim = heads · head_width``; the capacity axis); ``heads``; ``depth`` — transformer
  blocks; ``patch_size`` (optional: the variant's, when it divides the image). The image size
  is the task's.

Optional parameters left out build the variant as timm publishes it (what a teacher
checkpoint of that name holds). Input channels, image size and class count come from the task.
A timm name of another kind is refused with the declared kinds and the plug-in route
(:func:`kdcore.register_family` with a name ``"timm:<architecture>"``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from kdcore.exceptions import ParameterError, UnknownNameError
from kdcore.families import ArchParam, register_family

__all__ = ["KINDS", "TimmKind", "kind_of", "resolve"]


@dataclass(frozen=True)
class TimmKind:
    """One kind of timm architecture: its module, parameters and constructor arguments."""

    name: str
    module: str  # timm.models.<module>
    params: tuple[ArchParam, ...]
    size_param: str
    kwargs: Callable[[str, tuple[int, ...], dict[str, Any]], dict[str, Any]]
    description: str
    prefixes: tuple[str, ...] = ("",)  # the module's names this kind builds


def _resnet_defaults(variant: str) -> tuple[tuple[int, ...], int]:
    """The variant's blocks per stage and cardinality (built on the meta device: shapes only)."""
    import timm
    import torch

    with torch.device("meta"):
        m: Any = timm.create_model(variant, pretrained=False)
    layers = tuple(len(getattr(m, f"layer{i}")) for i in range(1, 5))
    first = m.layer1[0]
    card = getattr(getattr(first, "conv2", None), "groups", 1)
    return layers, int(card)


def _resnet_kwargs(variant: str, shape: tuple[int, ...], arch: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "width" in arch:
        w = float(arch["width"])
        out["channels"] = tuple(max(1, round(c * w)) for c in (64, 128, 256, 512))
    if "blocks" in arch:
        out["layers"] = (int(arch["blocks"]),) * 4
    return out


def _effnet_kwargs(variant: str, shape: tuple[int, ...], arch: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel_multiplier": float(arch.get("width", 1.0)),
        "depth_multiplier": float(arch.get("depth", 1.0)),
    }


def _vit_kwargs(variant: str, shape: tuple[int, ...], arch: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"img_size": tuple(shape[1:])}
    if "head_width" in arch or "heads" in arch:
        if not ("head_width" in arch and "heads" in arch):
            raise ParameterError(
                f"timm:{variant} takes 'head_width' and 'heads' together (embed_dim = heads · "
                "head_width), or neither (the variant's own)."
            )
        out["embed_dim"] = int(arch["heads"]) * int(arch["head_width"])
        out["num_heads"] = int(arch["heads"])
    if "depth" in arch:
        out["depth"] = int(arch["depth"])
    if "patch_size" in arch:
        out["patch_size"] = int(arch["patch_size"])
    return out


_MULT = "timm's channel_multiplier: channels of every layer scaled"
# MobileNetV3 and EfficientNet are both timm's _gen_* builders with these two multipliers.
_MULTIPLIERS = (
    ArchParam("width", float, (0.05, 4.0), (0.1, 1.0), log=True, optional=True, doc=_MULT),
    ArchParam(
        "depth",
        float,
        (0.1, 4.0),
        (0.25, 1.0),
        optional=True,
        doc="timm's depth_multiplier: blocks per stage scaled (optional: 1)",
    ),
)
KINDS: tuple[TimmKind, ...] = (
    TimmKind(
        "resnet",
        "resnet",
        (
            ArchParam(
                "width",
                float,
                (0.01, 4.0),
                (0.03, 0.5),
                log=True,
                optional=True,
                doc="channel multiplier of the four stages (64·w … 512·w)",
            ),
            ArchParam(
                "blocks",
                int,
                (1, 16),
                (1, 3),
                optional=True,
                doc="blocks per stage (optional: the variant's own)",
            ),
        ),
        "width",
        _resnet_kwargs,
        "timm ResNet: width = channel multiplier, blocks = blocks per stage",
    ),
    TimmKind(
        "mobilenetv3",
        "mobilenetv3",
        _MULTIPLIERS,
        "width",
        _effnet_kwargs,
        "timm MobileNetV3: width = channel multiplier, depth = depth multiplier",
        ("mobilenetv3_small", "mobilenetv3_large"),
    ),
    TimmKind(
        "efficientnet",
        "efficientnet",
        _MULTIPLIERS,
        "width",
        _effnet_kwargs,
        "timm EfficientNet: width = channel multiplier, depth = depth multiplier",
        tuple(f"efficientnet_b{i}" for i in range(9)),
    ),
    TimmKind(
        "vit",
        "vision_transformer",
        (
            ArchParam(
                "head_width",
                int,
                (4, 256),
                (8, 64),
                log=True,
                optional=True,
                doc="channels per attention head (embed_dim = heads · head_width)",
            ),
            ArchParam("heads", int, (1, 32), (1, 4), optional=True, doc="attention heads"),
            ArchParam("depth", int, (1, 48), (1, 6), optional=True, doc="transformer blocks"),
            ArchParam(
                "patch_size",
                int,
                (1, 64),
                (4, 16),
                optional=True,
                search=False,
                doc="patch side in pixels (must divide the image; optional: the variant's)",
            ),
        ),
        "head_width",
        _vit_kwargs,
        "timm ViT: head_width × heads = embed_dim, depth blocks, patch_size",
        ("vit_",),
    ),
)
_BY_MODULE = {k.module: k for k in KINDS}


def _declared() -> str:
    def names(k: TimmKind) -> str:
        return "" if k.prefixes == ("",) else ": " + "/".join(p + "*" for p in k.prefixes[:2])

    return ", ".join(f"{k.name} (timm.models.{k.module}{names(k)})" for k in KINDS)


def kind_of(variant: str) -> TimmKind:
    import timm

    if not timm.is_model(variant):
        raise UnknownNameError(
            f"Unknown model family 'timm:{variant}': {variant!r} is not a timm architecture "
            f"(timm {timm.__version__}; timm.list_models() lists them). kdbench declares the "
            f"kinds {_declared()}."
        )
    module = timm.models.model_entrypoint(variant).__module__.rpartition(".")[2]
    kind = _BY_MODULE.get(module)
    if kind is not None and not variant.startswith(kind.prefixes):
        kind = None
    if kind is None:
        raise UnknownNameError(
            f"The timm architecture {variant!r} (timm.models.{module}) has no kdbench "
            f"declaration: its width and depth parameters are not known. Declared kinds: "
            f"{_declared()}. Declare it in a plug-in: kdcore.register_family('timm:{variant}', "
            "build, params) (docs/tutorial.md, section 4, 'Your student family')."
        )
    if kind.name == "resnet" and _resnet_defaults(variant)[1] != 1:
        raise UnknownNameError(
            f"The timm architecture {variant!r} is a grouped-convolution ResNet (ResNeXt "
            "style), whose widths must stay divisible by its cardinality: not declared. "
            f"Declared kinds: {_declared()}; plug-in route: kdcore.register_family."
        )
    return kind


def build(
    variant: str, kind: TimmKind, input_shape: Sequence[int], num_classes: int, **arch: Any
) -> nn.Module:
    """``timm.create_model(variant)`` for the task's channels and classes, with ``arch``
    mapped to timm's constructor arguments (random initialisation; nothing downloaded)."""
    import timm

    shape = tuple(int(s) for s in input_shape)
    kwargs = kind.kwargs(variant, shape, arch)
    common: dict[str, Any] = {
        "pretrained": False,
        "num_classes": int(num_classes),
        "in_chans": shape[0],
    }
    if kind.name in ("mobilenetv3", "efficientnet") and arch:
        gen = _generator(kind)
        return gen(variant, kwargs.pop("channel_multiplier"), **kwargs, **common)
    if kind.name == "vit":
        patch = int(kwargs.get("patch_size", _vit_patch(variant)))
        if shape[1] % patch or shape[2] % patch:
            raise ParameterError(
                f"timm:{variant} needs a patch_size that divides the image {list(shape[1:])}. "
                f"Got {patch}; give [search] patch_size (a divisor of {math.gcd(*shape[1:])})."
            )
    try:
        model: nn.Module = timm.create_model(variant, **common, **kwargs)
        return model
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise ParameterError(
            f"timm:{variant} cannot be built with {arch} for input {list(shape)}: {exc}"
        ) from None


@functools.cache
def _vit_patch(variant: str) -> int:
    import timm
    import torch

    with torch.device("meta"):
        m: Any = timm.create_model(variant, pretrained=False)
    return int(m.patch_embed.patch_size[0])


def _generator(kind: TimmKind) -> Callable[..., nn.Module]:
    """timm's own generator of the kind, which takes the channel and depth multipliers that
    its named entry points fix."""
    if kind.name == "mobilenetv3":
        from timm.models import mobilenetv3

        def gen(variant: str, channel_multiplier: float, **kw: Any) -> nn.Module:
            model: nn.Module = mobilenetv3._gen_mobilenet_v3(variant, channel_multiplier, **kw)
            return model

        return gen
    from timm.models import efficientnet

    def gen_e(variant: str, channel_multiplier: float, **kw: Any) -> nn.Module:
        model: nn.Module = efficientnet._gen_efficientnet(variant, channel_multiplier, **kw)
        return model

    return gen_e


def resolve(variant: str) -> None:
    """Register ``timm:<variant>`` (called by :func:`kdcore.get_family` on first use)."""
    kind = kind_of(variant)
    register_family(
        f"timm:{variant}",
        functools.partial(build, variant, kind),
        kind.params,
        kind.description + f" ({variant})",
        input_ranks=(3,),
        size_param=kind.size_param,
        example_input_shape=(3, 32, 32),
        grouping="loop",
        replace=True,
    )
