"""The flat trial record and the run manifest: column names, dtypes, units, schema version.

One row per trial (replicate seeds are aggregated into mean / std / 95 % CI columns; the
per-seed values are in ``seeds.csv``, whose columns are the ``per_seed`` rows of
:data:`COLUMNS`). Scalar cells only; "not measured here" is NaN/NA (for example the GPU
columns on a CPU machine), never a missing column. Accuracies and gaps are fractions in
[0, 1] in the files; reports and CLI flags speak in percentage points (pp).

Architecture columns come from the student family's declaration: ``arch`` (the one label,
e.g. ``channels 16 × blocks 2``) and one ``arch_<name>`` column per architecture parameter;
the MLP also fills ``width`` and ``depth``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from bench.errors import InputError
from bench.rundir import atomic_write_bytes, atomic_write_text

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "SCHEMA_VERSION",
    "SEED_COLUMNS",
    "Column",
    "Manifest",
    "Run",
    "arch_columns",
    "check_tables",
    "load_run",
    "read_seeds",
    "read_trials",
    "require_run_dir",
    "to_frame",
    "write_trials",
]

# 2: arch / arch_<name> columns, width and depth nullable, nullable teacher cost, family in
#    seeds, worker and retry_of, state 'duplicate'
SCHEMA_VERSION = 2


class Column(NamedTuple):
    name: str
    dtype: str
    unit: str
    meaning: str
    per_seed: bool = False


def C(name: str, dtype: str, unit: str, meaning: str, per_seed: bool = False) -> Column:
    return Column(name, dtype, unit, meaning, per_seed)


S = True  # per_seed: the column also exists, per replicate seed, in seeds.csv
COLUMNS: tuple[Column, ...] = (
    C("schema_version", "int64", "-", "version of this column set"),
    C("run_id", "string", "-", "run folder name: UTC start time and suite name", S),
    C("task", "string", "-", "task name from the suite", S),
    C(
        "trial",
        "int64",
        "-",
        "Optuna trial number (per task); a confirm row keeps its search trial's",
        S,
    ),
    C(
        "phase",
        "string",
        "-",
        "'search' (Optuna sweep) or 'confirm' (top-k re-run with more seeds)",
        S,
    ),
    C(
        "state",
        "string",
        "-",
        "'complete', 'fail', 'pruned' or 'duplicate' (a configuration already trained: not trained again)",
    ),
    C(
        "fail_reason",
        "string",
        "-",
        "why the trial failed, was pruned or is a duplicate; empty otherwise",
    ),
    C("family", "string", "-", "student family (registry name)", S),
    C("arch", "string", "-", "the architecture as one label, e.g. 'width 32 × depth 2'", S),
    C("width", "Int64", "units", "hidden-layer width (mlp only; NA for other families)", S),
    C("depth", "Int64", "layers", "number of hidden layers (mlp only; NA for other families)", S),
    C("temperature", "float64", "-", "distillation temperature T", S),
    C(
        "alpha",
        "float64",
        "-",
        "weight of the T²-scaled soft term; 1 - alpha weighs hard-label CE",
        S,
    ),
    C("n_seeds", "int64", "-", "replicate seeds trained for this trial"),
    C("seed", "int64", "-", "first replicate seed (seeds are seed, seed+1, …)", S),
    C("student_params", "int64", "params", "parameters of one student"),
    C(
        "ensemble_params",
        "Int64",
        "params",
        "parameters of the whole teacher ensemble (NA: offline logits of unknown architecture)",
    ),
    C("param_ratio", "float64", "-", "student_params / ensemble_params"),
    C("student_flops", "int64", "FLOPs", "forward FLOPs per sample (2 per multiply-add)"),
    C("student_macs", "int64", "MACs", "forward multiply-adds per sample = student_flops / 2"),
    C(
        "ensemble_flops",
        "Int64",
        "FLOPs",
        "forward FLOPs per sample of all ensemble members (NA: unknown architecture)",
    ),
    C("flops_ratio", "float64", "-", "student_flops / ensemble_flops"),
    C(
        "student_acc",
        "float64",
        "fraction",
        "test accuracy of the distilled student, mean over seeds",
        S,
    ),
    C("student_acc_std", "float64", "fraction", "sample std over seeds (NaN for 1 seed)"),
    C(
        "student_acc_ci_low",
        "float64",
        "fraction",
        "95 % interval of student_acc (paired bootstrap over test examples and seeds, at least the Wilson interval), lower bound",
    ),
    C("student_acc_ci_high", "float64", "fraction", "95 % interval of student_acc, upper bound"),
    C("n_test", "Int64", "examples", "test examples every accuracy of the row is measured on"),
    C("ensemble_acc", "float64", "fraction", "test accuracy of the teacher ensemble"),
    C(
        "best_member_acc",
        "float64",
        "fraction",
        "test accuracy of the best single member (best on val)",
    ),
    C("mean_member_acc", "float64", "fraction", "mean test accuracy of the members"),
    C(
        "acc_gap",
        "float64",
        "fraction",
        "ensemble_acc - student_acc (mean over seeds); > 0 = student worse",
    ),
    C(
        "acc_gap_ci_low",
        "float64",
        "fraction",
        "95 % interval of acc_gap (paired bootstrap over test examples and seeds, at least "
        "Newcombe's paired score interval), lower bound",
    ),
    C(
        "acc_gap_ci_high",
        "float64",
        "fraction",
        "95 % interval of acc_gap, upper bound (used by recommend)",
    ),
    C("rel_acc", "float64", "-", "student_acc / ensemble_acc (MLPerf-style relative accuracy)"),
    C(
        "rel_acc_ci_low",
        "float64",
        "-",
        "1 - acc_gap_ci_high / ensemble_acc (used by --min-relative-acc)",
    ),
    C("rel_acc_ci_high", "float64", "-", "1 - acc_gap_ci_low / ensemble_acc"),
    C("gap_to_best_member", "float64", "fraction", "best_member_acc - student_acc"),
    C(
        "scratch_acc",
        "float64",
        "fraction",
        "test accuracy of the same architecture trained on hard labels, same seeds",
        S,
    ),
    C("kd_gain", "float64", "fraction", "student_acc - scratch_acc, paired per seed, mean", S),
    C(
        "kd_gain_ci_low",
        "float64",
        "fraction",
        "95 % interval of kd_gain (paired per seed and per example; bootstrap, at least "
        "Newcombe's paired score interval), lower bound",
    ),
    C("kd_gain_ci_high", "float64", "fraction", "95 % interval of kd_gain, upper bound"),
    C(
        "generalist_taught_acc",
        "float64",
        "fraction",
        "specialist teachers only (NaN otherwise): test accuracy of the same student (same "
        "seed, T and alpha) taught by the generalist alone, mean over seeds",
        S,
    ),
    C(
        "specialist_gain",
        "float64",
        "fraction",
        "student_acc - generalist_taught_acc, paired per seed, mean (specialist teachers only)",
        S,
    ),
    C(
        "specialist_gain_ci_low",
        "float64",
        "fraction",
        "95 % interval of specialist_gain (paired bootstrap, as kd_gain), lower bound",
    ),
    C(
        "specialist_gain_ci_high",
        "float64",
        "fraction",
        "95 % interval of specialist_gain, upper bound",
    ),
    C(
        "gap_closed",
        "float64",
        "-",
        "(student - scratch) / (ensemble - scratch); NaN when ensemble <= scratch",
    ),
    C(
        "ensemble_gain_kept",
        "float64",
        "-",
        "(student - best member) / (ensemble - best member); NaN when ensemble <= best member",
    ),
    C("agreement", "float64", "fraction", "top-1 agreement of student and ensemble on test", S),
    C(
        "kl_to_teacher",
        "float64",
        "nats",
        "KL(ensemble ‖ student) at T = 1 on test, mean per sample",
        S,
    ),
    C(
        "student_ece",
        "float64",
        "fraction",
        "expected calibration error of the student on test (15 bins)",
        S,
    ),
    C(
        "ensemble_ece",
        "float64",
        "fraction",
        "expected calibration error of the ensemble on test (15 bins)",
    ),
    C(
        "teacher_mean_max_prob",
        "float64",
        "fraction",
        "ensemble's mean max-probability on the transfer (train) set at T = 1",
    ),
    C(
        "student_val_acc",
        "float64",
        "fraction",
        "best validation accuracy of the distilled student (model selection)",
        S,
    ),
    C(
        "scratch_val_acc",
        "float64",
        "fraction",
        "best validation accuracy of the scratch student",
        S,
    ),
    C("ensemble_val_acc", "float64", "fraction", "validation accuracy of the teacher ensemble"),
    C(
        "val_gap",
        "float64",
        "fraction",
        "ensemble_val_acc - student_val_acc (what confirm selection uses)",
    ),
    C(
        "best_epoch",
        "float64",
        "epochs",
        "selected epoch of the distilled student, mean over seeds",
        S,
    ),
    C("latency_threads", "int64", "threads", "CPU threads for the latency_cpu_* columns"),
    C(
        "latency_mt_threads",
        "Int64",
        "threads",
        "CPU threads for the latency_cpu_mt_* columns (all cores); NA if off",
    ),
    C("latency_batch_n", "int64", "samples", "the large batch N of the *_bN_* columns"),
    C(
        "latency_cpu_b1_p50_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch 1, median over timed blocks",
    ),
    C(
        "latency_cpu_b1_p90_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch 1, 90th percentile over blocks",
    ),
    C(
        "latency_cpu_b1_p99_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch 1, 99th percentile over blocks",
    ),
    C(
        "latency_cpu_b1_iqr_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch 1, inter-quartile range over blocks",
    ),
    C(
        "latency_cpu_bN_p50_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch N, median over timed blocks",
    ),
    C(
        "latency_cpu_bN_p90_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch N, 90th percentile over blocks",
    ),
    C(
        "latency_cpu_bN_p99_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch N, 99th percentile over blocks",
    ),
    C(
        "latency_cpu_bN_iqr_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch N, inter-quartile range over blocks",
    ),
    C(
        "latency_gpu_b1_p50_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch 1, median over timed blocks",
    ),
    C(
        "latency_gpu_b1_p90_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch 1, 90th percentile over blocks",
    ),
    C(
        "latency_gpu_b1_p99_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch 1, 99th percentile over blocks",
    ),
    C(
        "latency_gpu_b1_iqr_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch 1, inter-quartile range over blocks",
    ),
    C(
        "latency_gpu_bN_p50_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch N, median over timed blocks",
    ),
    C(
        "latency_gpu_bN_p90_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch N, 90th percentile over blocks",
    ),
    C(
        "latency_gpu_bN_p99_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch N, 99th percentile over blocks",
    ),
    C(
        "latency_gpu_bN_iqr_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch N, inter-quartile range over blocks",
    ),
    C("latency_cpu_b1_noisy", "boolean", "-", "IQR / median > 10 % for latency_cpu_b1"),
    C("latency_cpu_bN_noisy", "boolean", "-", "IQR / median > 10 % for latency_cpu_bN"),
    C(
        "latency_gpu_b1_noisy",
        "boolean",
        "-",
        "IQR / median > 10 % for latency_gpu_b1 (NA without GPU)",
    ),
    C(
        "latency_gpu_bN_noisy",
        "boolean",
        "-",
        "IQR / median > 10 % for latency_gpu_bN (NA without GPU)",
    ),
    C("throughput_cpu_bN_per_s", "float64", "samples/s", "N / latency_cpu_bN_p50"),
    C(
        "throughput_gpu_bN_per_s",
        "float64",
        "samples/s",
        "N / latency_gpu_bN_p50 (NaN without GPU)",
    ),
    C(
        "latency_cpu_mt_b1_p50_ms",
        "float64",
        "ms",
        "student latency, CPU, all cores, batch 1, median",
    ),
    C(
        "latency_cpu_mt_bN_p50_ms",
        "float64",
        "ms",
        "student latency, CPU, all cores, batch N, median",
    ),
    C("throughput_cpu_mt_bN_per_s", "float64", "samples/s", "N / latency_cpu_mt_bN_p50"),
    C(
        "ensemble_loop_latency_cpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble run as a Python loop over members, CPU, batch 1, median",
    ),
    C(
        "ensemble_loop_latency_cpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble run as a Python loop over members, CPU, batch N, median",
    ),
    C(
        "ensemble_loop_latency_gpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble run as a Python loop over members, GPU, batch 1, median",
    ),
    C(
        "ensemble_loop_latency_gpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble run as a Python loop over members, GPU, batch N, median",
    ),
    C(
        "ensemble_fused_latency_cpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble run as one batched graph, CPU, batch 1, median",
    ),
    C(
        "ensemble_fused_latency_cpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble run as one batched graph, CPU, batch N, median",
    ),
    C(
        "ensemble_fused_latency_gpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble run as one batched graph, GPU, batch 1, median",
    ),
    C(
        "ensemble_fused_latency_gpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble run as one batched graph, GPU, batch N, median",
    ),
    C("speedup_cpu_b1_vs_loop", "float64", "x", "ensemble loop / student latency, CPU batch 1"),
    C("speedup_cpu_b1_vs_fused", "float64", "x", "ensemble fused / student latency, CPU batch 1"),
    C(
        "speedup_cpu_b1",
        "float64",
        "x",
        "faster ensemble form / student latency, CPU batch 1 (the honest one)",
    ),
    C(
        "speedup_gpu_b1",
        "float64",
        "x",
        "faster ensemble form / student latency, GPU batch 1 (NaN without GPU)",
    ),
    C(
        "train_time_s",
        "float64",
        "s",
        "wall time of the training group (distilled + scratch members, all seeds)",
    ),
    C(
        "trial_time_s",
        "float64",
        "s",
        "wall time of the whole trial incl. evaluation; a pruned or failed trial: the time "
        "it ran before it stopped (a group's time shared equally among its trials)",
    ),
    C("group_members", "int64", "students", "students trained together in this trial's group"),
    C(
        "train_threads",
        "int64",
        "threads",
        "torch threads of this trial's training group ([measure] train_threads; auto: by size)",
    ),
    C("worker", "string", "-", "the process that trained the trial: host:pid"),
    C("retry_of", "Int64", "-", "the trial this one retries (its worker died); NA otherwise"),
    C("datetime_utc", "string", "-", "trial end time, ISO 8601 UTC"),
)
del S

COLUMN_NAMES = tuple(c.name for c in COLUMNS)
SEED_COLUMNS: tuple[Column, ...] = tuple(c for c in COLUMNS if c.per_seed)
ARCH_PREFIX = "arch_"


def arch_columns(family_params: Iterable[str]) -> list[str]:
    """The ``arch_<name>`` columns of a family's architecture parameters."""
    return [ARCH_PREFIX + name for name in family_params]


