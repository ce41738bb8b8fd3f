"""The student-size decision, from a run's trial table alone.

Rule. Among completed students of a task (a configuration re-run in the *confirm* phase is
judged on its confirm row, which rests on more seeds; when any row has replicate seeds,
single-seed rows are set aside), keep those whose quality meets the constraints — judged on
the **bounds of the 95 % intervals** (paired bootstrap over test examples and seeds, at least
the binomial score interval; ``bench.stats``), never on the means:

* ``--max-gap PP``: the upper bound of the gap to the reference is at most PP;
* ``--min-relative-acc R``: the lower bound of student / reference accuracy is at least R
  (MLPerf's way of stating targets, e.g. 0.99);

and that meet every cost constraint; recommend the cheapest by the chosen cost (FLOPs unless a
latency constraint makes latency the cost), ties broken by the smaller gap bound, then fewer
parameters. When none qualifies: if some student meets the quality but none within the cost
limits, name the cheapest of them and the best student within the limits with its gap; if
none meets the quality, name the closest and fit error = a · params^(−b) + c to estimate
the size that would.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench import fmt
from bench.jsonsafe import json_safe

__all__ = ["Constraints", "Recommendation", "candidates", "capacity_fit", "knee", "recommend"]

MIN_SEEDS = 3
MIN_TEST = 1000


@dataclass(frozen=True)
class Constraints:
    """What the user asks for. Gaps in percentage points (pp); latency in ms; the relative
    accuracy as a fraction of the reference's (0.99 = 99 %)."""

    max_gap_pp: float | None = None
    min_relative_acc: float | None = None
    against: str = "ensemble"  # or "best-member"
    max_latency_ms: float | None = None
    max_flops: float | None = None
    max_params: float | None = None
    device: str = "cpu"
    batch: str = "1"  # "1" or "N" (the suite's large batch)

    def __post_init__(self) -> None:
        if self.max_gap_pp is None and self.min_relative_acc is None:
            raise ValueError("give max_gap_pp or min_relative_acc (or both)")

    def latency_column(self) -> str:
        return f"latency_{self.device}_b{'1' if self.batch == '1' else 'N'}_p50_ms"

    def cost_column(self) -> str:
        return self.latency_column() if self.max_latency_ms is not None else "student_flops"

    def has_cost_limit(self) -> bool:
        return any(v is not None for v in (self.max_latency_ms, self.max_flops, self.max_params))

    def describe(self) -> str:
        parts = []
        if self.max_gap_pp is not None:
            parts.append(f"max gap {self.max_gap_pp:.2f} pp")
        if self.min_relative_acc is not None:
            parts.append(f"at least {self.min_relative_acc * 100:g} % of the reference's accuracy")
        text = " and ".join(parts) + f" vs {self.against}"
        if self.max_latency_ms is not None:
            text += f", max {self.device.upper()} latency {self.max_latency_ms:g} ms at batch {self.batch}"
        for value, label in ((self.max_flops, "FLOPs"), (self.max_params, "params")):
            if value is not None:
                text += f", max {value:g} {label}"
        return text


