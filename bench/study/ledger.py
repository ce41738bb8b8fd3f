"""The ledger: every key kdbench writes into a study, and the trial record codec.

**The study holds the truth.** A trial's whole record — its row, its per-seed rows and the
scratch baselines it trained — is stored in the trial itself as one JSON user attribute
(:attr:`Key.RECORD`), written in one storage operation (one fsync'd line of a journal file,
one transaction of an RDB) *before* the trial is told. The run folder's tables are views
rebuilt from the study, so a crash at any instant leaves a trial's record entirely or not at
all, and ``kdbench pull`` rebuilds a run folder from the storage alone.
"""

from __future__ import annotations

import json
import logging
import math
from enum import StrEnum
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.durable.faults import fault_point
from bench.durable.jsonsafe import json_safe

__all__ = ["Key", "Ledger", "decode_record", "encode_record", "final_record", "json_safe"]

log = logging.getLogger(__name__)


class Key(StrEnum):
    """Every study and trial user-attribute key kdbench writes (one place to look them up)."""

    RECORD = "kdbench_record"  # trial: the trial's whole record (JSON)
    DERIVED = "kdbench_derived"  # trial: {param: value} solved from ``size`` (not sampled)
    GROUP = "kdbench_group"  # trial: {"leader", "size", "members", "scratch_seeds"}
    WORKER = "kdbench_worker"  # trial: "host:pid" of the process that claimed it ("": none yet)
    WEIGHTS = (
        "kdbench_weights"  # certify trial: {"seed", "artifact_id", "store", "sha256", "bytes"}
    )
    RUNGS = "kdbench_rungs"  # trial: {epoch: [val_acc, flops]} at each halving rung reached
    SOURCE_TRIAL = "source_trial"  # certify trial: the search trial it certifies
    CERTIFY_RANK = "kdbench_certify_rank"  # certify trial: its place in the tested order
    MANIFEST = "kdbench_manifest"  # search study: the run's manifest (redacted)
    IDENTITY = "kdbench_identity"  # search study: suite digest + data/teacher fingerprints
    DONE = "kdbench_done"  # search study: True once the task's search and certification are done
    CERTIFY_ENQUEUED = "kdbench_certify_enqueued"  # certify study: number of candidates
    # certify study, once every candidate is done: {trial: {"certified": bool, ...}} by
    # fixed-sequence testing (bench.decision.protocol.round_marks)
    CERTIFIED = "kdbench_certified"
    LATENCY = "kdbench_latency:"  # search study, a prefix: + "<family>:<arch label>"
    ENSEMBLE_LATENCY = "kdbench_ensemble_latency"  # search study: {"columns", "detail", ...}


# Scalar trial attributes for the dashboard: (attribute, row column, scale to the unit shown).
SUMMARY: tuple[tuple[str, str, float], ...] = (
    ("test_acc_pct", "student_acc", 100.0),
    ("gap_pp", "acc_gap", 100.0),
    ("gap_bound_pp", "acc_gap_ci_high", 100.0),
    ("params", "student_params", 1.0),
    ("flops", "student_flops", 1.0),
)


def summary_attrs(row: dict[str, Any]) -> dict[str, Any]:
    """The trial's phase and its headline numbers, rounded for reading (the record keeps the
    exact values); a number the row lacks (a failed trial) is left out."""
    out: dict[str, Any] = {"phase": str(row.get("phase", ""))}
    for key, column, scale in SUMMARY:
        v = row.get(column)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = int(v) if scale == 1.0 else round(float(v) * scale, 3)
    return out


def encode_record(
    number: int,
    row: dict[str, Any],
    seed_rows: list[dict[str, Any]],
    scratch: dict[str, dict[str, float]],
) -> str:
    """Trial ``number``'s record as strict JSON (NaN → null)."""
    return json.dumps(
        json_safe({"trial_number": number, "row": row, "seeds": seed_rows, "scratch": scratch}),
        allow_nan=False,  # insertion order kept: it orders the arch_<name> columns
        separators=(",", ":"),
    )


def decode_record(trial: FrozenTrial) -> dict[str, Any] | None:
    """The trial's own record, or None. A retried trial inherits its failed original's user
    attributes: a record whose trial number is not this trial's is not its own."""
    text = trial.user_attrs.get(Key.RECORD)
    if not isinstance(text, str):
        return None
    record = json.loads(text)
    if not isinstance(record, dict) or record.get("trial_number") != trial.number:
        return None
    return record


def final_record(t: FrozenTrial) -> dict[str, Any] | None:
    """The trial's record if the trial counts toward the budget (done for good)."""
    record = decode_record(t)
    if record is None:
        return None
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return record
    if t.state == TrialState.FAIL and record["row"]["state"] == "fail":
        return record  # a genuine failure (e.g. divergence), recorded with its reason
    return None


class Ledger:
    """The commit → tell protocol over one storage.

    :meth:`commit` writes the trial's whole record as one user attribute, then tells the
    trial: a crash between the two leaves a RUNNING trial whose record exists, which recovery
    tells from the record (:meth:`tell_row`) without training it again.
    """

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.storage = storage

    def set_attr(self, study: optuna.Study, number: int, key: str, value: Any) -> None:
        """Set trial ``number``'s user attribute ``key`` (the trial may be any worker's)."""
        study_id = self.storage.get_study_id_from_name(study.study_name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        self.storage.set_trial_user_attr(trial_id, key, value)

    def commit(
        self,
        study: optuna.Study,
        number: int,
        row: dict[str, Any],
        seed_rows: list[dict[str, Any]],
        scratch: dict[str, dict[str, float]],
        pareto: bool,
    ) -> None:
        """Record trial ``number`` (the commit point), then tell it. A few scalar attributes
        beside the record (:data:`SUMMARY`) make optuna-dashboard's trial list readable."""
        for key, value in summary_attrs(row).items():
            self.set_attr(study, number, key, value)
        self.set_attr(study, number, Key.RECORD, encode_record(number, row, seed_rows, scratch))
        fault_point("write")
        self.tell_row(study, number, row, pareto)

    def tell_row(self, study: optuna.Study, number: int, row: dict[str, Any], pareto: bool) -> None:
        """Tell trial ``number`` what its row says: its value(s), pruned or failed."""
        try:
            if row["state"] in ("complete", "duplicate"):
                if pareto:
                    study.tell(number, [row["student_val_acc"], row["student_flops"]])
                else:
                    study.tell(number, row["student_val_acc"])
            elif row["state"] == "pruned":
                study.tell(number, state=TrialState.PRUNED)
            else:
                study.tell(number, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker declared this one dead (its heartbeat went stale) and queued a
            # retry; the retry recomputes it. Nothing is lost, only time.
            log.warning(
                "trial %s was already finished by another worker; its retry will redo it", number
            )

    def final_rows(self, study: optuna.Study) -> list[dict[str, Any]]:
        """The rows of every trial of ``study`` that counts toward the budget."""
        return [r["row"] for r in map(final_record, study.get_trials(deepcopy=False)) if r]