def _insert_arch(names: list[str], arch_cols: list[str]) -> list[str]:
    at = names.index("depth") + 1 if "depth" in names else len(names)
    return names[:at] + arch_cols + names[at:]


def to_frame(
    rows: Iterable[Mapping[str, Any]], columns: tuple[Column, ...] = COLUMNS
) -> pd.DataFrame:
    """Rows → DataFrame with every documented column, in order and with its dtype.

    ``arch_<name>`` columns (the family's architecture parameters) follow ``depth``; any other
    unknown key is refused.
    """
    rows = list(rows)
    names = [c.name for c in columns]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    arch_cols = [k for k in keys if k.startswith(ARCH_PREFIX) and k not in names]
    extra = sorted(set(keys) - set(names) - set(arch_cols))
    if extra:
        raise KeyError(f"undocumented record columns: {extra}")
    ordered = _insert_arch(names, arch_cols)
    frame = pd.DataFrame([{n: r.get(n, math.nan) for n in ordered} for r in rows], columns=ordered)
    dtypes = {c.name: c.dtype for c in columns}
    for name in arch_cols:
        numeric = pd.to_numeric(frame[name], errors="coerce")
        whole = numeric.dropna()
        dtypes[name] = "Int64" if len(whole) and (whole == whole.round()).all() else "float64"
    for name in ordered:
        frame[name] = _as_dtype(frame[name], dtypes[name])
    return frame


