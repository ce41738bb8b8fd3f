"""One task's search, as any worker process runs it.

``context`` (the frozen :class:`TaskContext` and one process's :class:`TaskWorker`) ·
``search`` (the budget loop, group asking, duplicates) · ``halving`` (successive halving and
pruning per epoch) · ``recovery`` (orphaned and unclaimed trials) · ``certify`` (the
certification rounds, :mod:`bench.certification`) · ``training`` (one group trained, failures as rows) · ``latency``
(each architecture timed once).
"""

from bench.search.certify import run_certify
from bench.search.context import (
    IdentityMismatch,
    Progress,
    TaskContext,
    TaskWorker,
    certify_phase,
    worker_id,
)
from bench.search.latency import ensemble_latency, time_architectures
from bench.search.search import run_search

__all__ = [
    "IdentityMismatch",
    "Progress",
    "TaskContext",
    "TaskWorker",
    "certify_phase",
    "ensemble_latency",
    "run_certify",
    "run_search",
    "time_architectures",
    "worker_id",
]
