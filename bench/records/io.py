"""Reading and writing a run folder's tables (atomically: temp file, fsync, rename)."""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path

import pandas as pd

from bench.durable.rundir import atomic_write_bytes, atomic_write_text
from bench.errors import InputError
from bench.records.rows import to_frame
from bench.records.schema import (
    COLUMNS,
    KEY_COLUMNS,
    SCHEMA_VERSION,
    SEED_COLUMNS,
    version_hint,
)

__all__ = [
    "check_schema",
    "damaged",
    "read_seeds",
    "read_table",
    "read_trials",
    "require_run_dir",
    "write_trials",
]


def write_trials(frame: pd.DataFrame, run_dir: Path, stem: str = "trials") -> None:
    """Write ``<stem>.parquet`` and ``<stem>.csv`` atomically (temp file + rename)."""
    buf = BytesIO()
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


def check_schema(frame: pd.DataFrame, path: Path) -> None:
    if "schema_version" not in frame.columns:
        raise InputError(f"The table {path} must have a 'schema_version' column. It has none.")
    versions = set(pd.to_numeric(frame["schema_version"], errors="coerce").dropna().astype(int))
    unknown = versions - {SCHEMA_VERSION}
    if unknown:
        raise InputError(
            f"The table {path} must have schema_version {SCHEMA_VERSION} (this kdbench). Got "
            f"{sorted(unknown)} instead: {version_hint(min(unknown))}."
        )


def read_table(run_dir: Path, stem: str) -> tuple[pd.DataFrame | None, list[str]]:
    """(table, problems) of ``<stem>.parquet`` / ``<stem>.csv``; None when neither exists.

    Each file is read into memory in one call, then parsed: a run that is still going replaces
    them (atomically) while they are read, and a parser that opened the path twice would mix
    two versions. The pair is read again when it disagrees, since a writer replaces the two
    files one after the other; what still disagrees after that is damage."""
    for attempt in range(3):
        frame, problems = _read_pair(run_dir, stem)
        if not problems:
            break
        time.sleep(0.05 * (attempt + 1))
    return frame, problems


def _read_pair(run_dir: Path, stem: str) -> tuple[pd.DataFrame | None, list[str]]:
    columns = COLUMNS if stem == "trials" else SEED_COLUMNS
    parquet, csv = run_dir / f"{stem}.parquet", run_dir / f"{stem}.csv"
    problems: list[str] = []
    frame_p = frame_c = None
    if parquet.is_file():
        try:
            frame_p = pd.read_parquet(BytesIO(parquet.read_bytes()))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            problems.append(f"{parquet.name} cannot be read ({type(exc).__name__}: {first})")
    if csv.is_file():
        text = csv.read_bytes()
        if text and not text.endswith(b"\n"):
            problems.append(f"{csv.name} is truncated (its last line is incomplete)")
        else:
            try:
                raw = pd.read_csv(BytesIO(text), keep_default_na=False, na_values=[""])
                frame_c = to_frame(raw.to_dict("records"), columns)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                problems.append(f"{csv.name} cannot be read ({type(exc).__name__}: {first})")
    if frame_p is not None and frame_c is not None and len(frame_p) != len(frame_c):
        problems.append(f"{parquet.name} has {len(frame_p)} rows but {csv.name} has {len(frame_c)}")
    frame = frame_p if frame_p is not None else frame_c
    if frame is not None and len(frame) and stem == "trials":
        try:
            check_schema(frame, parquet if frame_p is not None else csv)
        except InputError as exc:
            problems.append(str(exc).rstrip("."))
        missing = [c for c in KEY_COLUMNS if c in frame.columns and frame[c].isna().any()]
        if stem == "trials" and missing:
            problems.append(f"{stem} has rows without {missing[0]!r} (cut short?)")
    return frame, problems


def damaged(run_dir: Path, problems: list[str]) -> InputError:
    return InputError(
        f"The run folder {run_dir} must be intact. It is damaged: {problems[0].rstrip('.')}. Run "
        f"`kdbench doctor {run_dir}` to see what can be recovered."
    )


def read_trials(run_dir: Path) -> pd.DataFrame:
    """The trial table of a run folder (parquet preferred; CSV as a fallback); a damaged or
    missing table is an :class:`InputError`."""
    run_dir = Path(run_dir)
    frame, problems = read_table(run_dir, "trials")
    if problems:
        raise damaged(run_dir, problems)
    if frame is None:
        raise InputError(
            f"The run folder {run_dir} must hold trials.parquet or trials.csv. It holds neither."
        )
    return frame


def read_seeds(run_dir: Path) -> pd.DataFrame:
    """The per-seed table of a run folder (empty when the run has none yet)."""
    run_dir = Path(run_dir)
    frame, problems = read_table(run_dir, "seeds")
    if problems:
        raise damaged(run_dir, problems)
    return frame if frame is not None else to_frame([], SEED_COLUMNS)