def _as_dtype(col: pd.Series, dtype: str) -> pd.Series:
    if dtype == "string":
        return col.map(lambda v: pd.NA if _missing(v) else str(v)).astype("string")
    if dtype == "boolean":
        return col.map(lambda v: pd.NA if _missing(v) else bool(v)).astype("boolean")
    numeric = pd.to_numeric(col, errors="coerce")
    if dtype in ("int64", "Int64"):
        return (
            numeric.astype("Int64")
            if (dtype == "Int64" or numeric.isna().any())
            else numeric.astype("int64")
        )
    return numeric.astype("float64")


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def write_trials(frame: pd.DataFrame, run_dir: Path, stem: str = "trials") -> None:
    """Write ``<stem>.parquet`` and ``<stem>.csv`` atomically (temp file + rename)."""
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(Path(run_dir) / f"{stem}.parquet", buf.getvalue())
    atomic_write_text(Path(run_dir) / f"{stem}.csv", frame.to_csv(index=False))


def require_run_dir(path: str | Path, what: str = "The RUN_DIR argument") -> Path:
    """``path`` as a Path if it is a kdbench run folder (has manifest.json), else an
    :class:`InputError` (exit 2) naming ``what``."""
    run_dir = Path(path)
    if not (run_dir / "manifest.json").is_file():
        raise InputError(
            f"{what} must be a kdbench run folder (with manifest.json). Got {str(path)!r} instead."
        )
    return run_dir


