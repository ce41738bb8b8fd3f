"""Compare two runs: matched configurations, each run's recommendation, CI gates.

A threshold ``METRIC:LIMIT`` fails when run B is worse than run A by more than LIMIT, where
LIMIT is ``N%`` (relative), ``Npp`` (percentage points, for fraction columns) or a plain
number (absolute, in the column's unit). "Worse" is higher for costs and gaps, lower for
accuracies, gains, agreement, speed-ups and throughput. Each threshold is checked on
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

from bench.errors import InputError
from bench.recommend import Constraints, candidates, recommend
from bench.records import COLUMN_NAMES, load_run
from bench.report.tables import markdown_table

__all__ = ["Threshold", "compare_runs", "parse_threshold"]

HIGHER_IS_BETTER = {
    "student_acc",
    "scratch_acc",
    "kd_gain",
    "agreement",
    "gap_closed",
    "ensemble_gain_kept",
    "speedup_cpu_b1",
    "speedup_gpu_b1",
    "speedup_cpu_b1_vs_loop",
    "speedup_cpu_b1_vs_fused",
    "throughput_cpu_bN_per_s",
    "throughput_gpu_bN_per_s",
    "throughput_cpu_mt_bN_per_s",
    "student_val_acc",
    "ensemble_acc",
    "ensemble_val_acc",
    "best_member_acc",
}
_KEY = ["task", "phase", "family", "arch", "temperature", "alpha"]


@dataclass(frozen=True)
class Threshold:
    metric: str
    limit: float
    kind: str  # "rel", "pp" or "abs"

    def worse_by(self, a: float, b: float) -> float:
        """How much worse B is than A, in this threshold's unit (negative = better)."""
        delta = (b - a) if self.metric not in HIGHER_IS_BETTER else (a - b)
        if self.kind == "rel":
            return delta / abs(a) * 100 if a else math.inf if delta > 0 else 0.0
        if self.kind == "pp":
            return delta * 100
        return delta

    def describe(self) -> str:
        unit = {"rel": "%", "pp": "pp", "abs": ""}[self.kind]
        return f"{self.metric}:{self.limit:g}{unit}"


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
    return Threshold(metric, float(value), {"%": "rel", "pp": "pp", None: "abs"}[unit])


def _is_fraction(column: str) -> bool:
    from bench.records import COLUMNS

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
    lines.append(
        f"[{'FAIL' if failed else 'ok'}] {prefix}{t.describe()}: B worse by {worse:.3g} {detail}".rstrip()
    )
    if failed:
        regressions.append(f"{f'[{task}] ' if task else ''}{t.describe()} {where}")


def compare_runs(
    run_a: Path,
    run_b: Path,
    thresholds: list[Threshold],
    max_gap_pp: float = 0.5,
    constraints: Constraints | None = None,
) -> tuple[str, list[str]]:
    """Return the comparison text and the list of regressions (empty = pass). Fractions are
    shown in percentage points, with a Δ (B − A) column per metric."""
    cons = constraints or Constraints(max_gap_pp=max_gap_pp)
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
        for label, rec in (("A", ra), ("B", rb)):
            if rec is None:
                lines.append(f"[{task}] {label}: task not in run")
            elif rec.chosen is None:
                lines.append(f"[{task}] {label}: no student meets {cons.describe()}")
            else:
                r = rec.chosen
                lines.append(
                    f"[{task}] {label}: {r['arch']}, "
                    f"{int(r['student_params']):,} params, acc {r['student_acc'] * 100:.2f} %, gap {r['acc_gap'] * 100:.2f} pp"
                )
        if ra is None or rb is None:
            continue
        if ra.met and not rb.met:
            regressions.append(f"[{task}] B has no student meeting {cons.describe()}; A has")
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
