"""The Optuna side of a run: storage, sampler, the ask lock, heartbeats and the ledger.

``storage`` (journal file or RDB URL) · ``sampler`` (randomness per trial number) · ``lock``
(count-then-ask across workers) · ``heartbeat`` (RDB only) · ``ledger`` (every attribute key,
the record codec).
"""

from bench.study.heartbeat import Heartbeat, quiet_heartbeat_warning
from bench.study.ledger import Key, Ledger, decode_record, encode_record, final_record
from bench.study.lock import AskLock
from bench.study.sampler import TrialSeededSampler, make_sampler
from bench.study.storage import StorageSpec, journal_path, open_storage, redact, study_name

__all__ = [
    "AskLock",
    "Heartbeat",
    "Key",
    "Ledger",
    "StorageSpec",
    "TrialSeededSampler",
    "decode_record",
    "encode_record",
    "final_record",
    "journal_path",
    "make_sampler",
    "open_storage",
    "quiet_heartbeat_warning",
    "redact",
    "study_name",
]