def _public(v: Any) -> Any:
    """``v`` without its private (``_``-prefixed) keys, at every depth."""
    if isinstance(v, dict):
        return {k: _public(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, list | tuple):
        return [_public(x) for x in v]
    return v


@dataclass
class Recommendation:
    task: str
    met: bool
    constraints: dict[str, Any]
    gap_basis: str
    cost_column: str
    chosen: dict[str, Any] | None
    closest: dict[str, Any] | None
    knee: dict[str, Any] | None
    extrapolation: dict[str, Any] | None
    n_candidates: int
    best_within_cost: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-safe: NaN becomes null; rows keep their public columns plus gap_bound."""
        return json_safe(_public(asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def text(self) -> str:
        c = Constraints(**self.constraints)
        lines = [f"[{self.task}] {c.describe()}"]
        if self.chosen is not None:
            lines.append("Recommended student: " + _describe(self.chosen, self.cost_column))
        else:
            lines.append("No student meets the constraints.")
            if self.closest is not None:
                lines.append("Closest: " + _describe(self.closest, self.cost_column))
            if self.best_within_cost is not None:
                lines.append(
                    "Best within the cost limits: "
                    + _describe(self.best_within_cost, self.cost_column)
                )
            if self.extrapolation is not None:
                e = self.extrapolation
                if e.get("params_needed") is not None and e.get("extrapolated"):
                    lines.append(
                        f"Extrapolation (fit error = a·params^-b + c, {e['n_points']} points; outside the "
                        f"measured range, treat as a guess): about {e['params_needed']:,.0f} parameters "
                        f"would be needed ({e['times_largest']:.1f}x the largest trained)."
                    )
                else:
                    lines.append(f"Extrapolation: {e['message']}")
        if self.knee is not None:
            lines.append(
                f"Knee of the capacity curve: {int(self.knee['student_params']):,} params "
                f"({self.knee['arch']})."
            )
        lines.append(f"Gap judged on: {self.gap_basis}.")
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines += self.notes
        return "\n".join(lines)


def _describe(r: dict[str, Any], cost_column: str) -> str:
    parts = [
        f"{r['arch']}, T {r['temperature']:.2f}, alpha {r['alpha']:.2f} "
        f"(trial {int(r['trial'])}, {r['phase']}, {int(r['n_seeds'])} seed(s))",
        f"params {int(r['student_params']):,} ({fmt.ratio(r.get('param_ratio'))} of the ensemble)",
        f"FLOPs {int(r['student_flops']):,}",
        f"accuracy {fmt.pct(r['student_acc'])} % [{fmt.pct(r['student_acc_ci_low'])}, "
        f"{fmt.pct(r['student_acc_ci_high'])}] vs ensemble {fmt.pct(r['ensemble_acc'])} % "
        f"(gap {fmt.pct(r['acc_gap'])} pp, 95 % interval [{fmt.pct(r['acc_gap_ci_low'])}, "
        f"{fmt.pct(r['acc_gap_ci_high'])}] pp, on {fmt.count(r.get('n_test'))} test examples)",
        f"scratch {fmt.pct(r['scratch_acc'])} % (KD gain {fmt.pct(r['kd_gain'], signed=True)} pp)",
    ]
    lat = r.get("latency_cpu_b1_p50_ms")
    if not fmt.is_missing(lat):
        parts.append(
            f"CPU b1 p50 {fmt.ms(lat)} ({fmt.number(r.get('speedup_cpu_b1'), 2)}x faster than "
            "the faster ensemble form)"
        )
    if cost_column.startswith("latency_gpu"):
        parts.append(f"GPU p50 {fmt.ms(r.get(cost_column))}")
    return "; ".join(parts)


def candidates(trials: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """Completed rows of one task; a configuration's confirm row replaces its search row."""
    done = trials.query("state == 'complete'")
    if task is not None:
        done = done[done["task"] == task]
    confirmed = set(done.loc[done["phase"] == "confirm", "trial"])
    keep = (done["phase"] == "confirm") | ~done["trial"].isin(confirmed)
    return done[keep].copy()


def _bounds(frame: pd.DataFrame, against: str) -> tuple[pd.Series, pd.Series]:
    """(upper bound of the gap, lower bound of the relative accuracy) to the reference."""
    if against == "best-member":
        ref = frame["best_member_acc"]
        gap_hi = ref - frame["student_acc_ci_low"]
    else:
        ref = frame["ensemble_acc"]
        gap_hi = frame["acc_gap_ci_high"]
    return gap_hi.astype(float), (1 - gap_hi / ref).astype(float)


def warnings_for(row: dict[str, Any] | None, frame: pd.DataFrame) -> list[str]:
    """What a careful practitioner would say about a recommendation."""
    out: list[str] = []
    if row is not None:
        if int(row["n_seeds"]) < MIN_SEEDS:
            out.append(
                f"it rests on {int(row['n_seeds'])} seed(s), fewer than {MIN_SEEDS}: re-run the "
                "short-list with more ([confirm] seeds)."
            )
        n_test = row.get("n_test", math.nan)
        if not fmt.is_missing(n_test) and int(n_test) < MIN_TEST:
            out.append(
                f"it rests on {int(n_test):,} test examples, fewer than about {MIN_TEST:,}: its "
                "interval is wide; more data (or a larger test_fraction) narrows it."
            )
        if not fmt.is_missing(row.get("param_ratio")) and float(row["param_ratio"]) > 1:
            out.append(
                f"this 'student' has {float(row['param_ratio']):.1f}x the ensemble's parameters: "
                "it is not a compression."
            )
    if len(frame):
        ens, best = float(frame["ensemble_acc"].iloc[0]), float(frame["best_member_acc"].iloc[0])
        if ens <= best:
            out.append(
                f"the ensemble ({ens * 100:.2f} %) is no better than its best member "
                f"({best * 100:.2f} %) on test: distilling the ensemble adds nothing over distilling "
                "that one member (compare --against best-member)."
            )
    return out


def capacity_fit(params: np.ndarray, error: np.ndarray) -> tuple[float, float, float] | None:
    """Least-squares fit of error = a · params^(−b) + c (b > 0, c ≥ 0); None if it fails."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(params, float), np.asarray(error, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 4:
        return None
    scale = x.min()

    def f(p: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a * (p / scale) ** (-b) + c

    try:
        (a, b, c), _ = curve_fit(
            f,
            x,
            y,
            p0=(max(y.max() - y.min(), 1e-3), 0.5, max(y.min(), 0.0)),
            bounds=([0.0, 1e-3, 0.0], [np.inf, 5.0, 1.0]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError):
        return None
    return float(a) * scale ** float(b), float(b), float(c)


def knee(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The knee of accuracy against log(params): the point farthest from the chord joining the
    smallest and the largest student of the upper envelope (Kneedle-style)."""
    if len(frame) < 3:
        return None
    env = frame.sort_values("student_params")
    env = env[env["student_acc"] >= env["student_acc"].cummax()]
    if len(env) < 3:
        return env.iloc[-1].to_dict() if len(env) else None
    x = np.log10(env["student_params"].to_numpy(float))
    y = env["student_acc"].to_numpy(float)
    xn = (x - x[0]) / (x[-1] - x[0]) if x[-1] > x[0] else x * 0
    yn = (y - y[0]) / (y[-1] - y[0]) if y[-1] > y[0] else y * 0
    return env.iloc[int(np.argmax(yn - xn))].to_dict()


# Long by design: the decision rule read top to bottom (candidates, gap basis, constraints,
# ranking, then what to say when nothing qualifies), as docs/methodology.md states it.
def recommend(
    trials: pd.DataFrame, constraints: Constraints, task: str | None = None
) -> Recommendation:
    """Apply the rule in the module docstring to one task of a trial table."""
    if task is None:
        tasks = list(dict.fromkeys(trials["task"]))
        if not tasks:
            raise ValueError("the trial table is empty")
        task = tasks[0]
    frame = candidates(trials, task)
    notes: list[str] = []
    cons = asdict(constraints)
    cost = constraints.cost_column()
    basis = (
        "bounds of the 95 % intervals (paired bootstrap over test examples and seeds, at "
        "least the binomial score interval)"
    )
    if frame.empty:
        return Recommendation(
            task,
            False,
            cons,
            "no completed trials",
            cost,
            None,
            None,
            None,
            None,
            0,
            notes=["No completed trial: nothing to recommend."],
        )
    if (frame["n_seeds"] >= 2).any() and (frame["n_seeds"] < 2).any():
        frame = frame[frame["n_seeds"] >= 2].copy()
        notes.append(
            "Only students with replicate seeds are considered: a single-seed interval holds the "
            "test set's sampling error but not the seeds' spread."
        )
    gap_hi, rel_lo = _bounds(frame, constraints.against)
    frame["gap_bound"] = gap_hi
    frame["relative_bound"] = rel_lo
    ok_cost = pd.Series(True, index=frame.index)
    if constraints.max_latency_ms is not None:
        col = constraints.latency_column()
        if frame[col].isna().all():
            notes.append(
                f"{col} was not measured in this run (no {constraints.device.upper()}); the latency constraint cannot be met."
            )
        ok_cost &= frame[col] <= constraints.max_latency_ms
    if constraints.max_flops is not None:
        ok_cost &= frame["student_flops"] <= constraints.max_flops
    if constraints.max_params is not None:
        ok_cost &= frame["student_params"] <= constraints.max_params
    ok_quality = pd.Series(True, index=frame.index)
    if constraints.max_gap_pp is not None:
        ok_quality &= frame["gap_bound"] * 100 <= constraints.max_gap_pp + 1e-9
    if constraints.min_relative_acc is not None:
        ok_quality &= frame["relative_bound"] >= constraints.min_relative_acc - 1e-12
    feasible = frame[ok_cost & ok_quality].sort_values(
        [cost, "gap_bound", "student_params"], kind="mergesort"
    )
    k = knee(candidates(trials, task))  # on every size, as the capacity plot
    best_within = (
        frame[ok_cost].sort_values(["gap_bound", cost]).iloc[0].to_dict()
        if constraints.has_cost_limit() and ok_cost.any()
        else None
    )
    if not feasible.empty:
        chosen = feasible.iloc[0].to_dict()
        ties = feasible[feasible[cost] == chosen[cost]]
        if len(ties) > 1:
            notes.append(
                f"{len(ties)} students tie on {cost}; chose the one with the smaller gap bound."
            )
        return Recommendation(
            task,
            True,
            cons,
            basis,
            cost,
            chosen,
            None,
            k,
            None,
            len(frame),
            warnings=warnings_for(chosen, frame),
            notes=notes,
        )
    if ok_quality.any():
        # The quality is reachable; the cost limits are what fails: no extrapolation needed.
        closest = frame[ok_quality].sort_values([cost, "gap_bound"]).iloc[0].to_dict()
        notes.append(
            f"{int(ok_quality.sum())} student(s) meet the quality constraints but none meets the "
            "cost limits; the closest is the cheapest of them."
        )
        extra = None
    else:
        pool = frame[ok_cost] if ok_cost.any() else frame
        closest = pool.sort_values(["gap_bound", cost]).iloc[0].to_dict()
        extra = _extrapolate(candidates(trials, task), constraints)
    return Recommendation(
        task,
        False,
        cons,
        basis,
        cost,
        None,
        closest,
        k,
        extra,
        len(frame),
        best_within_cost=best_within,
        warnings=warnings_for(closest, frame),
        notes=notes,
    )


def _extrapolate(frame: pd.DataFrame, constraints: Constraints) -> dict[str, Any]:
    """Size at which the fitted capacity curve reaches the tolerated error."""
    target_acc_ref = (
        frame["ensemble_acc"] if constraints.against == "ensemble" else frame["best_member_acc"]
    )
    ref = float(target_acc_ref.iloc[0])
    best_per_size = frame.groupby("student_params")["student_acc"].max()
    fit = capacity_fit(best_per_size.index.to_numpy(), 1 - best_per_size.to_numpy())
    gap = constraints.max_gap_pp / 100 if constraints.max_gap_pp is not None else 1.0
    if constraints.min_relative_acc is not None:
        gap = min(gap, ref * (1 - constraints.min_relative_acc))
    target_err = 1 - ref + gap
    if fit is None:
        return {
            "params_needed": None,
            "n_points": len(best_per_size),
            "message": "too few distinct sizes to fit a capacity curve",
        }
    a, b, c = fit
    if target_err <= c:
        return {
            "params_needed": None,
            "n_points": len(best_per_size),
            "fit": {"a": a, "b": b, "c": c},
            "message": f"the fitted curve levels off at {(1 - c) * 100:.2f} % accuracy, short of the "
            f"{(1 - target_err) * 100:.2f} % needed: no size of this family is predicted to meet the gap",
        }
    needed = (a / (target_err - c)) ** (1 / b)
    largest = float(best_per_size.index.max())
    out = {
        "params_needed": float(needed),
        "n_points": len(best_per_size),
        "fit": {"a": a, "b": b, "c": c},
        "times_largest": float(needed / largest),
        "extrapolated": needed > largest,
    }
    if needed <= largest:
        out["message"] = (
            f"the fitted curve (all {len(best_per_size)} sizes, mean accuracy) reaches the tolerance at about "
            f"{needed:,.0f} parameters, inside the trained range: the constraint failed on the interval, "
            "not on the mean; confirm more candidates or seeds ([confirm] top_k, seeds) to narrow it"
        )
    return out
