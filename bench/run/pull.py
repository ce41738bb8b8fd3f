"""Rows from a study, and a run folder rebuilt from its storage (``kdbench pull``).

A trial's row comes from its own record (``bench.study.Key.RECORD``). A trial that was failed
without a record — its worker died and the trial was retried — still gets a row: state
``fail``, the reason, and the number of the trial that retried it. RUNNING and WAITING
trials have no row yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.durable.rundir import atomic_write_bytes, check_writable, inside
from bench.errors import InputError
from bench.latency.measure import speedups
from bench.records import SCHEMA_VERSION, SEED_COLUMNS, Manifest, to_frame, write_trials
from bench.study import Key, StorageSpec, decode_record, final_record, open_storage, study_name
from bench.study.artifacts import ArtifactProblem, fetch_weights

__all__ = ["pull", "rows_of_studies", "study_rows", "write_views"]


def _retried_as(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    out: dict[int, int] = {}
    for t in trials:
        history = t.system_attrs.get("retry_history") or []
        if history:
            out[int(history[-1])] = t.number
    return out


def _lost_row(t: FrozenTrial, meta: dict[str, Any], retried_as: int | None) -> dict[str, Any]:
    """A trial failed without a record: its worker died (or the record was lost)."""
    inherited = t.user_attrs.get(Key.RECORD)
    base: dict[str, Any] = {}
    if isinstance(inherited, str):  # written, but the trial was failed before it was told
        base = json.loads(inherited).get("row", {})
    reason = "worker lost (no heartbeat); " + (
        f"retried as trial {retried_as}" if retried_as is not None else "not retried"
    )
    keep = {k: base[k] for k in base if k.startswith("arch") or k == "family"}
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": meta.get("run_id"),
        "task": meta.get("task"),
        "trial": t.number,
        "phase": meta.get("phase", "search"),
        "state": "fail",
        "fail_reason": reason,
        **keep,
        "temperature": t.params.get("temperature"),
        "alpha": t.params.get("alpha"),
        "worker": t.user_attrs.get(Key.WORKER),
        "retry_of": (t.system_attrs.get("retry_history") or [None])[0],
        "datetime_utc": t.datetime_complete.isoformat(timespec="seconds")
        if t.datetime_complete
        else None,
    }


def study_rows(
    study: optuna.Study, meta: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, seed rows) of one study, in trial-number order."""
    trials = study.get_trials(deepcopy=False)
    retried = _retried_as(trials)
    rows: list[dict[str, Any]] = []
    seeds: list[dict[str, Any]] = []
    for t in sorted(trials, key=lambda t: t.number):
        record = final_record(t)
        if record is not None:
            rows.append(record["row"])
            seeds.extend(record["seeds"])  # none for a failed trial
        elif t.state == TrialState.FAIL:
            rows.append(_lost_row(t, meta, retried.get(t.number)))
    return rows, seeds


_STAMP = ("measured_by", "host", "pass", "ensemble", "ort_error")


def rows_of_studies(
    storage: optuna.storages.BaseStorage, base: str, tasks: Iterable[str], run_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All rows of a run: for each task its search study, then its certification studies
    (``certified`` and the other marks as the round stored them once complete,
    :func:`bench.decision.protocol.round_marks`). Latency —
    the ensemble's (timed once per task) and each architecture's (timed once) — is stored in
    the search study and joined here, once, into the rows of completed students, with the
    speed-ups computed from the ensemble timed in the student's own interleaved pass (same
    host, same minutes; the row's ensemble latency columns are that pass's). A record from
    before interleaving has no pass ensemble: its speed-ups need the task's ensemble timed on
    the same host, else they are NaN."""
    summaries = {s.study_name: s for s in storage.get_all_studies()}
    rows: list[dict[str, Any]] = []
    seeds: list[dict[str, Any]] = []
    for task in tasks:
        search = summaries.get(study_name(base, task))
        attrs = search.user_attrs if search else {}
        latency = {
            k.removeprefix(Key.LATENCY): json.loads(v)
            for k, v in attrs.items()
            if k.startswith(Key.LATENCY)
        }
        timed = json.loads(attrs.get(Key.ENSEMBLE_LATENCY, '{"columns": {}}'))
        ensemble, ensemble_host = timed["columns"], timed.get("host")
        prefix = study_name(base, task)
        rounds = sorted(
            (n for n in summaries if n.startswith(prefix + ":certify")),
            key=lambda n: int(n.rpartition("-")[2]) if n[-1].isdigit() else 0,
        )
        for name in [prefix, *rounds]:
            if name not in summaries:
                continue
            phase = "search" if name == prefix else "certify"
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
            )
            r, s = study_rows(study, {"run_id": run_id, "task": task, "phase": phase})
            marks = json.loads(summaries[name].user_attrs.get(Key.CERTIFIED) or "{}")
            for row in r:  # a round's marks exist once it is complete (search.certify)
                row.update(marks.get(str(row.get("trial")), {}))
            for row in r:
                if row.get("state") not in ("complete", "duplicate"):
                    continue
                row.update(ensemble)
                cols = latency.get(f"{row.get('family')}:{row.get('arch')}")
                if cols is not None:
                    row.update({k: v for k, v in cols.items() if k not in _STAMP})
                    row["latency_host"] = cols.get("host")
                    if "ensemble" in cols:  # timed interleaved with the ensemble in one pass
                        row.update(cols["ensemble"])
                        row.update(speedups(row))
                    elif cols.get("host") == ensemble_host:  # never a ratio across two machines
                        row.update(speedups(row))
            rows += r
            seeds += s
    return rows, seeds


def write_views(run_dir: Path, rows: list[dict[str, Any]], seeds: list[dict[str, Any]]) -> None:
    """``trials.{parquet,csv}`` and ``seeds.{parquet,csv}``: views of the study's records."""
    write_trials(to_frame(rows), run_dir, "trials")
    write_trials(to_frame(seeds, SEED_COLUMNS), run_dir, "seeds")


