"""The student-size decision, from a run's trial table alone.

Rule. Among completed students of a task (a configuration re-run in the *confirm* phase is
judged on its confirm row, which rests on more seeds), keep those whose accuracy gap meets
the tolerance — judged on the **upper bound of the 95 % interval** of the gap when the row has
≥ 2 seeds, on the mean otherwise (said in the output) — and that meet every cost constraint;
recommend the cheapest by the chosen cost (FLOPs unless a latency constraint makes latency the
cost), ties broken by the smaller gap bound, then fewer parameters. When none qualifies, name
the closest student and fit error = a · params^(−b) + c to estimate the size that would.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Constraints", "Recommendation", "candidates", "capacity_fit", "knee", "recommend"]


@dataclass(frozen=True)
class Constraints:
    """What the user asks for. Gaps in percentage points (pp); latency in ms."""

    max_gap_pp: float
    against: str = "ensemble"  # or "best-member"
    max_latency_ms: float | None = None
    max_flops: float | None = None
    max_params: float | None = None
    device: str = "cpu"
    batch: str = "1"  # "1" or "N" (the suite's large batch)

    def latency_column(self) -> str:
        return f"latency_{self.device}_b{'1' if self.batch == '1' else 'N'}_p50_ms"

    def cost_column(self) -> str:
        return self.latency_column() if self.max_latency_ms is not None else "student_flops"


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
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_jsonable)

    def text(self) -> str:
        c = self.constraints
        head = f"[{self.task}] max gap {c['max_gap_pp']:.2f} pp vs {c['against']}"
        if c.get("max_latency_ms") is not None:
            head += f", max {c['device'].upper()} latency {c['max_latency_ms']:g} ms at batch {c['batch']}"
        for key, label in (("max_flops", "FLOPs"), ("max_params", "params")):
            if c.get(key) is not None:
                head += f", max {c[key]:g} {label}"
        lines = [head]
        if self.chosen is not None:
            lines.append("Recommended student: " + _describe(self.chosen, self.cost_column))
        else:
            lines.append("No student meets the constraints.")
            if self.closest is not None:
                lines.append("Closest: " + _describe(self.closest, self.cost_column))
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
        lines += self.notes
        return "\n".join(lines)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.integer | np.floating):
        return v.item()
    if v is pd.NA:
        return None
    return str(v)


def _describe(r: dict[str, Any], cost_column: str) -> str:
    parts = [
        f"{r['arch']}, T {r['temperature']:.2f}, alpha {r['alpha']:.2f} "
        f"(trial {int(r['trial'])}, {r['phase']}, {int(r['n_seeds'])} seed(s))",
        f"params {int(r['student_params']):,} ({r['param_ratio'] * 100:.2f} % of the ensemble, "
        f"1/{1 / r['param_ratio']:.1f})",
        f"FLOPs {int(r['student_flops']):,} ({r['flops_ratio'] * 100:.2f} %)",
        f"accuracy {r['student_acc'] * 100:.2f} % vs ensemble {r['ensemble_acc'] * 100:.2f} % "
        f"(gap {r['acc_gap'] * 100:.2f} pp, bound used {r['_gap_bound'] * 100:.2f} pp)",
        f"scratch {r['scratch_acc'] * 100:.2f} % (KD gain {r['kd_gain'] * 100:+.2f} pp)",
    ]
    lat = r.get("latency_cpu_b1_p50_ms")
    if lat is not None and not _isnan(lat):
        parts.append(
            f"CPU b1 p50 {lat:.4f} ms ({r.get('speedup_cpu_b1', float('nan')):.1f}x faster than the faster ensemble form)"
        )
    if cost_column.startswith("latency_gpu"):
        parts.append(f"GPU p50 {r.get(cost_column, float('nan')):.4f} ms")
    return "; ".join(parts)


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def candidates(trials: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """Completed rows of one task; a configuration's confirm row replaces its search row."""
    done = trials.query("state == 'complete'")
    if task is not None:
        done = done[done["task"] == task]
    confirmed = set(done.loc[done["phase"] == "confirm", "trial"])
    keep = (done["phase"] == "confirm") | ~done["trial"].isin(confirmed)
    return done[keep].copy()


def _gap_bound(frame: pd.DataFrame, against: str) -> tuple[pd.Series, str]:
    if against == "best-member":
        mean = frame["best_member_acc"] - frame["student_acc"]
        upper = frame["best_member_acc"] - frame["student_acc_ci_low"]
    else:
        mean = frame["acc_gap"]
        upper = frame["acc_gap_ci_high"]
    has_ci = upper.notna()
    bound = upper.where(has_ci, mean)
    if has_ci.all():
        basis = "upper bound of the 95 % interval of the gap over replicate seeds"
    elif has_ci.any():
        basis = "upper bound of the 95 % interval where a row has >= 2 seeds, the single-seed gap otherwise"
    else:
        basis = "the single-seed gap (no replicate seeds, so no interval: run with seeds >= 2)"
    return bound.astype(float), basis


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
            ["No completed trial: nothing to recommend."],
        )
    if (frame["n_seeds"] >= 2).any() and (frame["n_seeds"] < 2).any():
        frame = frame[frame["n_seeds"] >= 2].copy()
        notes.append(
            "Only students with replicate seeds (confirm phase) are considered: a single-seed "
            "gap has no interval and would be judged more leniently."
        )
    bound, basis = _gap_bound(frame, constraints.against)
    frame["_gap_bound"] = bound
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
    ok_gap = frame["_gap_bound"] * 100 <= constraints.max_gap_pp + 1e-9
    feasible = frame[ok_cost & ok_gap].sort_values(
        [cost, "_gap_bound", "student_params"], kind="mergesort"
    )
    k = knee(candidates(trials, task))  # on every size, as the capacity plot
    if not feasible.empty:
        chosen = feasible.iloc[0].to_dict()
        ties = feasible[feasible[cost] == chosen[cost]]
        if len(ties) > 1:
            notes.append(
                f"{len(ties)} students tie on {cost}; chose the one with the smaller gap bound."
            )
        return Recommendation(
            task, True, cons, basis, cost, chosen, None, k, None, len(frame), notes
        )
    if ok_gap.any():
        # The gap is reachable; the cost constraints are what fails: no extrapolation needed.
        closest = frame[ok_gap].sort_values([cost, "_gap_bound"]).iloc[0].to_dict()
        notes.append(
            f"{int(ok_gap.sum())} student(s) meet the gap but none meets the cost constraints; "
            "the closest is the cheapest of them."
        )
        extra = None
    else:
        pool = frame[ok_cost] if ok_cost.any() else frame
        closest = pool.sort_values(["_gap_bound", cost]).iloc[0].to_dict()
        extra = _extrapolate(candidates(trials, task), constraints)
    return Recommendation(
        task, False, cons, basis, cost, None, closest, k, extra, len(frame), notes
    )


def _extrapolate(frame: pd.DataFrame, constraints: Constraints) -> dict[str, Any]:
    """Size at which the fitted capacity curve reaches the tolerated error."""
    target_acc_ref = (
        frame["ensemble_acc"] if constraints.against == "ensemble" else frame["best_member_acc"]
    )
    ref = float(target_acc_ref.iloc[0])
    best_per_size = frame.groupby("student_params")["student_acc"].max()
    fit = capacity_fit(best_per_size.index.to_numpy(), 1 - best_per_size.to_numpy())
    target_err = 1 - ref + constraints.max_gap_pp / 100
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
