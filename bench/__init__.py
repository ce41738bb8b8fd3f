"""bench — the kdbench harness: suites, tasks, Optuna sweeps, measurement, results, reports."""

from __future__ import annotations

from bench.recommend import Constraints, Recommendation, recommend
from bench.suite import Suite, SuiteError, load_suite, parse_suite
from bench.sweep import run_suite

__all__ = [
    "Constraints",
    "Recommendation",
    "Suite",
    "SuiteError",
    "load_suite",
    "parse_suite",
    "recommend",
    "run_suite",
]
