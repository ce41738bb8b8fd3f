"""Values as strict JSON: NaN, inf and NA become null, numpy scalars Python numbers, anything
else its text. One place for what study records, manifests and ``--json`` outputs share."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with every leaf made strict-JSON-safe (keys become strings)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if str(value) == "<NA>":  # pandas.NA, without importing pandas
        return None
    return str(value)
