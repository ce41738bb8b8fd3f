"""The streaming path: one big student at a time, fed by a DataLoader, teacher outputs on disk.

The grouped path (:class:`kdcore.Distiller`) trains many small students at once on tensors
already in memory. Data larger than memory, or students that fill a GPU, take this path
instead:

* **Teacher outputs are a file** (:func:`write_targets`, :class:`TargetFile`): one streaming
  pass of the teacher over a split, stored memory-mapped as float16 logits ``[N, C]`` or, with
  ``top_k = K``, the teacher's ``K`` largest logits per example (int32 indices, float16
  values) and the probability mass outside them at ``T = 1`` (float32, kept so the truncation
  can be reported). A student's batch reads only its own rows.
* **One student, a DataLoader** (:class:`StreamDistiller`): the loss of
  :func:`kdcore.kd_loss` (dense targets) or :func:`kdcore.losses.topk_kd_loss` (top-k targets,
  teacher and student renormalised over the same classes), computed in float32 outside
  autocast (the softmax at high ``T`` is the fragile part); mixed precision on CUDA (bf16
  autocast where the card supports it, else fp16 with a ``GradScaler``); ``channels_last``
  for convolutional students; optional ``torch.compile``; pinned memory and non-blocking
  copies.
* **Resumable**: after every epoch the whole state — model, optimiser, schedule, gradient
  scaler, torch RNG, the epoch reached, the best epoch's weights and the history — is written
  atomically (a temporary file, ``fsync``, ``os.replace``). The order of an epoch's examples
  is a function of ``(seed, epoch)`` and the DataLoader workers' seeds are drawn from it, so
  a run killed at any point and fitted again with the same ``checkpoint`` continues from its
  last finished epoch and ends with the same weights as an uninterrupted run (bit for bit on
  CPU). Checkpoints are read with ``weights_only=True``.

A dataset for this path returns ``(x, y)`` for an index; example ``i`` of a split is row ``i``
of that split's :class:`TargetFile`. Randomness inside a dataset (augmentation) must draw from
``torch``'s generator, which the workers' seeds make reproducible.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from kdcore.exceptions import ParameterError
from kdcore.losses import kd_loss, topk_kd_loss
from kdcore.recipes import Recipe, make_optimizer

__all__ = ["StreamDistiller", "TargetFile", "write_targets"]

_META = "targets.json"
_CKPT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# teacher outputs on disk


@dataclass(frozen=True)
class TargetFile:
    """Teacher outputs of one split, memory-mapped from ``folder`` (see :func:`write_targets`).

    ``rows`` examples, ``classes`` classes; ``top_k`` is ``None`` for full float16 logits,
    else the number of kept classes per example. ``key`` is the caller's content hash (of the
    data and the teacher) that the folder was written for.
    """

    folder: Path
    rows: int
    classes: int
    top_k: int | None
    key: str

    @classmethod
    def open(cls, folder: str | Path) -> TargetFile:
        """Open a folder written by :func:`write_targets`; the arrays are mapped, not read."""
        folder = Path(folder)
        meta = json.loads((folder / _META).read_text())
        out = cls(folder, int(meta["rows"]), int(meta["classes"]), meta["top_k"], meta["key"])
        for name, (dtype, width) in out._arrays().items():
            size = (folder / name).stat().st_size
            want = out.rows * width * np.dtype(dtype).itemsize
            if size != want:
                raise ValueError(f"{folder / name}: {size} bytes, expected {want} (truncated?)")
        return out

    def _arrays(self) -> dict[str, tuple[str, int]]:
        if self.top_k is None:
            return {"logits.f16": ("float16", self.classes)}
        return {
            "index.i32": ("int32", self.top_k),
            "values.f16": ("float16", self.top_k),
            "tail.f32": ("float32", 1),
        }

    def _map(self, name: str) -> np.ndarray:
        dtype, width = self._arrays()[name]
        shape = (self.rows, width) if width > 1 or name != "tail.f32" else (self.rows,)
        return np.memmap(self.folder / name, dtype=dtype, mode="r", shape=shape)

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        """Full teacher logits of ``rows`` as float32 ``[B, C]`` (dense files only)."""
        if self.top_k is not None:
            raise ValueError(f"{self.folder} keeps only the top {self.top_k} logits")
        return torch.from_numpy(np.asarray(self._map("logits.f16")[rows.numpy()])).float()

    def topk(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept classes (int64 ``[B, K]``) and their logits (float32 ``[B, K]``) of
        ``rows``; a dense file answers with every class."""
        if self.top_k is None:
            v = self.logits(rows)
            return torch.arange(self.classes).expand(len(rows), -1), v
        idx = np.asarray(self._map("index.i32")[rows.numpy()])
        val = np.asarray(self._map("values.f16")[rows.numpy()])
        return torch.from_numpy(idx).long(), torch.from_numpy(val).float()

    def tail_mass(self) -> np.ndarray:
        """Per example, the teacher's probability at ``T = 1`` outside its kept classes (0 for
        a dense file)."""
        if self.top_k is None:
            return np.zeros(self.rows, dtype=np.float32)
        return np.asarray(self._map("tail.f32"))

    def argmax(self) -> np.ndarray:
        """The teacher's predicted class per example (its largest logit)."""
        if self.top_k is None:
            top: np.ndarray = np.asarray(self._map("logits.f16")).argmax(1)
            return top
        return np.asarray(self._map("index.i32")[:, 0]).astype(np.int64)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@torch.inference_mode()
