"""Rows → the documented table: every column, in order, with its dtype."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

import bench.models  # noqa: F401 — registers the timm: and hf: families (rows name them)
from bench.records.schema import ARCH_PREFIX, COLUMNS, Column
from kdcore import get_family

__all__ = ["row_arch", "to_frame"]


def _insert_arch(names: list[str], arch_cols: list[str]) -> list[str]:
    at = names.index("arch") + 1 if "arch" in names else len(names)
    return names[:at] + arch_cols + names[at:]


def to_frame(
    rows: Iterable[Mapping[str, Any]], columns: tuple[Column, ...] = COLUMNS
) -> pd.DataFrame:
    """Rows → DataFrame with every documented column, in order and with its dtype.

    ``arch_<name>`` columns (the family's architecture parameters) follow ``arch``; any other
    unknown key is refused.
    """
    rows = list(rows)
    names = [c.name for c in columns]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    arch_cols = [k for k in keys if k.startswith(ARCH_PREFIX) and k not in names]
    extra = sorted(set(keys) - set(names) - set(arch_cols))
    if extra:
        raise KeyError(f"undocumented record columns: {extra}")
    ordered = _insert_arch(names, arch_cols)
    dtypes = {c.name: c.dtype for c in columns}
    # every column typed on its own, the frame built once (assigning typed columns one by one
    # into a frame cost ~30 ms a table, and pull rebuilds the tables after every trial)
    data: dict[str, Any] = {}
    for name in ordered:
        values = [r.get(name, math.nan) for r in rows]
        if name in arch_cols:
            col = pd.Series(values, dtype=object)
            whole = pd.to_numeric(col, errors="coerce").dropna()
            dtypes[name] = "Int64" if len(whole) and (whole == whole.round()).all() else "float64"
        data[name] = _fast_dtype(values, dtypes[name])
    return pd.DataFrame(data, columns=ordered)


def _fast_dtype(values: list[Any], dtype: str) -> Any:
    """:func:`_as_dtype` of a column, the common cases without a pandas Series per column
    (plain numbers: numpy converts them at once; strings and flags: one list pass) — the
    tables are rebuilt after every trial and in every decision simulation."""
    if dtype == "string":
        return pd.array([pd.NA if _missing(v) else str(v) for v in values], dtype="string")
    if dtype == "boolean":
        return pd.array([pd.NA if _missing(v) else bool(v) for v in values], dtype="boolean")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        arr = np.asarray(values, dtype=object)
    if dtype == "float64" and arr.dtype.kind in "iuf":  # None becomes NaN below only via object
        return arr.astype(np.float64)
    if dtype in ("int64", "Int64") and arr.dtype.kind in "iu":
        return (
            pd.array(arr.astype(np.int64), dtype="Int64")
            if dtype == "Int64"
            else arr.astype(np.int64)
        )
    return _as_dtype(pd.Series(values, dtype=object), dtype)


def _as_dtype(col: pd.Series, dtype: str) -> pd.Series:
    if dtype == "string":
        return col.map(lambda v: pd.NA if _missing(v) else str(v)).astype("string")
    if dtype == "boolean":
        return col.map(lambda v: pd.NA if _missing(v) else bool(v)).astype("boolean")
    numeric = pd.to_numeric(col, errors="coerce")
    if dtype in ("int64", "Int64"):
        return (
            numeric.astype("Int64")
            if (dtype == "Int64" or numeric.isna().any())
            else numeric.astype("int64")
        )
    return numeric.astype("float64")


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def row_arch(row: Mapping[str, Any], family: str | None = None) -> dict[str, int | float]:
    """The architecture a row describes: its family's parameters (``family``, default the
    row's), each from its ``arch_<name>`` cell as the kind the family declares (a table cell
    may hold a numpy scalar, or a float where the column is nullable)."""
    fam = get_family(str(family or row["family"]))
    out: dict[str, int | float] = {}
    for p in fam.params:
        v = row.get(f"{ARCH_PREFIX}{p.name}")
        if _missing(v):
            if p.optional:  # left out: the model's own value
                continue
            raise KeyError(f"{ARCH_PREFIX}{p.name}")
        out[p.name] = p.kind(v)
    return out
