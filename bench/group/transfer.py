"""Transfer sets (``[transfer]``): what the students learn from, and the omitted-class fix.

The teacher always trains on the whole training split. The students learn from the *transfer
set*:

* a stratified, seeded ``fraction`` of every class of the training split (``round(fraction ·
  n_k)`` rows of class ``k``, drawn without replacement with the task's seed; halves round up), less every row
  of the classes in ``omit_classes``;
* plus the rows of the ``unlabeled`` file: the teacher labels them softly, and they enter the
  distillation loss through the soft term only (label ``-1`` in :mod:`kdcore`). The loss of a
  batch with ``b_l`` labelled and ``b_u`` unlabeled rows is

  .. math::

     L = \\alpha\\,T^2 \\frac{1}{b_l + b_u}\\sum_{i} \\mathrm{KL}(p^T_i \\,\\|\\, q^T_i)
         + (1-\\alpha)\\frac{1}{b_l}\\sum_{i \\in \\text{labelled}} \\mathrm{CE}(y_i, q_i)

  so ``alpha`` weighs the two terms as it does without unlabeled rows, whatever the labelled
  share (a batch with no labelled row has the soft term only).

The scratch twin trains on the labelled transfer rows alone: it never sees an omitted class
nor an unlabeled row. Validation and test are never touched.

**Bias correction** (Hinton et al. 2015, §3: the omitted 3s): after training, a shift ``b``
is added to the logits of the omitted classes of each student. ``b`` is chosen on the
validation split, exactly: each validation row ``i`` switches from its best kept class to its
best omitted class once ``b`` exceeds ``t_i = max_kept z_i − max_omitted z_i``, so validation
accuracy is a step function of ``b`` with steps at the ``t_i``; :func:`choose_bias_shift`
evaluates it at 0 and midway between every pair of consecutive steps and takes the first best
``b ≥ 0`` (the middle of the smallest run of best shifts, not its edge). The test split is read once, with the chosen shift.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.config.suite import TransferConfig
from bench.errors import InputError
from bench.tasks import TaskData
from bench.tasks.files import FORMATS, FileTask, file_sha256
from bench.teachers import TeacherConfig

__all__ = [
    "apply_transfer",
    "choose_bias_shift",
    "read_unlabeled",
    "shift_logits",
    "transfer_summary",
]

WHERE = "[transfer]"


def _fail(key: str, rule: str, value: object) -> InputError:
    return InputError(f"The '{key}' parameter of {WHERE} must be {rule}. Got {value!r} instead.")


def apply_transfer(task: TaskData, cfg: TransferConfig, teacher: TeacherConfig) -> TaskData:
    """The task with its transfer set chosen (:class:`TaskData` ``transfer``, ``omitted``,
    ``x_unlabeled``); the task unchanged without a ``[transfer]`` table. Every rule is checked
    here, before anything is written."""
    if not cfg.active:
        return task
    names = list(task.class_names)
    unknown = [c for c in cfg.omit_classes if c not in names]
    if unknown:
        raise _fail(
            "omit_classes",
            f"labels of task '{task.name}' ({', '.join(names)})",
            unknown[0],
        )
    omitted = tuple(sorted(names.index(c) for c in cfg.omit_classes))
    if len(omitted) == len(names):
        raise _fail("omit_classes", "a list that keeps at least one class", list(cfg.omit_classes))
    y = task.y_train.numpy()
    rng = np.random.default_rng([task.config.seed, 0x7F4A])
    rows: list[np.ndarray] = []
    for k, name in enumerate(names):
        of_k = np.flatnonzero(y == k)
        if k in omitted:
            continue
        take = math.floor(cfg.fraction * len(of_k) + 0.5)  # half up, not to even
        if take == 0:
            raise _fail(
                "fraction",
                f"large enough to keep a row of every class of task '{task.name}' (class "
                f"{name!r} has {len(of_k)} training rows: at least {1 / (2 * len(of_k)):.4g})",
                cfg.fraction,
            )
        rows.append(np.sort(rng.choice(of_k, size=take, replace=False)))
    x_unlabeled = None
    if cfg.unlabeled:
        if teacher.source == "logits":
            raise _fail(
                "unlabeled",
                "left out with an offline teacher ([teacher] logits: no outputs exist for new "
                "rows); give checkpoints or train the teacher here",
                cfg.unlabeled,
            )
        x_unlabeled = read_unlabeled(cfg.unlabeled, task)
        _refuse_held_out_rows(x_unlabeled, task, cfg.unlabeled)
    return replace(
        task,
        transfer=np.sort(np.concatenate(rows)),
        omitted=omitted,
        x_unlabeled=x_unlabeled,
    )


def _row_keys(x: torch.Tensor) -> list[bytes]:
    # rounded: the same raw row scaled here and by the task's split may differ in the last bit
    flat = np.round(x.reshape(len(x), -1).numpy().astype(np.float64), 4) + 0.0  # -0.0 -> 0.0
    return [r.tobytes() for r in flat]


def _refuse_held_out_rows(x: torch.Tensor, task: TaskData, path: str) -> None:
    """An unlabeled row equal to a validation or test row would let the students learn the
    teacher's answer on the very examples that judge them: a silent leak, refused."""
    held = {*_row_keys(task.x_val), *_row_keys(task.x_test)}
    dupes = [i for i, key in enumerate(_row_keys(x)) if key in held]
    if dupes:
        raise _fail(
            "unlabeled",
            "a file without rows of the validation or test split (the students would learn "
            "the teacher's outputs on the examples that judge them)",
            f"{len(dupes)} such row(s) in {path}, first: row {dupes[0]}",
        )