def _check_schema(frame: pd.DataFrame, path: Path) -> None:
    if "schema_version" not in frame.columns:
        raise InputError(f"The table {path} must have a 'schema_version' column. It has none.")
    versions = set(pd.to_numeric(frame["schema_version"], errors="coerce").dropna().astype(int))
    unknown = versions - {SCHEMA_VERSION}
    if unknown:
        raise InputError(
            f"The table {path} must have schema_version {SCHEMA_VERSION} (this kdbench). Got "
            f"{sorted(unknown)} instead: it was written by another kdbench version."
        )


def read_trials(run_dir: Path) -> pd.DataFrame:
    """The trial table of a run folder (parquet preferred; CSV as a fallback)."""
    run_dir = Path(run_dir)
    parquet, csv = run_dir / "trials.parquet", run_dir / "trials.csv"
    if parquet.is_file():
        frame = pd.read_parquet(parquet)
        if len(frame):
            _check_schema(frame, parquet)
        return frame
    if csv.is_file():
        raw = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        if len(raw):
            _check_schema(raw, csv)
        return to_frame(raw.to_dict("records"))
    raise InputError(
        f"The run folder {run_dir} must hold trials.parquet or trials.csv. It holds neither."
    )


def read_seeds(run_dir: Path) -> pd.DataFrame:
    """The per-seed table of a run folder (empty when the run has none yet)."""
    run_dir = Path(run_dir)
    if (run_dir / "seeds.parquet").is_file():
        return pd.read_parquet(run_dir / "seeds.parquet")
    if (run_dir / "seeds.csv").is_file():
        raw = pd.read_csv(run_dir / "seeds.csv", keep_default_na=False, na_values=[""])
        return to_frame(raw.to_dict("records"), SEED_COLUMNS)
    return to_frame([], SEED_COLUMNS)


