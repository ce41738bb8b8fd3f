"""The inputs a teacher expects: its own normalisation, and for text its own tokenizer.

A timm checkpoint or a Hugging Face image model states how its inputs are normalised: pixel
values divided by a range (255 for 8-bit images), then ``(x − mean_c) / std_c`` per channel
(timm's pretrained config for the architecture; the folder's image processor). With
``[teacher] preprocess = "auto"`` (the default) kdbench feeds such a teacher — and the
students, which see the same inputs — exactly that instead of its own per-feature
standardisation; ``[teacher] mean``/``std``/``pixel_range`` state it for any teacher;
``preprocess = "task"`` keeps kdbench's. The normalisation is stored in the task's scaler as
the equivalent affine map per feature (``mean_c · range``, ``std_c · range``), so exports,
ONNX graphs on raw rows and ``kdbench data`` carry it with no other code.

Images are fed at the task's own size (no resizing): convolutional networks take any size; a
teacher with a fixed input size (a ViT) must match the task's images, which its loader checks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.config.teacher import TeacherConfig
from bench.errors import InputError
from bench.tasks import TaskData

__all__ = ["model_normalization", "normalized", "teacher_tokenizer"]


def _stated(cfg: TeacherConfig) -> dict[str, Any] | None:
    """The normalisation the teacher's files state, or None."""
    if cfg.family.startswith("timm:") and cfg.source in ("checkpoints", "checkpoint"):
        import timm

        pretrained = timm.models.get_pretrained_cfg(cfg.family.partition(":")[2])
        if pretrained is not None and pretrained.mean is not None:
            return {
                "mean": [float(v) for v in pretrained.mean],
                "std": [float(v) for v in pretrained.std],
                "pixel_range": float(cfg.pixel_range),
                "source": f"timm's pretrained config of {cfg.family.partition(':')[2]}",
            }
    if cfg.hf:
        folder = Path(cfg.hf[0])
        if (folder / "preprocessor_config.json").is_file():
            from bench.models.hf_zoo import quiet_transformers

            quiet_transformers()
            from transformers import AutoImageProcessor

            try:
                proc = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
            except Exception as exc:
                raise InputError(
                    f"The image processor of {folder} ([teacher] hf) must load offline. Got "
                    f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}."
                ) from None
            scale = float(getattr(proc, "rescale_factor", 1.0) or 1.0)
            rescale = bool(getattr(proc, "do_rescale", True))
            normalize = bool(getattr(proc, "do_normalize", True))
            channels = len(proc.image_mean) if normalize else 0
            return {
                "mean": [float(v) for v in proc.image_mean] if normalize else [0.0] * channels,
                "std": [float(v) for v in proc.image_std] if normalize else [1.0] * channels,
                "pixel_range": 1.0 / scale if rescale else 1.0,
                "source": f"the image processor of {folder}",
            }
    return None


def model_normalization(cfg: TeacherConfig, task: TaskData) -> dict[str, Any] | None:
    """How the task's images are normalised for this teacher (None: the task's own
    standardisation). Raises :class:`InputError` when the model's normalisation does not fit
    the images' channels, or ``preprocess = "model"`` has none to follow."""
    if cfg.preprocess == "task" or task.input_kind == "tokens" or len(task.input_shape) != 3:
        if cfg.preprocess == "model" and task.input_kind == "tokens":
            raise InputError(
                "The 'preprocess' parameter of [teacher] must be 'auto' or 'task' for a text "
                "task (its tokenizer is its preprocessing). Got 'model' instead."
            )
        return None
    norm: dict[str, Any]
    if cfg.mean:
        norm = {
            "mean": list(cfg.mean),
            "std": list(cfg.std),
            "pixel_range": float(cfg.pixel_range),
            "source": "[teacher] mean and std",
        }
    else:
        stated = _stated(cfg)
        if stated is None:
            if cfg.preprocess == "model":
                raise InputError(
                    "The 'preprocess' parameter of [teacher] is 'model', but this teacher states "
                    "no normalisation (timm checkpoints and Hugging Face image folders do): give "
                    "[teacher] mean and std. Got none."
                )
            return None
        norm = stated
    channels = task.input_shape[0]
    n_mean = len(list(norm["mean"]))
    if n_mean != channels:
        raise InputError(
            f"The teacher's normalisation ({norm['source']}) must have one mean and std per "
            f"image channel of task '{task.name}' ({channels}). Got {n_mean}: give "
            "[teacher] mean and std, or preprocess = 'task'."
        )
    return norm


def normalized(task: TaskData, norm: dict[str, Any]) -> TaskData:
    """``task`` with every split (and unlabeled rows) normalised by ``norm``: the task's own
    standardisation undone (float64), pixel values checked against the range, then
    ``(x / range − mean_c) / std_c`` — stored as the per-feature scaler it equals."""
    shape = task.input_shape
    per_channel = int(np.prod(shape[1:]))
    r = float(norm["pixel_range"])
    mean = np.repeat(np.asarray(norm["mean"], dtype=np.float64) * r, per_channel)
    scale = np.repeat(np.asarray(norm["std"], dtype=np.float64) * r, per_channel)
    old_mean = task.scaler_mean
    old_scale = task.scaler_scale

    def raw(x: torch.Tensor) -> np.ndarray:
        flat = x.reshape(len(x), -1).double().numpy()
        if old_mean is not None and old_scale is not None:
            flat = flat * old_scale + old_mean
        return flat

    pixels = raw(task.x_train)
    low, high = float(pixels.min(initial=0.0)), float(pixels.max(initial=0.0))
    if low < -1e-6 * r or high > r * (1 + 1e-6):
        raise InputError(
            f"The images of task '{task.name}' must be pixel values in [0, pixel_range = "
            f"{r:g}] to be normalised as the teacher's model expects ({norm['source']}). Got "
            f"values in [{low:g}, {high:g}]: set [teacher] pixel_range, or preprocess = 'task'."
        )

    def apply(x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor((raw(x) - mean) / scale, dtype=torch.float32).reshape(x.shape)

    out: TaskData = dataclasses.replace(
        task,
        x_train=apply(task.x_train),
        x_val=apply(task.x_val),
        x_test=apply(task.x_test),
        x_unlabeled=None if task.x_unlabeled is None else apply(task.x_unlabeled),
        scaler_mean=mean,
        scaler_scale=scale,
        normalization=dict(norm),
    )
    return out


def teacher_tokenizer(cfg: TeacherConfig) -> str:
    """The tokenizer folder a text task uses when it names none: the Hugging Face teacher's
    first folder, when it holds a tokenizer ("" otherwise: a WordPiece is trained)."""
    if not cfg.hf:
        return ""
    folder = Path(cfg.hf[0])
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    return str(folder) if any((folder / n).is_file() for n in names) else ""
