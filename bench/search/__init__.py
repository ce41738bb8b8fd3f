"""One task's search, as any worker process runs it.

``context`` (the frozen :class:`TaskContext` and one process's :class:`TaskWorker`) ·
``search`` (the budget loop, group asking, duplicates) · ``halving`` (successive halving and
pruning per epoch) · ``recovery`` (orphaned and unclaimed trials) · ``certify`` (the
certification rounds, :mod:`bench.decision.protocol`) · ``training`` (one group trained,
failures as rows) · ``space`` (the search space as Optuna distributions, the capacity axis).
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
from bench.search.search import run_search

__all__ = [
    "IdentityMismatch",
    "Progress",
    "TaskContext",
    "TaskWorker",
    "certify_phase",
    "run_certify",
    "run_search",
    "worker_id",
]
