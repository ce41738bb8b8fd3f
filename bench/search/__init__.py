"""One task's search, as any worker process runs it.

``context`` (the frozen :class:`TaskContext` and one process's :class:`TaskWorker`) ·
``search`` (the budget loop, group asking, duplicates) · ``halving`` (successive halving and
pruning per epoch) · ``recovery`` (orphaned trials) · ``certify`` (the confirm phase on the
validation short-list) · ``training`` (one group trained, failures as rows) · ``latency``
(each architecture timed once).
"""

from bench.search.certify import run_confirm, select_confirm
from bench.search.context import IdentityMismatch, Progress, TaskContext, TaskWorker, worker_id
from bench.search.latency import time_architectures
from bench.search.search import run_search

__all__ = [
    "IdentityMismatch",
    "Progress",
    "TaskContext",
    "TaskWorker",
    "run_confirm",
    "run_search",
    "select_confirm",
    "time_architectures",
    "worker_id",
]