def transfer_summary(task: TaskData, cfg: TransferConfig) -> dict[str, object]:
    """The transfer set as the manifest records it (rows per class, omitted, unlabeled);
    empty without a ``[transfer]`` table."""
    if not cfg.active:
        return {}
    _, y = task.transfer_split()
    counts = np.bincount(y.numpy(), minlength=task.num_classes).tolist()
    unlabeled = 0 if task.x_unlabeled is None else len(task.x_unlabeled)
    out: dict[str, object] = {
        "fraction": cfg.fraction,
        "omit_classes": [task.class_names[k] for k in task.omitted],
        "labelled_rows": len(y),
        "rows_per_class": dict(zip(task.class_names, counts, strict=True)),
        "unlabeled_rows": unlabeled,
        "bias_correction": cfg.bias_correction,
    }
    if cfg.unlabeled:
        out["unlabeled"] = {"path": cfg.unlabeled, "sha256": file_sha256(cfg.unlabeled)}
    return out


def read_unlabeled(path: str, task: TaskData) -> torch.Tensor:
    """The rows of an unlabeled file as the task's features: same format rules as ``[task]``
    files (CSV / Parquet columns, or the NPZ array ``x_key``), the features of the task (by name
    for a file task's table, by count and shape otherwise), scaled with the training split's
    scaler. A label column, when present, is ignored."""
    file = Path(path)
    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise _fail("unlabeled", "a file ending in .csv, .parquet or .npz", path)
    if not file.is_file():
        raise _fail("unlabeled", "an existing file", path)
    cfg = task.config
    per_row = math.prod(task.input_shape)
    got: object
    if fmt == "npz":
        x = _unlabeled_npz(file, cfg.x_key if isinstance(cfg, FileTask) else "X")
        what, got = f"{per_row} features per row", f"{x.shape[1]} per row in {path}"
    else:
        x, what, got = _unlabeled_table(file, fmt, task, per_row)
    if x.shape[1] != per_row:
        raise _fail("unlabeled", f"a file with {what}", got)
    if len(x) == 0:
        raise _fail("unlabeled", "a file with at least one row", path)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise _fail("unlabeled", "a file of finite features", f"{bad} row(s) with NaN or inf")
    if task.scaler_mean is not None and task.scaler_scale is not None:
        x = (x - task.scaler_mean) / task.scaler_scale
    return torch.as_tensor(x, dtype=torch.float32).reshape(len(x), *task.input_shape)


