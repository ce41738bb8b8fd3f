"""Model families from libraries: ``timm:<architecture>`` and ``hf:<model>`` students and
teachers, their preprocessing, and ONNX teachers.

Registering costs nothing: :func:`register` (run on import, and by kdbench's own
``kdbench.families`` entry point) only tells kdcore that names with these prefixes exist;
timm and transformers are imported when a suite first names such a family.

* :mod:`bench.models.timm_zoo` — timm architectures, each kind declared once (ResNet,
  MobileNetV3, EfficientNet, ViT): which arch parameters, their rules, how they map to timm's
  constructor arguments.
* :mod:`bench.models.hf_zoo` — Hugging Face BERT (text) and ViT (images) built from a config.
* :mod:`bench.models.onnx_member` — an ONNX file as a teacher member (onnxruntime).
* :mod:`bench.models.library_code` — the model card's loading code for these families.

The normalisation such a teacher states (timm's pretrained config, an HF image processor) is
applied by :mod:`bench.teachers.preprocess`.
"""

from __future__ import annotations

from kdcore.families import register_source

__all__ = ["EXAMPLES", "register"]

#: One name of each declared kind, listed by ``kdbench list families``.
EXAMPLES = (
    "timm:resnet18",
    "timm:mobilenetv3_small_100",
    "timm:efficientnet_b0",
    "timm:vit_tiny_patch16_224",
    "hf:bert",
    "hf:vit",
)


def register() -> None:
    """Offer the ``timm:`` and ``hf:`` families (resolved on first use)."""
    from bench.models import hf_zoo, timm_zoo

    register_source("timm", timm_zoo.resolve, "<architecture>")
    register_source("hf", hf_zoo.resolve, "<model>")


register()