def write_students(
    run_dir: Path,
    storage: optuna.storages.BaseStorage,
    base: str,
    tasks: Iterable[str],
    artifacts: str | None = None,
) -> list[str]:
    """``students/<task>/trial-<N>-seed-<s>.pt``: the weights of every certification
    candidate (the seed selected on validation), fetched from the artifact store its trial
    names (or ``artifacts``) and checked; files already written are kept. Returns the
    problems: every kept student whose artifact is missing or differs."""
    problems: list[str] = []
    for ref, path in kept_students(storage, base, tasks, run_dir):
        if path.is_file():
            continue
        try:
            atomic_write_bytes(path, weights_bytes(ref, artifacts))
        except ArtifactProblem as exc:
            problems.append(f"{path.relative_to(run_dir)}: {exc}")
    return problems


def kept_students(
    storage: optuna.storages.BaseStorage, base: str, tasks: Iterable[str], run_dir: Path
) -> Iterator[tuple[dict[str, Any], Path]]:
    """(weights reference, its file in ``run_dir``) of every completed certification
    trial that kept a student."""
    summaries = {s.study_name for s in storage.get_all_studies()}
    for task in tasks:
        prefix = study_name(base, task) + ":certify"
        for name in sorted(n for n in summaries if n.startswith(prefix)):
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
            )
            for t in study.get_trials(deepcopy=False):
                record = decode_record(t)
                text = t.user_attrs.get(Key.WEIGHTS)
                if record is None or not isinstance(text, str) or t.state != TrialState.COMPLETE:
                    continue
                ref = json.loads(text)
                trial = record["row"]["trial"]
                yield ref, inside(run_dir, "students", task, f"trial-{trial}-seed-{ref['seed']}.pt")


def weights_bytes(ref: dict[str, Any], artifacts: str | None = None) -> bytes:
    """The bytes of a kept student: from its artifact store (checked), or inline in a study
    written before kdbench kept weights as artifacts."""
    if "state_dict" in ref:
        import base64

        return base64.b64decode(ref["state_dict"])
    return fetch_weights(ref, artifacts)


def _manifest_of(storage: optuna.storages.BaseStorage, base: str) -> dict[str, Any]:
    summaries = [s for s in storage.get_all_studies() if s.study_name.startswith(base + ":")]
    manifest: dict[str, Any] | None = None
    for s in summaries:
        text = s.user_attrs.get(Key.MANIFEST)
        if isinstance(text, str):
            part = json.loads(text)
            if manifest is None:
                manifest = part
            manifest["tasks"].update(part.get("tasks", {}))  # each task's study adds its own
    if manifest is not None:
        return manifest
    raise InputError(
        f"The study {base!r} must exist in the storage and hold a kdbench manifest. Found "
        f"{len(summaries)} matching studies without one."
    )


def pull(
    spec: StorageSpec, base: str, out_dir: Path, artifacts: str | None = None
) -> tuple[Path, list[str]]:
    """Rebuild a complete run folder (manifest, trials, seeds, the kept students from the
    artifact store each trial names, or ``artifacts``) from the storage; return it and the
    kept students that could not be fetched."""
    storage = open_storage(spec)
    data = _manifest_of(storage, base)
    check_writable(Path(out_dir), "The output folder (--out)")
    run_dir = inside(Path(out_dir), base.replace(":", "_"))
    run_dir.mkdir(parents=True, exist_ok=True)
    tasks = [t["name"] for t in data["suite"]["tasks"]]
    rows, seeds = rows_of_studies(storage, base, tasks, data["run_id"])
    done = _all_done(storage, base, tasks)
    data["status"] = "complete" if done else "incomplete"
    data["study_storage"] = spec.describe()
    data["pulled_from"] = spec.describe()
    manifest = Manifest.from_dict(data)
    manifest.write(run_dir)
    write_views(run_dir, rows, seeds)
    missing = write_students(run_dir, storage, base, tasks, artifacts)
    return run_dir, missing


def _all_done(storage: optuna.storages.BaseStorage, base: str, tasks: list[str]) -> bool:
    summaries = {s.study_name: s for s in storage.get_all_studies()}
    return all(
        summaries.get(study_name(base, t)) is not None
        and summaries[study_name(base, t)].user_attrs.get(Key.DONE) is True
        for t in tasks
    )
