"""bench — the kdbench harness: suites, tasks, Optuna sweeps, measurement, results, reports.

Names are imported lazily (PEP 562) so that ``kdbench --help`` does not load torch or Optuna.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

# torch's CUDA build warns on import of its extension helpers (which timm and the ONNX
# exporter reach) that a machine without a GPU has "No CUDA runtime": true, and not news.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

__all__ = [
    "Constraints",
    "InputError",
    "Recommendation",
    "RunHooks",
    "RunOptions",
    "Suite",
    "load_suite",
    "parse_suite",
    "recommend",
    "run_suite",
]

_WHERE = {
    "Constraints": "bench.decision.recommend",
    "Recommendation": "bench.decision.recommend",
    "recommend": "bench.decision.recommend",
    "InputError": "bench.errors",
    "Suite": "bench.config.suite",
    "load_suite": "bench.config.suite",
    "parse_suite": "bench.config.suite",
    "run_suite": "bench.run.sweep",
    "RunOptions": "bench.run.options",
    "RunHooks": "bench.run.options",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