# ---------------------------------------------------------------------- the manifest
@dataclass
class Manifest:
    """``manifest.json``: what ran, where, with which data and teacher, and its status.

    Written by :meth:`write` and read by :meth:`read` only; ``schema_version`` is checked.
    """

    run_id: str
    status: str  # running | complete | interrupted
    suite: dict[str, Any]
    suite_sha256: str
    created_utc: str
    updated_utc: str = ""
    schema_version: int = SCHEMA_VERSION
    suite_source: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    train_device: str = "cpu"
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    study_storage: str = "study.journal"  # a journal file name, or the RDB URL (redacted)
    study: str = ""  # the studies' base name: <study>:<task>[:confirm]
    mode: str = "exclusive"  # exclusive (local run folder) | shared (RDB) | cooperative
    workers: int = 1
    plugins: dict[str, str] = field(default_factory=dict)
    n_trials: int = 0
    pulled_from: str = ""

    def write(self, run_dir: Path) -> None:
        atomic_write_text(
            Path(run_dir) / "manifest.json", json.dumps(asdict(self), indent=2, default=str)
        )

    @classmethod
    def read(cls, run_dir: Path) -> Manifest:
        path = Path(run_dir) / "manifest.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(
                f"The run folder {run_dir} must hold manifest.json. It does not."
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"The manifest {path} must be valid JSON. Got: {exc}.") from None
        if not isinstance(data, dict):
            raise InputError(
                f"The manifest {path} must be a JSON object. Got {type(data).__name__}."
            )
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"The manifest {path} must have schema_version {SCHEMA_VERSION} (this kdbench). "
                f"Got {version!r} instead: it was written by another kdbench version."
            )
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "The manifest") -> Manifest:
        known = {f.name for f in fields(cls)}
        required = ("run_id", "status", "suite", "suite_sha256", "created_utc")
        absent = [k for k in required if k not in data]
        if absent:
            raise InputError(f"The manifest {where} must have the key {absent[0]!r}. It does not.")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------- reading a run folder
KEY_COLUMNS = ("schema_version", "run_id", "task", "trial", "phase", "state")


@dataclass
class Run:
    """A validated run folder: its manifest and tables."""

    run_dir: Path
    manifest: Manifest
    trials: pd.DataFrame
    seeds: pd.DataFrame