def write_targets(
    teacher: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | DataLoader[Any],
    folder: str | Path,
    *,
    rows: int,
    classes: int,
    top_k: int | None = None,
    key: str = "",
    device: str | torch.device = "cpu",
) -> TargetFile:
    """Run ``teacher`` once over a split and store its outputs memory-mapped in ``folder``.

    ``batches`` yields ``(x, y)`` in the split's order (a DataLoader without shuffling);
    ``rows`` is the split's length. With ``top_k = K < classes`` only the ``K`` largest logits
    per example are kept (sorted, largest first) with the probability mass outside them; else
    the full logits, as float16. The folder is written beside its final place and renamed
    into it, so a reader never sees half a file; an existing ``folder`` is replaced only by a
    complete one. Memory: one batch of logits, whatever ``rows`` is.
    """
    if top_k is not None and not 1 <= top_k <= classes:
        raise ParameterError(f"top_k must be an int in [1, {classes}]. Got {top_k!r} instead.")
    k = None if top_k is None or top_k == classes else int(top_k)
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        _fill(TargetFile(tmp, rows, classes, k, key), teacher, batches, device)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left behind
        raise
    if folder.exists():
        old = folder.with_name(f"{folder.name}.old{os.getpid()}-{uuid.uuid4().hex[:8]}")
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old)
    else:
        tmp.rename(folder)
    _fsync_dir(folder.parent)
    return TargetFile.open(folder)


_F16_MAX = float(np.finfo(np.float16).max)


def _fill(
    out: TargetFile,
    teacher: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | DataLoader[Any],
    device: str | torch.device,
) -> None:
    """Write the arrays and the metadata of ``out`` (a fresh folder), each synced to disk."""
    maps = {
        name: np.memmap(
            out.folder / name,
            dtype=dtype,
            mode="w+",
            shape=(out.rows, width) if name != "tail.f32" else (out.rows,),
        )
        for name, (dtype, width) in out._arrays().items()
    }
    at, rows, k = 0, out.rows, out.top_k
    for x, _ in batches:
        z = teacher(x.to(device, non_blocking=True)).float().cpu()
        if z.shape[1:] != (out.classes,):
            raise ValueError(
                f"the teacher gave outputs {tuple(z.shape)}, expected [B, {out.classes}]"
            )
        b = len(z)
        if at + b > rows:
            raise ValueError(f"the batches hold more than rows={rows} examples")
        # float16 holds ±65504 with 3 significant digits: a larger or non-finite logit would
        # be stored as inf or NaN and silently poison every student that reads it
        if not bool(torch.isfinite(z).all()) or float(z.abs().max()) > _F16_MAX:
            raise ValueError(
                f"the teacher's logits of examples {at}–{at + b - 1} are not finite or beyond "
                f"float16's range (±{_F16_MAX:g}): largest |logit| {float(z.abs().max()):g}"
            )
        if k is None:
            maps["logits.f16"][at : at + b] = z.numpy().astype(np.float16)
        else:
            val, idx = z.topk(k, dim=1)
            maps["index.i32"][at : at + b] = idx.numpy().astype(np.int32)
            maps["values.f16"][at : at + b] = val.numpy().astype(np.float16)
            kept = torch.softmax(z, 1).gather(1, idx).sum(1)
            maps["tail.f32"][at : at + b] = (1.0 - kept).clamp_min(0).numpy()
        at += b
    if at != rows:
        raise ValueError(f"the batches held {at} examples, expected rows={rows}")
    for m in maps.values():
        m.flush()
        with open(m.filename, "rb+") as fh:  # type: ignore[arg-type]
            os.fsync(fh.fileno())
    del maps
    meta = {"rows": rows, "classes": out.classes, "top_k": k, "key": out.key}
    with open(out.folder / _META, "w") as fh:
        fh.write(json.dumps(meta))
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(out.folder)


