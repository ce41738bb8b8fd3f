"""The table builder's fast path types every kind of cell exactly as the general path does."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.records.rows import _as_dtype, _fast_dtype

CASES = {
    "float64": [[1.0, 2], [1, 2, 3], [np.float32(1.5), 2.0], [1.0, None], [math.nan, 1],
                ["x", 1.0], [True, 2.0], [pd.NA, 1.0], []],
    "int64": [[1, 2], [np.int64(3), 4], [1.0, 2.0], [1, None], [True, False], []],
    "Int64": [[1, 2], [1, None], [1.0, math.nan], []],
    "string": [["a", None, 1], [math.nan, "b"], []],
    "boolean": [[True, None], [1, 0, math.nan], []],
}  # fmt: skip


@pytest.mark.parametrize(
    ("dtype", "values"), [(d, v) for d, vs in CASES.items() for v in vs], ids=repr
)
def test_the_fast_path_equals_the_general_one(dtype: str, values: list[object]) -> None:
    general = _as_dtype(pd.Series(values, dtype=object), dtype).reset_index(drop=True)
    pd.testing.assert_series_equal(general, pd.Series(_fast_dtype(values, dtype)))
