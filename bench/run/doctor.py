"""``kdbench doctor RUN [--repair]`` and run statuses for ``kdbench list runs``.

A local run folder's truth is its study journal (``study.journal``): every trial's record is
in it. The tables (``trials``, ``seeds``) and the manifest are derived, so whatever happens to
them, they can be rebuilt from an intact journal. ``doctor`` checks each file, compares the
tables with the journal, and says what is damaged and what can be recovered; ``--repair``
rebuilds what can be rebuilt (atomically) and cuts a torn last journal line (a crash during
a write of the journal itself), keeping a backup.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.durable.rundir import RunLock
from bench.errors import InputError
from bench.records import Manifest, check_tables, check_weights, to_frame
from bench.run.pull import (
    kept_students,
    rows_of_studies,
    weights_bytes,
    write_students,
    write_views,
)
from bench.study import Key
from bench.study.artifacts import ArtifactProblem

__all__ = ["Diagnosis", "diagnose", "run_status"]


@dataclass
class Diagnosis:
    run_dir: Path
    damaged: list[str] = field(default_factory=list)
    recoverable: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "unknown"

    @property
    def ok(self) -> bool:
        return not self.damaged

    def text(self) -> str:
        lines = [f"{self.run_dir}: {self.status}"]
        lines += [f"  damaged:     {d}" for d in self.damaged]
        lines += [f"  recoverable: {r}" for r in self.recoverable]
        lines += [f"  lost:        {x}" for x in self.lost]
        lines += [f"  note:        {n}" for n in self.notes]
        if self.damaged and self.recoverable and not self.lost:
            lines.append(f"  everything can be recovered: kdbench doctor --repair {self.run_dir}")
        elif not self.damaged:
            lines.append("  no damage found")
        return "\n".join(lines)


def _journal_tail_torn(path: Path) -> bool:
    data = path.read_bytes()
    return bool(data) and not data.endswith(b"\n")


def _journal_storage(run_dir: Path):  # -> optuna JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))


def _study_rows(run_dir: Path, manifest: dict | None):  # -> (rows, seeds, manifest_from_study)
    storage = _journal_storage(run_dir)
    summaries = storage.get_all_studies()
    stored = None
    for s in summaries:
        if isinstance(s.user_attrs.get(Key.MANIFEST), str):
            part = json.loads(s.user_attrs[Key.MANIFEST])
            stored = stored or part
            stored["tasks"].update(part.get("tasks", {}))
    source = manifest or stored
    if source is None:
        return None, None, None
    tasks = [t["name"] for t in source["suite"]["tasks"]]
    rows, seeds = rows_of_studies(
        storage, source["study"] or source["run_id"], tasks, source["run_id"]
    )
    return rows, seeds, stored


def _journal(
    d: Diagnosis, run_dir: Path, manifest: Manifest | None, repair: bool
) -> tuple[list[dict] | None, list[dict] | None, dict | None]:
    """The study journal checked (a torn last line is cut on repair) and read: its rows, seed
    rows and the manifest copy it holds (all None when there is none or it is unreadable)."""
    journal = run_dir / "study.journal"
    if not journal.is_file():
        if manifest is not None and manifest.mode != "shared":
            d.notes.append("no study.journal (interrupted before the first study was created?)")
        return None, None, None
    if _journal_tail_torn(journal):
        d.damaged.append("study.journal: its last line is incomplete (a crash while writing it)")
        d.recoverable.append("study.journal: cut the incomplete last line (one operation lost)")
        if repair:
            shutil.copy2(journal, journal.with_suffix(".journal.bak"))
            data = journal.read_bytes()
            journal.write_bytes(data[: data.rfind(b"\n") + 1])
    try:
        return _study_rows(run_dir, manifest.to_dict() if manifest else None)
    except Exception as exc:
        d.damaged.append(f"study.journal: cannot be read ({type(exc).__name__}: {exc})")
        d.lost.append("the study journal is unreadable: the trial records it held are lost")
        return None, None, None


def diagnose(run_dir: Path, repair: bool = False) -> Diagnosis:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(
            f"The RUN argument of doctor must be a folder. Got {str(run_dir)!r} instead."
        )
    d = Diagnosis(run_dir)
    manifest: Manifest | None = None
    try:
        manifest = Manifest.read(run_dir)
    except InputError as exc:
        d.damaged.append(f"manifest.json: {exc}")
    rows, seeds, stored = _journal(d, run_dir, manifest, repair)
    if manifest is None and stored is not None:
        d.recoverable.append("manifest.json: rebuilt from the copy kept in the study")
        if repair:
            stored["status"] = "interrupted"
            Manifest.from_dict(stored).write(run_dir)
            manifest = Manifest.read(run_dir)
    elif manifest is None:
        d.lost.append("manifest.json: no copy of it in a study")
    status = manifest.status if manifest else "complete"
    trials, table_seeds, problems = check_tables(run_dir, status)
    for p in problems:
        d.damaged.append(p)
    _check_students(d, run_dir, manifest if rows is not None else None, repair)
    if rows is not None:
        expected = to_frame(rows)
        if not problems and len(expected) != len(trials):
            d.damaged.append(
                f"trials has {len(trials)} rows but the study holds {len(expected)} records"
            )
        if problems or len(expected) != len(trials) or len(seeds or []) != len(table_seeds):
            d.recoverable.append(f"trials/seeds: rebuilt from the study's {len(expected)} records")
            if repair:
                write_views(run_dir, rows, seeds or [])
    elif problems:
        d.lost.append("trials/seeds: no study journal to rebuild them from")
    if repair:
        again = diagnose(run_dir, repair=False)
        d.notes.append(
            "after repair: " + ("no damage found" if again.ok else "; ".join(again.damaged))
        )
    d.status = run_status(run_dir) if not d.damaged else "damaged"
    return d


def _check_students(d: Diagnosis, run_dir: Path, manifest: Manifest | None, repair: bool) -> None:
    """The kept students' files and their artifacts (``manifest``: None when the journal
    cannot be read, so nothing can be fetched again)."""
    bad_weights = check_weights(run_dir)
    d.damaged += bad_weights
    if manifest is None:
        if bad_weights:
            d.lost.append("students: damaged weights and no study journal to rewrite them from")
        return
    missing_files = _check_artifacts(d, run_dir, manifest)
    if bad_weights or missing_files:
        d.recoverable.append(
            f"students: {len(bad_weights) + missing_files} weights file(s) rewritten from the "
            "artifact store"
        )
        if repair:
            for line in bad_weights:
                path = run_dir / line.split(" ", 1)[0]
                shutil.move(path, path.with_suffix(".pt.bak"))
            write_students(
                run_dir,
                _journal_storage(run_dir),
                manifest.study or manifest.run_id,
                _tasks(manifest),
            )


def _tasks(manifest: Manifest) -> list[str]:
    return [t["name"] for t in manifest.suite["tasks"]]


def _check_artifacts(d: Diagnosis, run_dir: Path, manifest: Manifest) -> int:
    """Every kept student's artifact must be in its store with the recorded sha256 (a
    missing one is damage: ``export`` cannot ship that trial once its file is gone); returns
    how many weights files are missing but can be fetched again."""
    refetch = 0
    storage = _journal_storage(run_dir)
    for ref, path in kept_students(
        storage, manifest.study or manifest.run_id, _tasks(manifest), run_dir
    ):
        try:
            weights_bytes(ref)
        except ArtifactProblem as exc:
            d.damaged.append(f"{path.relative_to(run_dir)}: {exc}")
            continue
        refetch += not path.is_file()
    return refetch


def run_status(run_dir: Path) -> str:
    """complete | running | interrupted | damaged, for ``kdbench list runs``."""
    run_dir = Path(run_dir)
    if RunLock(run_dir).held_elsewhere():
        return "running"
    try:
        manifest = Manifest.read(run_dir)
    except InputError:
        return "damaged"
    _, _, problems = check_tables(run_dir, manifest.status)
    if problems:
        return "damaged"
    if manifest.status == "complete":
        return "complete"
    return "interrupted"
