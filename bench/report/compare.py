"""Compare two runs: matched configurations, each run's recommendation, CI gates.

A threshold ``METRIC:LIMIT`` fails when run B is worse than run A by more than LIMIT, where
LIMIT is ``N%`` (relative), ``Npp`` (percentage points, for fraction columns) or a plain
number (absolute, in the column's unit). Which way is worse comes from one declaration beside
the column table, :data:`bench.records.BETTER` (higher for accuracies, their intervals, gains,
agreement, speed-ups and throughput; lower for costs, gaps, bounds and latencies); settings
such as ``temperature`` cannot be judged. Each threshold is checked on
(1) the median over configurations present in both runs (same task, architecture, T,
alpha, phase) and (2) the recommended student of each task. A task whose run A has a student meeting
``--max-gap`` and whose run B has none is always a regression.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import fmt
from bench.config import DEFAULT_MAX_GAP
from bench.decision import claims
from bench.decision.recommend import Constraints, candidates, recommend
from bench.errors import InputError
from bench.records import BETTER, COLUMN_NAMES, COLUMNS, load_run
from bench.report.tables import markdown_table

__all__ = ["Threshold", "compare_runs", "parse_threshold"]

_KEY = ["task", "phase", "family", "arch", "temperature", "alpha"]


@dataclass(frozen=True)
class Threshold:
    metric: str
    limit: float
    kind: str  # "rel", "pp" or "abs"

    def worse_by(self, a: float, b: float) -> float:
        """How much worse B is than A, in this threshold's unit (negative = better)."""
        delta = (a - b) if BETTER[self.metric] == "higher" else (b - a)
        if self.kind == "rel":
            return delta / abs(a) * 100 if a else math.inf if delta > 0 else 0.0
        if self.kind == "pp":
            return delta * 100
        return delta

    @property
    def unit(self) -> str:
        """The unit of :meth:`worse_by` and of the limit: %, pp or the column's own."""
        if self.kind == "abs":
            unit = next(c.unit for c in COLUMNS if c.name == self.metric)
            return "" if unit == "-" else unit
        return {"rel": "%", "pp": "pp"}[self.kind]

    def describe(self) -> str:
        suffix = {"rel": "%", "pp": "pp", "abs": ""}[self.kind]
        return f"{self.metric}:{self.limit:g}{suffix}"


def parse_threshold(text: str) -> Threshold:
    m = re.fullmatch(r"([A-Za-z0-9_]+):([0-9]*\.?[0-9]+)(%|pp)?", text.strip())
    if not m:
        raise InputError(
            f"The '--fail' option must look like METRIC:10% or METRIC:0.5pp or METRIC:3. Got {text!r} instead."
        )
    metric, value, unit = m.groups()
    if metric not in COLUMN_NAMES:
        raise InputError(
            f"The '--fail' option must name a result column (see `kdbench list columns`). Got {metric!r} instead."
        )
    if BETTER.get(metric, "-") == "-":
        raise InputError(
            f"The '--fail' option must name a metric with a better direction (an accuracy, gap, "
            f"gain, cost or latency column). Got {metric!r}, a setting or identifier."
        )
    if unit == "pp" and not _is_fraction(metric):
        raise InputError(
            f"The '--fail' option takes pp only for fraction columns (accuracies, gaps, gains). "
            f"Got {text.strip()!r}: use % or a plain number in the column's unit."
        )
    return Threshold(metric, float(value), {"%": "rel", "pp": "pp", None: "abs"}[unit])


def _is_fraction(column: str) -> bool:
    return any(c.name == column and c.unit == "fraction" for c in COLUMNS)


