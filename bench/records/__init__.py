"""The run folder's records: the column table, rows → frames, table I/O, the manifest, and
the integrity checks of a whole folder.

``schema`` (the column table) · ``rows`` (rows → typed frame) · ``io`` (atomic table files) ·
``manifest`` (``manifest.json``) · ``integrity`` (a folder checked whole, :func:`load_run`).
"""

from bench.records.integrity import Run, check_tables, check_weights, load_run, read_weights
from bench.records.io import read_seeds, read_trials, require_run_dir, write_trials
from bench.records.manifest import Manifest, TaskEntry, TeacherSummary, task_entry
from bench.records.rows import row_arch, to_frame
from bench.records.schema import (
    ARCH_PREFIX,
    BETTER,
    COLUMN_NAMES,
    COLUMNS,
    KEY_COLUMNS,
    SCHEMA_VERSION,
    SEED_COLUMNS,
    Column,
    columns_markdown,
)

__all__ = [
    "ARCH_PREFIX",
    "BETTER",
    "COLUMNS",
    "COLUMN_NAMES",
    "KEY_COLUMNS",
    "SCHEMA_VERSION",
    "SEED_COLUMNS",
    "Column",
    "Manifest",
    "Run",
    "TaskEntry",
    "TeacherSummary",
    "check_tables",
    "check_weights",
    "columns_markdown",
    "load_run",
    "read_seeds",
    "read_trials",
    "read_weights",
    "require_run_dir",
    "row_arch",
    "task_entry",
    "to_frame",
    "write_trials",
]