def _unlabeled_npz(file: Path, key: str) -> np.ndarray:
    """The NPZ feature array ``key``, flattened per row."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            if key not in archive.files:
                raise _fail(
                    "unlabeled", f"an NPZ file with the feature array {key!r}", sorted(archive)
                )
            x = archive[key]
    except InputError:
        raise
    except Exception as exc:
        raise _fail("unlabeled", "a valid NPZ archive of plain arrays", f"{file}: {exc}") from None
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise _fail("unlabeled", f"an NPZ array {key!r} of numbers [N, ...]", list(x.shape))
    return x.reshape(len(x), -1).astype(np.float64)


def _unlabeled_table(
    file: Path, fmt: str, task: TaskData, per_row: int
) -> tuple[np.ndarray, str, object]:
    """A CSV / Parquet file's feature columns (those of the task, by name where the task is a
    table; else every column but the target), what the file had to hold, and what it did."""
    import pandas as pd

    try:
        frame = pd.read_csv(file) if fmt == "csv" else pd.read_parquet(file)
    except Exception as exc:
        raise _fail("unlabeled", f"a valid {fmt} file", f"{file}: {type(exc).__name__}") from None
    frame.columns = [str(c) for c in frame.columns]
    cfg = task.config
    target = cfg.target if isinstance(cfg, FileTask) else "target"
    names = task.source.get("features")
    got: object
    if names is not None:
        missing = [n for n in names if n not in frame.columns]
        what = f"the feature columns of task '{task.name}'"
        got = f"{file} without column {missing[0]!r}" if missing else None
        columns = list(names)
    else:
        columns = [c for c in frame.columns if c != target]
        what = f"{per_row} feature columns (those of task '{task.name}')"
        got = f"{len(columns)} in {file}" if len(columns) != per_row else None
    if got is not None:
        raise _fail("unlabeled", f"a file with {what}", got)
    if not frame[columns].apply(pd.api.types.is_numeric_dtype).all():
        raise _fail("unlabeled", "a file of numeric features", f"column {columns[0]!r}")
    return frame[columns].to_numpy(dtype=np.float64), what, got


def shift_logits(logits: torch.Tensor, omitted: tuple[int, ...], shift: float) -> torch.Tensor:
    """``logits`` (``[..., C]``) with ``shift`` added to the omitted classes'."""
    out = logits.clone()
    out[..., list(omitted)] += shift
    return out


def choose_bias_shift(logits: torch.Tensor, y: torch.Tensor, omitted: tuple[int, ...]) -> float:
    """The shift ``b ≥ 0`` of the omitted classes' logits that maximises accuracy on
    (``logits`` ``[n, C]``, ``y``): exact, over the steps of the accuracy; the middle of the
    first run of best shifts (module docstring)."""
    z = logits.double()
    mask = torch.zeros(z.shape[-1], dtype=torch.bool)
    mask[list(omitted)] = True
    z_omit, i_omit = z[:, mask].max(-1)
    z_kept, i_kept = z[:, ~mask].max(-1)
    omit_classes = torch.nonzero(mask).flatten()[i_omit]
    kept_classes = torch.nonzero(~mask).flatten()[i_kept]
    steps = (z_kept - z_omit).numpy()  # row i predicts an omitted class once b > steps[i]
    right_omit = (omit_classes == y).numpy()
    right_kept = (kept_classes == y).numpy()
    order = np.argsort(steps, kind="stable")
    s, gain = steps[order], (right_omit.astype(int) - right_kept.astype(int))[order]
    # candidates: 0, and the midpoints between consecutive steps above 0 (then past the last)
    above = s[s >= 0]
    candidates = np.concatenate(
        [[0.0], (above[:-1] + above[1:]) / 2 if len(above) > 1 else [], above[-1:] + 1.0]
    )
    switched = np.searchsorted(s, candidates, side="left")  # rows with steps[i] < b
    acc = right_kept.sum() + np.concatenate([[0], np.cumsum(gain)])[switched]
    return float(candidates[int(np.argmax(acc))])