def _matched(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        c = candidates(frame).copy()
        c["temperature"] = c["temperature"].round(6)
        c["alpha"] = c["alpha"].round(6)
        return c

    return keyed(a).merge(keyed(b), on=_KEY, suffixes=("_a", "_b"))


def _verdict(
    t: Threshold,
    worse: float,
    prefix: str,
    detail: str,
    where: str,
    lines: list[str],
    regressions: list[str],
    task: str | None = None,
) -> None:
    failed = worse > t.limit
    unit = f" {t.unit}" if t.unit else ""
    how = (
        f"B worse by {fmt.number(worse, 3)}{unit}"
        if worse > 0
        else f"B better by {fmt.number(-worse, 3)}{unit}"
    )
    if worse == 0:
        how = "B the same"
    lines.append(f"[{'FAIL' if failed else 'ok'}] {prefix}{t.describe()}: {how} {detail}".rstrip())
    if failed:
        regressions.append(f"{f'[{task}] ' if task else ''}{t.describe()} {where}")


def compare_runs(
    run_a: Path,
    run_b: Path,
    thresholds: list[Threshold],
    constraints: Constraints | None = None,
) -> tuple[str, list[str]]:
    """Return the comparison text and the list of regressions (empty = pass). Fractions are
    shown in percentage points, with a Δ (B − A) column per metric."""
    cons = constraints or Constraints(max_gap=DEFAULT_MAX_GAP)
    a, b = (
        load_run(run_a, "The RUN_A argument").trials,
        load_run(run_b, "The RUN_B argument").trials,
    )
    matched = _matched(a, b)
    common_tasks = sorted(set(a["task"]) & set(b["task"]))
    if not common_tasks:
        raise InputError(
            f"The runs to compare must share a task. Got {sorted(set(a['task']))} in A and "
            f"{sorted(set(b['task']))} in B: 0 configurations match."
        )
    if matched.empty and not thresholds:
        pass  # tasks in common but no configuration: the recommendations can still be compared
    elif matched.empty:
        raise InputError(
            "The runs to compare must share at least one configuration (task, architecture, T, "
            "alpha, phase) for a --fail threshold to be judged. Got 0 matched configurations; "
            "make B evaluate A's configurations with `kdbench run SUITE --replay RUN_A`."
        )
    lines = [f"A: {Path(run_a).name}", f"B: {Path(run_b).name}", ""]
    shown = ["student_acc", "acc_gap", "kd_gain", "student_flops", "latency_cpu_b1_p50_ms"]
    metrics = list(dict.fromkeys(shown + [t.metric for t in thresholds]))
    if matched.empty:
        lines.append(
            "0 matched configurations: none appears in both runs (same task, architecture, T, "
            "alpha, phase); only the recommendations are compared."
        )
    else:
        view = matched[_KEY].copy()
        for m in metrics:
            scale, unit = (100.0, " pp") if _is_fraction(m) else (1.0, "")
            a_col, b_col = matched[f"{m}_a"] * scale, matched[f"{m}_b"] * scale
            view[f"{m} A{unit}"] = a_col
            view[f"{m} B{unit}"] = b_col
            view[f"Δ {m}{unit}"] = b_col - a_col
        lines.append(f"{len(matched)} matched configurations:")
        lines.append(markdown_table(view))
    regressions: list[str] = []
    for t in thresholds:
        if not matched.empty:
            worse = [
                t.worse_by(x, y)
                for x, y in zip(matched[f"{t.metric}_a"], matched[f"{t.metric}_b"], strict=True)
                if not (pd.isna(x) or pd.isna(y))
            ]
            if worse:
                med = float(pd.Series(worse).median())
                _verdict(
                    t,
                    med,
                    "",
                    f"(median over {len(worse)} matched)",
                    "on matched configurations",
                    lines,
                    regressions,
                )
    lines.append("")
    _compare_recommendations(a, b, cons, thresholds, lines, regressions)
    lines.append("")
    lines.append("REGRESSION: " + "; ".join(regressions) if regressions else "No regression.")
    return "\n".join(lines), regressions


def _compare_recommendations(
    a: pd.DataFrame,
    b: pd.DataFrame,
    cons: Constraints,
    thresholds: list[Threshold],
    lines: list[str],
    regressions: list[str],
) -> None:
    """Each task's recommendation in A and in B, judged by the thresholds (appends to
    ``lines`` and ``regressions``)."""
    tasks = list(dict.fromkeys(list(a["task"]) + list(b["task"])))
    for task in tasks:
        ra = recommend(a, cons, task) if task in set(a["task"]) else None
        rb = recommend(b, cons, task) if task in set(b["task"]) else None
        lines += [claims.compare_line(task, label, rec) for label, rec in (("A", ra), ("B", rb))]
        if ra is None or rb is None:
            continue
        if ra.met and not rb.met:
            regressions.append(f"[{task}] B has no student meeting {claims.describe(cons)}; A has")
            lines.append(f"[FAIL] [{task}] recommendation lost in B")
        if ra.chosen is not None and rb.chosen is not None:
            for t in thresholds:
                x, y = ra.chosen.get(t.metric), rb.chosen.get(t.metric)
                if x is None or y is None or pd.isna(x) or pd.isna(y):
                    continue
                _verdict(
                    t,
                    t.worse_by(float(x), float(y)),
                    f"[{task}] recommended student ",
                    "",
                    "on the recommended student",
                    lines,
                    regressions,
                    task,
                )
