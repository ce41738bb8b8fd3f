"""How a user rebuilds an exported ``timm:`` or ``hf:`` student with the library alone — the
code the model card prints (a test runs it), and the constructor arguments behind it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.models import hf_zoo, timm_zoo

__all__ = ["hf_config", "load_code"]


def _literal(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_literal, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _timm_code(
    variant: str, shape: tuple[int, ...], classes: int, arch: dict[str, Any]
) -> tuple[str, str]:
    kind = timm_zoo.kind_of(variant)
    kwargs = kind.kwargs(variant, shape, arch)
    common = f"pretrained=False, num_classes={classes}, in_chans={shape[0]}"
    extra = "".join(f", {k}={_literal(v)}" for k, v in kwargs.items() if k != "channel_multiplier")
    if kind.name in ("mobilenetv3", "efficientnet") and arch:
        module, gen = (
            ("mobilenetv3", "_gen_mobilenet_v3")
            if kind.name == "mobilenetv3"
            else ("efficientnet", "_gen_efficientnet")
        )
        return (
            f"from timm.models.{module} import {gen}  # timm's generator: takes the multipliers",
            f"model = {gen}({variant!r}, {kwargs['channel_multiplier']!r}{extra}, {common})",
        )
    return "import timm", f"model = timm.create_model({variant!r}, {common}{extra})"


def hf_config(
    family: str, shape: Sequence[int], classes: int, arch: dict[str, Any]
) -> dict[str, Any]:
    """The transformers config of an ``hf:`` student, as a plain dict (``model_type`` first)."""
    model = hf_zoo.MODELS[family.partition(":")[2]]["build"](tuple(shape), classes, **arch)
    config: dict[str, Any] = model.hf.config.to_dict()
    return config


def load_code(
    family: str, arch: dict[str, Any], input_shape: Sequence[int], num_classes: int
) -> tuple[str, str] | None:
    """Python that builds the student's empty model with its library and loads ``blob``'s
    weights, as (its imports, the code that runs once ``blob`` is loaded), or None for a
    family of kdcore's own."""
    prefix, _, name = family.partition(":")
    shape = tuple(int(s) for s in input_shape)
    if prefix == "timm":
        imports, build = _timm_code(name, shape, num_classes, arch)
        return imports, build + '\nmodel.load_state_dict(blob["state_dict"])\nmodel.eval()'
    if prefix == "hf":
        auto = (
            "AutoModelForSequenceClassification"
            if name == "bert"
            else "AutoModelForImageClassification"
        )
        call = (
            "logits = model(input_ids=ids, attention_mask=(ids != 0).long()).logits  # ids: [n, length]"
            if name == "bert"
            else "logits = model(pixel_values=x).logits  # x: [n, C, H, W], normalised"
        )
        return (
            f"from transformers import AutoConfig, {auto}",
            'config = AutoConfig.for_model(**blob["hf_config"])\n'
            f"model = {auto}.from_config(config)\n"
            'model.load_state_dict({k.removeprefix("hf."): v for k, v in blob["state_dict"].items()})\n'
            f"model.eval()\n# {call}",
        )
    return None
