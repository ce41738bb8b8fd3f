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

__all__ = ["Run", "check_tables", "check_weights", "load_run", "read_weights"]


@dataclass
class Run:
    """A validated run folder: its manifest and tables."""

    run_dir: Path
    manifest: Manifest
    trials: pd.DataFrame
    seeds: pd.DataFrame


def _weights_problem(path: Path) -> str | None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged archive
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"cannot be read ({type(exc).__name__}: {first[:120]})"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "is not a state_dict (a dict of tensors)"
    return None


def read_weights(run_dir: Path, path: Path) -> dict:
    """A kept student's state_dict (``students/<task>/trial-N-seed-S.pt``), loaded with
    ``weights_only=True``; a damaged file is an :class:`InputError` naming it."""
    import torch

    problem = _weights_problem(path)
    if problem is not None:
        raise damaged(run_dir, [f"{path.relative_to(run_dir)} {problem}"])
    return torch.load(path, map_location="cpu", weights_only=True)


def check_weights(run_dir: Path) -> list[str]:
    """Every kept student's weights file that cannot be loaded, as problems."""
    out = []
    for path in sorted((run_dir / "students").glob("*/*.pt")):
        problem = _weights_problem(path)
        if problem is not None:
            out.append(f"{path.relative_to(run_dir)} {problem}")
    return out


def check_tables(run_dir: Path, status: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The trials and seeds of a run folder and every problem found in them (a table is
    written as Parquet and CSV together, so one of the pair missing is damage too)."""
    trials, problems = read_table(run_dir, "trials")
    seeds, seed_problems = read_table(run_dir, "seeds")
    problems += seed_problems
    for stem in ("trials", "seeds"):
        parquet, csv = run_dir / f"{stem}.parquet", run_dir / f"{stem}.csv"
        if parquet.is_file() != csv.is_file():
            there, gone = (parquet, csv) if parquet.is_file() else (csv, parquet)
            problems.append(f"{gone.name} is missing ({there.name} is there)")
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