def _read_table(run_dir: Path, stem: str) -> tuple[pd.DataFrame | None, list[str]]:
    """(table, problems) of ``<stem>.parquet`` / ``<stem>.csv``; None when neither exists."""
    columns = COLUMNS if stem == "trials" else SEED_COLUMNS
    parquet, csv = run_dir / f"{stem}.parquet", run_dir / f"{stem}.csv"
    problems: list[str] = []
    frame_p = frame_c = None
    if parquet.is_file():
        try:
            frame_p = pd.read_parquet(parquet)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            problems.append(f"{parquet.name} cannot be read ({type(exc).__name__}: {first})")
    if csv.is_file():
        text = csv.read_bytes()
        if text and not text.endswith(b"\n"):
            problems.append(f"{csv.name} is truncated (its last line is incomplete)")
        else:
            try:
                raw = pd.read_csv(csv, keep_default_na=False, na_values=[""])
                frame_c = to_frame(raw.to_dict("records"), columns)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                problems.append(f"{csv.name} cannot be read ({type(exc).__name__}: {first})")
    if frame_p is not None and frame_c is not None and len(frame_p) != len(frame_c):
        problems.append(f"{parquet.name} has {len(frame_p)} rows but {csv.name} has {len(frame_c)}")
    frame = frame_p if frame_p is not None else frame_c
    if frame is not None and len(frame) and stem == "trials":
        try:
            _check_schema(frame, parquet if frame_p is not None else csv)
        except InputError as exc:
            problems.append(str(exc).rstrip("."))
        missing = [c for c in KEY_COLUMNS if c in frame.columns and frame[c].isna().any()]
        if stem == "trials" and missing:
            problems.append(f"{stem} has rows without {missing[0]!r} (cut short?)")
    return frame, problems


def check_tables(run_dir: Path, status: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The trials and seeds of a run folder and every problem found in them."""
    trials, problems = _read_table(run_dir, "trials")
    seeds, seed_problems = _read_table(run_dir, "seeds")
    problems += seed_problems
    if trials is None:
        if status == "complete":
            problems.append("the run is marked complete but holds no trials table")
        trials = to_frame([])
    if seeds is None:
        seeds = to_frame([], SEED_COLUMNS)
    if not problems and len(trials):
        done = trials[trials["state"] == "complete"]
        expected = done.groupby(["task", "phase", "trial"])["n_seeds"].sum()
        found = (
            seeds.groupby(["task", "phase", "trial"]).size() if len(seeds) else pd.Series(dtype=int)
        )
        for key, n in expected.items():
            got = int(found.get(key, 0))
            if got != int(n):
                task, phase, trial = key
                problems.append(
                    f"seeds has {got} row(s) for trial {trial} ({phase}) of task '{task}', whose "
                    f"row says n_seeds = {int(n)}"
                )
                break
    return trials, seeds, problems


def load_run(
    path: str | Path, what: str = "The RUN_DIR argument", *, need_trials: bool = True
) -> Run:
    """A run folder, validated: files present and parseable, schema version known, trials and
    seeds consistent. A damaged folder is an :class:`InputError` naming the file and the
    problem (``kdbench doctor RUN`` says what can be recovered)."""
    run_dir = require_run_dir(path, what)
    manifest = Manifest.read(run_dir)
    trials, seeds, problems = check_tables(run_dir, manifest.status)
    if problems:
        raise InputError(
            f"The run folder {run_dir} must be intact. It is damaged: {problems[0].rstrip('.')}. Run "
            f"`kdbench doctor {run_dir}` to see what can be recovered."
        )
    if need_trials and trials.empty:
        raise InputError(
            f"The run folder {run_dir} must hold at least one finished trial. It holds none "
            f"(status {manifest.status}); resume it with `kdbench run --resume {run_dir}`."
        )
    return Run(run_dir, manifest, trials, seeds)


def columns_markdown() -> str:
    """The result-column table of the README, generated from :data:`COLUMNS`."""
    lines = ["| column | dtype | unit | meaning |", "|---|---|---|---|"]
    for c in COLUMNS:
        lines.append(f"| `{c.name}` | {c.dtype} | {c.unit} | {c.meaning} |")
        if c.name == "depth":
            lines.append(
                "| `arch_<name>` | Int64 / float64 | - | one column per architecture parameter of "
                "the family (e.g. `arch_width`, `arch_channels`) |"
            )
    return "\n".join(lines) + "\n"
