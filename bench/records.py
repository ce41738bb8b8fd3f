"""The flat trial record: column names, dtypes, units and meaning; atomic table writes.

One row per trial (replicate seeds are aggregated into mean / std / 95 % CI columns; the
per-seed values are in ``seeds.csv``). Scalar cells only; "not measured here" is NaN/NA (for
example the GPU columns on a CPU machine), never a missing column. Accuracies and gaps are
fractions in [0, 1] in the files; reports and CLI flags speak in percentage points (pp).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "SEED_COLUMNS",
    "atomic_write_text",
    "read_trials",
    "to_frame",
    "write_trials",
]

SCHEMA_VERSION = 1

# (name, pandas dtype, unit, meaning)
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("schema_version", "int64", "-", "version of this column set"),
    ("run_id", "string", "-", "run folder name: UTC start time and suite name"),
    ("task", "string", "-", "task name from the suite"),
    ("trial", "int64", "-", "Optuna trial number (per task)"),
    ("phase", "string", "-", "'search' (Optuna sweep) or 'confirm' (top-k re-run with more seeds)"),
    ("state", "string", "-", "'complete', 'fail' or 'pruned'"),
    ("fail_reason", "string", "-", "why the trial failed or was pruned; empty otherwise"),
    ("family", "string", "-", "student family (registry name)"),
    ("width", "int64", "units", "hidden-layer width"),
    ("depth", "int64", "layers", "number of hidden layers"),
    ("temperature", "float64", "-", "distillation temperature T"),
    ("alpha", "float64", "-", "weight of the T²-scaled soft term; 1 - alpha weighs hard-label CE"),
    ("n_seeds", "int64", "-", "replicate seeds trained for this trial"),
    ("seed", "int64", "-", "first replicate seed (seeds are seed, seed+1, …)"),
    ("student_params", "int64", "params", "parameters of one student"),
    ("ensemble_params", "int64", "params", "parameters of the whole teacher ensemble"),
    ("param_ratio", "float64", "-", "student_params / ensemble_params"),
    ("student_flops", "int64", "FLOPs", "forward FLOPs per sample (2 per multiply-add)"),
    ("student_macs", "int64", "MACs", "forward multiply-adds per sample = student_flops / 2"),
    ("ensemble_flops", "int64", "FLOPs", "forward FLOPs per sample of all ensemble members"),
    ("flops_ratio", "float64", "-", "student_flops / ensemble_flops"),
    (
        "student_acc",
        "float64",
        "fraction",
        "test accuracy of the distilled student, mean over seeds",
    ),
    ("student_acc_std", "float64", "fraction", "sample std over seeds (NaN for 1 seed)"),
    ("student_acc_ci_low", "float64", "fraction", "95 % t-interval of the mean, lower bound"),
    ("student_acc_ci_high", "float64", "fraction", "95 % t-interval of the mean, upper bound"),
    ("ensemble_acc", "float64", "fraction", "test accuracy of the teacher ensemble"),
    (
        "best_member_acc",
        "float64",
        "fraction",
        "test accuracy of the best single member (best on val)",
    ),
    ("mean_member_acc", "float64", "fraction", "mean test accuracy of the members"),
    (
        "acc_gap",
        "float64",
        "fraction",
        "ensemble_acc - student_acc (mean over seeds); > 0 = student worse",
    ),
    ("acc_gap_ci_low", "float64", "fraction", "95 % interval of acc_gap, lower bound"),
    (
        "acc_gap_ci_high",
        "float64",
        "fraction",
        "95 % interval of acc_gap, upper bound (used by recommend)",
    ),
    ("gap_to_best_member", "float64", "fraction", "best_member_acc - student_acc"),
    (
        "scratch_acc",
        "float64",
        "fraction",
        "test accuracy of the same architecture trained on hard labels, same seeds",
    ),
    ("kd_gain", "float64", "fraction", "student_acc - scratch_acc, paired per seed, mean"),
    ("kd_gain_ci_low", "float64", "fraction", "95 % interval of kd_gain, lower bound"),
    ("kd_gain_ci_high", "float64", "fraction", "95 % interval of kd_gain, upper bound"),
    (
        "gap_closed",
        "float64",
        "-",
        "(student - scratch) / (ensemble - scratch); NaN when ensemble <= scratch",
    ),
    (
        "ensemble_gain_kept",
        "float64",
        "-",
        "(student - best member) / (ensemble - best member); NaN when ensemble <= best member",
    ),
    ("agreement", "float64", "fraction", "top-1 agreement of student and ensemble on test"),
    (
        "kl_to_teacher",
        "float64",
        "nats",
        "KL(ensemble ‖ student) at T = 1 on test, mean per sample",
    ),
    (
        "student_ece",
        "float64",
        "fraction",
        "expected calibration error of the student on test (15 bins)",
    ),
    (
        "ensemble_ece",
        "float64",
        "fraction",
        "expected calibration error of the ensemble on test (15 bins)",
    ),
    (
        "teacher_mean_max_prob",
        "float64",
        "fraction",
        "ensemble's mean max-probability on the transfer (train) set at T = 1",
    ),
    (
        "student_val_acc",
        "float64",
        "fraction",
        "best validation accuracy of the distilled student (model selection)",
    ),
    ("scratch_val_acc", "float64", "fraction", "best validation accuracy of the scratch student"),
    ("ensemble_val_acc", "float64", "fraction", "validation accuracy of the teacher ensemble"),
    (
        "val_gap",
        "float64",
        "fraction",
        "ensemble_val_acc - student_val_acc (what confirm selection uses)",
    ),
    ("best_epoch", "float64", "epochs", "selected epoch of the distilled student, mean over seeds"),
    ("latency_threads", "int64", "threads", "CPU threads for the latency_cpu_* columns"),
    (
        "latency_mt_threads",
        "Int64",
        "threads",
        "CPU threads for the latency_cpu_mt_* columns (all cores); NA if off",
    ),
    ("latency_batch_n", "int64", "samples", "the large batch N of the *_bN_* columns"),
    *(
        (
            f"latency_{dev}_{b}_{stat}_ms",
            "float64",
            "ms",
            f"student latency per call, {dev.upper()}, {bdesc}, {sdesc}",
        )
        for dev in ("cpu", "gpu")
        for b, bdesc in (("b1", "batch 1"), ("bN", "batch N"))
        for stat, sdesc in (
            ("p50", "median over timed blocks"),
            ("p90", "90th percentile over blocks"),
            ("p99", "99th percentile over blocks"),
            ("iqr", "inter-quartile range over blocks"),
        )
    ),
    ("latency_cpu_b1_noisy", "boolean", "-", "IQR / median > 10 % for latency_cpu_b1"),
    ("latency_cpu_bN_noisy", "boolean", "-", "IQR / median > 10 % for latency_cpu_bN"),
    (
        "latency_gpu_b1_noisy",
        "boolean",
        "-",
        "IQR / median > 10 % for latency_gpu_b1 (NA without GPU)",
    ),
    (
        "latency_gpu_bN_noisy",
        "boolean",
        "-",
        "IQR / median > 10 % for latency_gpu_bN (NA without GPU)",
    ),
    ("throughput_cpu_bN_per_s", "float64", "samples/s", "N / latency_cpu_bN_p50"),
    ("throughput_gpu_bN_per_s", "float64", "samples/s", "N / latency_gpu_bN_p50 (NaN without GPU)"),
    (
        "latency_cpu_mt_b1_p50_ms",
        "float64",
        "ms",
        "student latency, CPU, all cores, batch 1, median",
    ),
    (
        "latency_cpu_mt_bN_p50_ms",
        "float64",
        "ms",
        "student latency, CPU, all cores, batch N, median",
    ),
    ("throughput_cpu_mt_bN_per_s", "float64", "samples/s", "N / latency_cpu_mt_bN_p50"),
    *(
        (
            f"ensemble_{form}_latency_{dev}_{b}_p50_ms",
            "float64",
            "ms",
            f"ensemble run as {fdesc}, {dev.upper()}, {bdesc}, median",
        )
        for form, fdesc in (
            ("loop", "a Python loop over members"),
            ("fused", "one batched-matmul graph"),
        )
        for dev in ("cpu", "gpu")
        for b, bdesc in (("b1", "batch 1"), ("bN", "batch N"))
    ),
    ("speedup_cpu_b1_vs_loop", "float64", "x", "ensemble loop / student latency, CPU batch 1"),
    ("speedup_cpu_b1_vs_fused", "float64", "x", "ensemble fused / student latency, CPU batch 1"),
    (
        "speedup_cpu_b1",
        "float64",
        "x",
        "faster ensemble form / student latency, CPU batch 1 (the honest one)",
    ),
    (
        "speedup_gpu_b1",
        "float64",
        "x",
        "faster ensemble form / student latency, GPU batch 1 (NaN without GPU)",
    ),
    (
        "train_time_s",
        "float64",
        "s",
        "wall time of the training group (distilled + scratch members, all seeds)",
    ),
    (
        "trial_time_s",
        "float64",
        "s",
        "wall time of the whole trial incl. evaluation and measurement",
    ),
    ("group_members", "int64", "students", "students trained together in this trial's group"),
    ("datetime_utc", "string", "-", "trial end time, ISO 8601 UTC"),
)

# Per-seed rows (seeds.csv): the values behind the aggregated columns.
SEED_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("run_id", "string", "-", "run folder name"),
    ("task", "string", "-", "task name"),
    ("trial", "int64", "-", "Optuna trial number"),
    ("phase", "string", "-", "'search' or 'confirm'"),
    ("seed", "int64", "-", "replicate seed"),
    ("width", "int64", "units", "hidden width"),
    ("depth", "int64", "layers", "hidden layers"),
    ("temperature", "float64", "-", "T"),
    ("alpha", "float64", "-", "alpha"),
    ("student_acc", "float64", "fraction", "test accuracy, distilled"),
    ("scratch_acc", "float64", "fraction", "test accuracy, scratch"),
    ("kd_gain", "float64", "fraction", "student_acc - scratch_acc"),
    ("student_val_acc", "float64", "fraction", "best val accuracy, distilled"),
    ("scratch_val_acc", "float64", "fraction", "best val accuracy, scratch"),
    ("agreement", "float64", "fraction", "top-1 agreement with the ensemble"),
    ("kl_to_teacher", "float64", "nats", "KL(ensemble ‖ student), T = 1"),
    ("student_ece", "float64", "fraction", "expected calibration error"),
    ("best_epoch", "int64", "epochs", "selected epoch, distilled"),
)

COLUMN_NAMES = tuple(c[0] for c in COLUMNS)


def to_frame(
    rows: Iterable[Mapping[str, Any]], columns: tuple[tuple[str, str, str, str], ...] = COLUMNS
) -> pd.DataFrame:
    """Rows → DataFrame with every documented column, in order and with its dtype."""
    rows = list(rows)
    names = [c[0] for c in columns]
    extra = sorted({k for r in rows for k in r} - set(names))
    if extra:
        raise KeyError(f"undocumented record columns: {extra}")
    frame = pd.DataFrame([{n: r.get(n, math.nan) for n in names} for r in rows], columns=names)
    for name, dtype, _, _ in columns:
        col = frame[name]
        if dtype == "string":
            frame[name] = col.astype("string")
        elif dtype == "boolean":
            frame[name] = col.map(
                lambda v: (
                    pd.NA if v is None or (isinstance(v, float) and math.isnan(v)) else bool(v)
                )
            ).astype("boolean")
        elif dtype in ("int64", "Int64"):
            numeric = pd.to_numeric(col, errors="coerce")
            frame[name] = (
                numeric.astype("Int64")
                if (dtype == "Int64" or numeric.isna().any())
                else numeric.astype("int64")
            )
        else:
            frame[name] = pd.to_numeric(col, errors="coerce").astype("float64")
    return frame


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_trials(frame: pd.DataFrame, run_dir: Path, stem: str = "trials") -> None:
    """Write ``<stem>.parquet`` and ``<stem>.csv`` atomically (temp file + rename)."""
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(run_dir / f"{stem}.parquet", buf.getvalue())
    atomic_write_text(run_dir / f"{stem}.csv", frame.to_csv(index=False))


def require_run_dir(path: str | Path, what: str = "The RUN_DIR argument") -> Path:
    """``path`` as a Path if it is a kdbench run folder (has manifest.json), else a SuiteError
    (exit 2) naming ``what``."""
    from bench.suite import SuiteError

    run_dir = Path(path)
    if not (run_dir / "manifest.json").is_file():
        raise SuiteError(
            f"{what} must be a kdbench run folder (with manifest.json). Got {str(path)!r} instead."
        )
    return run_dir


def read_trials(run_dir: Path) -> pd.DataFrame:
    """The trial table of a run folder (parquet preferred; CSV as a fallback)."""
    run_dir = Path(run_dir)
    if (run_dir / "trials.parquet").is_file():
        return pd.read_parquet(run_dir / "trials.parquet")
    if (run_dir / "trials.csv").is_file():
        return to_frame(
            pd.read_csv(run_dir / "trials.csv", keep_default_na=False, na_values=[""]).to_dict(
                "records"
            )
        )
    raise FileNotFoundError(
        f"{run_dir} holds no trials.parquet or trials.csv; is it a kdbench run folder?"
    )