# ---------------------------------------------------------------------------------------------
# the student's training loop


class _EpochOrder(Sampler[int]):
    """Batches of indices in a permutation fixed by ``(seed, epoch)``: a resumed epoch sees
    the same order as the interrupted one."""

    def __init__(self, n: int, seed: int, epoch: int) -> None:
        self.n, self.seed, self.epoch = n, seed, epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class _Indexed(Dataset[tuple[int, Any, Any]]):
    """A dataset whose items carry their own index (the row of the split's target file)."""

    def __init__(self, data: Dataset[Any]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[int, Any, Any]:
        x, y = self.data[i]
        return i, x, y


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    # auto: mixed precision only on CUDA, bf16 where the card has it (no loss scaling needed)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass
class _Run:
    """What one fit trains with (its model, compiled or not, and its optimiser's state)."""

    model: nn.Module
    net: Callable[[torch.Tensor], torch.Tensor]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    targets: TargetFile | None


@dataclass
class StreamDistiller:
    """Train one student on a streamed split against teacher outputs on disk.

    Hyper-parameters are stored by ``__init__``; :meth:`fit` trains and leaves the selected
    model in ``model_`` (the epoch with the best validation accuracy), ``best_epoch_``,
    ``history_`` (per epoch: ``epoch, train_loss, val_acc, seconds``), ``amp_dtype_`` and
    ``channels_last_`` (what was used), ``resumed_from_`` (the epochs already done when a
    checkpoint was found; 0 otherwise).

    The loss per batch is ``alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE`` with
    the teacher read from the :class:`TargetFile` (``alpha = 0`` or no targets: the scratch
    twin). Optimiser AdamW (``lr``, ``weight_decay``) with a cosine schedule over all steps.

    ``amp``: ``"auto"`` (bf16 autocast on a CUDA card that supports it, else fp16 with a
    gradient scaler; off on CPU), ``"off"``, ``"bf16"``, ``"fp16"``. ``channels_last``:
    ``"auto"`` (on for a student with 2-D convolutions and 4-D inputs), ``True``, ``False``.
    ``compile``: ``False``, ``True`` (``torch.compile``'s default backend) or a backend name.
    ``checkpoint``: a file path; the state is saved there after every epoch and, when it
    exists at :meth:`fit`, training continues from it. ``recipe``: a :class:`kdcore.Recipe`
    (optimiser, learning-rate schedule ``lr · f(step)``, label smoothing of the hard term), as
    the grouped path uses it; None keeps AdamW with a cosine schedule over all steps.
    ``patience``: stop after that many epochs without a better validation accuracy.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = 1.0
    alpha: float = 0.0
    seed: int = 0
    amp: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool | str = False
    num_workers: int = 0
    device: str = "cpu"
    checkpoint: str | Path | None = None
    recipe: Recipe | None = None
    patience: int | None = None

    def _check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ParameterError(
                f"epochs and batch_size must be >= 1. Got {self.epochs}, {self.batch_size}."
            )
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ParameterError(
                f"amp must be one of auto, off, bf16, fp16. Got {self.amp!r} instead."
            )
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise ParameterError(
                "alpha must be in [0, 1] and temperature > 0. "
                f"Got alpha={self.alpha}, temperature={self.temperature}."
            )

    def fit(
        self,
        build: Callable[[], nn.Module],
        train: Dataset[Any],
        val: Dataset[Any],
        targets: TargetFile | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> StreamDistiller:
        """Train ``build()`` (called under ``seed``) on ``train``, select on ``val``.

        ``on_epoch(epoch, val_acc)`` is called after each epoch trained here (1-based; after
        the checkpoint is written, so an exception it raises — a pruner's — loses nothing)."""
        self._check()
        n = len(train)  # type: ignore[arg-type]
        if targets is not None and targets.rows != n:
            raise ParameterError(
                f"the teacher outputs in {targets.folder} cover {targets.rows} examples but "
                f"the training split has {n}"
            )
        if self.alpha > 0 and targets is None:
            raise ParameterError(f"alpha={self.alpha} needs teacher outputs (targets)")
        device = torch.device(self.device)
        torch.manual_seed(self.seed)
        model = build().to(device)
        self.amp_dtype_ = _amp_dtype(self.amp, device)
        x0 = train[0][0]
        cl = self.channels_last
        self.channels_last_ = bool(
            (_has_conv(model) and getattr(x0, "dim", lambda: 0)() == 3) if cl == "auto" else cl
        )
        if self.channels_last_:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        steps_per_epoch = math.ceil(n / self.batch_size)
        opt, sched = self._optimiser(model, steps_per_epoch)
        scaler = torch.amp.GradScaler(
            device.type, enabled=self.amp_dtype_ is torch.float16 and device.type == "cuda"
        )
        net: Callable[[torch.Tensor], torch.Tensor] = model
        if self.compile:
            backend = self.compile if isinstance(self.compile, str) else "inductor"
            net = torch.compile(model, backend=backend)
        run = _Run(model, net, opt, sched, scaler, device, targets)
        ckpt = Path(self.checkpoint) if self.checkpoint is not None else None
        start, best_acc, best_state, history = self._restore(ckpt, run)
        self.resumed_from_ = start
        for epoch in range(start, self.epochs):
            if self._stale(history):
                break
            t0 = time.perf_counter()
            loss = self._epoch(run, train, epoch)
            acc = self._evaluate(net, model, val, device)
            seconds = time.perf_counter() - t0
            history.append(
                {"epoch": epoch + 1, "train_loss": loss, "val_acc": acc, "seconds": seconds}
            )
            if acc > best_acc:
                best_acc = acc
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if ckpt is not None:
                self._save(ckpt, run, epoch + 1, best_acc, best_state, history)
            if on_epoch is not None:
                on_epoch(epoch + 1, acc)
        if best_state is not None:
            model.load_state_dict(best_state)
        self.model_ = model.eval()
        self.history_ = history
        self.best_epoch_ = 1 + max(range(len(history)), key=lambda i: history[i]["val_acc"])
        self.best_val_acc_ = best_acc
        return self

    def _stale(self, history: Sequence[dict[str, float]]) -> bool:
        """Early stopping: ``patience`` epochs without a better validation accuracy."""
        if not self.patience or not history:
            return False
        best = max(range(len(history)), key=lambda i: history[i]["val_acc"])
        return len(history) - 1 - best >= self.patience

    def _optimiser(
        self, model: nn.Module, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        total = self.epochs * steps_per_epoch
        if self.recipe is None:
            opt: torch.optim.Optimizer = torch.optim.AdamW(
                model.parameters(), lr=self.lr, weight_decay=self.weight_decay
            )
            return opt, torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
            )
        recipe = self.recipe
        opt = make_optimizer(list(model.parameters()), recipe, self.lr, self.weight_decay, False)
        return opt, torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: recipe.lr_factor(min(s, total - 1), steps_per_epoch, self.epochs)
        )

    @torch.inference_mode()
    def predict_logits(self, data: Dataset[Any], batch_size: int | None = None) -> torch.Tensor:
        """The selected model's float32 logits ``[N, C]`` on ``data`` (in its order; the
        inputs' labels are ignored), under the autocast training used."""
        device = torch.device(self.device)
        self.model_.eval()
        loader = DataLoader(
            data,
            batch_size=batch_size or self.batch_size,
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
        )
        out = []
        for x, _ in loader:
            with self._autocast(device):
                z = self.model_(self._to(x, device))
            out.append(z.float().cpu())
        return torch.cat(out)

    def _restore(
        self, ckpt: Path | None, run: _Run
    ) -> tuple[int, float, dict[str, torch.Tensor] | None, list[dict[str, float]]]:
        """Load the checkpoint into ``run`` when there is one: (epochs done, best validation
        accuracy, the best epoch's weights, the history); else a fresh start."""
        if ckpt is None or not ckpt.exists():
            return 0, -1.0, None, []
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state.get("version") != _CKPT_VERSION or state.get("config") != self._config():
            raise ParameterError(
                f"the checkpoint {ckpt} was written by another configuration; remove it "
                "or fit with the same hyper-parameters"
            )
        run.model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["schedule"])
        run.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if run.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], run.device)
        history = list(state["history"])
        return int(state["epoch"]), float(state["best_acc"]), state["best_state"], history

    def _epoch(self, run: _Run, train: Dataset[Any], epoch: int) -> float:
        """One pass over ``train`` in the order fixed by ``(seed, epoch)``; the mean loss."""
        loader = DataLoader(
            _Indexed(train),
            batch_size=self.batch_size,
            sampler=_EpochOrder(len(train), self.seed, epoch),  # type: ignore[arg-type]
            num_workers=self.num_workers,
            pin_memory=run.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.seed * 7919 + epoch),
        )
        run.model.train()
        loss_sum, seen = 0.0, 0
        for rows, x, y in loader:
            x = self._to(x, run.device)
            y = y.to(run.device, non_blocking=True)
            with self._autocast(run.device):
                z = run.net(x)
            loss = self._loss(z.float(), y, rows, run.targets, run.device)
            run.opt.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.opt)
            run.scaler.update()
            run.sched.step()
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
        return loss_sum / max(seen, 1)

    def _config(self) -> dict[str, Any]:
        keys = ("epochs", "batch_size", "lr", "weight_decay", "temperature", "alpha", "seed")
        out = {k: getattr(self, k) for k in keys}
        if self.recipe is not None:
            out["recipe"] = self.recipe.describe()
        return out

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype_ is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype_)

    def _to(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = x.to(device, non_blocking=True)
        if self.channels_last_ and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _loss(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        targets: TargetFile | None,
        device: torch.device,
    ) -> torch.Tensor:
        eps = self.recipe.label_smoothing if self.recipe is not None else 0.0
        if targets is None or self.alpha == 0.0:
            return nn.functional.cross_entropy(z, y, label_smoothing=eps)
        if targets.top_k is None:
            v = targets.logits(rows).to(device, non_blocking=True)
            return kd_loss(
                z, v, y, temperature=self.temperature, alpha=self.alpha, label_smoothing=eps
            )
        idx, val = targets.topk(rows)
        return topk_kd_loss(
            z,
            idx.to(device),
            val.to(device),
            y,
            temperature=self.temperature,
            alpha=self.alpha,
            label_smoothing=eps,
        )

    @torch.inference_mode()
    def _evaluate(
        self,
        net: Callable[[torch.Tensor], torch.Tensor],
        model: nn.Module,
        data: Dataset[Any],
        device: torch.device,
    ) -> float:
        model.eval()
        right, total = 0, 0
        # its own generator: evaluating must not move the global RNG (dropout's)
        loader = DataLoader(
            data,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        for x, y in loader:
            with self._autocast(device):
                z = net(self._to(x, device))
            right += int((z.argmax(1).cpu() == y).sum())
            total += len(y)
        return right / max(total, 1)

    def _save(
        self,
        path: Path,
        run: _Run,
        epoch: int,
        best_acc: float,
        best_state: dict[str, torch.Tensor] | None,
        history: Sequence[dict[str, float]],
    ) -> None:
        state: dict[str, Any] = {
            "version": _CKPT_VERSION,
            "config": self._config(),
            "model": run.model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "schedule": run.sched.state_dict(),
            "scaler": run.scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": epoch,
            "best_acc": best_acc,
            "best_state": best_state,
            "history": list(history),
        }
        if run.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
