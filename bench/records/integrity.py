"""A run folder checked whole: every table present, parseable and consistent with the others.

:func:`check_tables` lists the problems (``kdbench doctor`` prints them); :func:`load_run`
refuses a damaged folder with one line naming the file and the problem (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import InputError
from bench.records.io import damaged, read_table, require_run_dir
from bench.records.manifest import Manifest
from bench.records.rows import to_frame
from bench.records.schema import SEED_COLUMNS

__all__ = ["Run", "check_tables", "load_run"]


@dataclass
class Run:
    """A validated run folder: its manifest and tables."""

    run_dir: Path
    manifest: Manifest
    trials: pd.DataFrame
    seeds: pd.DataFrame


def check_tables(run_dir: Path, status: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The trials and seeds of a run folder and every problem found in them."""
    trials, problems = read_table(run_dir, "trials")
    seeds, seed_problems = read_table(run_dir, "seeds")
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
        raise damaged(run_dir, problems)
    if need_trials and trials.empty:
        raise InputError(
            f"The run folder {run_dir} must hold at least one finished trial. It holds none "
            f"(status {manifest.status}); resume it with `kdbench run --resume {run_dir}`."
        )
    return Run(run_dir, manifest, trials, seeds)
