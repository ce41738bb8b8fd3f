"""The student-size decision, from a run's trial table alone: chosen among *certified*
students only (:mod:`bench.decision.protocol` states the protocol and its guarantee).

Rule. The requested tolerance is ``--max-gap PP`` (and/or ``--min-relative-acc R``, as the
gap ``ensemble_acc · (1 − R)``), against the ensemble (``against="best-member"``: against the
member best on validation, with the certify rows' paired bounds to that member, certified by
the same fixed-sequence test in the same order). Of the task's certification rounds, the
one with the largest tolerance at most the requested one is used (chosen before any result
is looked at; a later round comes from ``kdbench certify RUN --max-gap X``); its certified
students — each one's shipped file has a one-sided ``1 − alpha`` gap bound within the round's
tolerance, by fixed-sequence testing in validation's order — all hold together with
probability at least ``1 − alpha``. Of those within every cost constraint the cheapest by the
chosen cost (FLOPs unless a latency constraint makes latency the cost) is recommended, ties
broken by the smaller bound, then fewer parameters. With no round at or below the request,
or none certified, nothing is recommended and the text says what to run. The scratch twins,
certified the same way, say whether distillation is needed at that tolerance.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench import fmt
from bench.decision.protocol import certify_seeds
from bench.durable.jsonsafe import json_safe

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
    certification: dict[str, Any] | None = None  # the round used: tolerance, alpha, seeds, …
    verdict: str = ""  # is distillation needed at this tolerance?
    suggest: str = ""  # the command that would certify what was asked

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-safe: NaN becomes null; rows keep their public columns plus gap_bound."""
        return json_safe(_public(asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def text(self) -> str:
        c = Constraints(**self.constraints)
        lines = [f"[{self.task}] {c.describe()}"]
        cert = self.certification
        if cert is not None:
            lines.append(
                f"Certified at {cert['max_gap_pp']:g} pp (alpha {cert['alpha']:g}, "
                f"{cert['seeds']} fresh seeds {cert['seed_list']}): {cert['certified']} of "
                f"{cert['candidates']} candidates."
            )
        if self.chosen is not None:
            lines.append("Recommended student: " + _describe(self.chosen, self.cost_column))
        else:
            lines.append("No certified student meets the constraints.")
            if self.closest is not None:
                lines.append("Closest: " + _describe(self.closest, self.cost_column))
            if self.best_within_cost is not None:
                lines.append(
                    "Best within the cost limits: "
                    + _describe(self.best_within_cost, self.cost_column)
                )
            if self.extrapolation is not None:
                lines.append(
                    "Extrapolation (fit err_hi = a·params^-b + c): "
                    f"{self.extrapolation['message']}."
                )
        if self.verdict:
            lines.append(self.verdict)
        if self.knee is not None:
            lines.append(
                f"Knee of the validation capacity curve: {int(self.knee['student_params']):,} "
                f"params ({self.knee['arch']})."
            )
        lines.append(f"Decided by: {self.gap_basis}.")
        if self.suggest:
            lines.append(self.suggest)
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines += self.notes
        return "\n".join(lines)


def _describe(r: dict[str, Any], cost_column: str) -> str:
    """One student as the CLI and the report state it: the shipped file's claim first, then
    the recipe's (mean over the fresh seeds, with its interval and a prediction interval for
    one more training run)."""
    parts = [
        f"{r['arch']}, T {r['temperature']:.2f}, alpha {r['alpha']:.2f} "
        f"(trial {int(r['trial'])}, {r['phase']}, {int(r['n_seeds'])} seed(s))",
        f"params {int(r['student_params']):,} ({fmt.ratio(r.get('param_ratio'))} of the ensemble)",
        f"FLOPs {int(r['student_flops']):,}",
    ]
    if not fmt.is_missing(r.get("file_gap")):
        parts.append(
            f"the file (seed {int(r['file_seed'])}): accuracy {fmt.pct(r['file_acc'])} %, gap "
            f"{fmt.pct(r['file_gap'])} pp, 95 % interval [{fmt.pct(r['file_gap_ci_low'])}, "
            f"{fmt.pct(r['file_gap_ci_high'])}] pp, certified bound "
            f"{fmt.pct(r['certify_bound'])} pp"
        )
    parts.append(
        f"the recipe: accuracy {fmt.pct(r['student_acc'])} % [{fmt.pct(r['student_acc_ci_low'])}, "
        f"{fmt.pct(r['student_acc_ci_high'])}] vs ensemble {fmt.pct(r['ensemble_acc'])} % "
        f"(gap {fmt.pct(r['acc_gap'])} pp, 95 % interval [{fmt.pct(r['acc_gap_ci_low'])}, "
        f"{fmt.pct(r['acc_gap_ci_high'])}] pp; one more training run: "
        f"[{fmt.pct(r.get('acc_gap_pi_low'))}, {fmt.pct(r.get('acc_gap_pi_high'))}] pp; on "
        f"{fmt.count(r.get('n_test'))} test examples)"
    )
    parts.append(
        f"scratch {fmt.pct(r['scratch_acc'])} % (KD gain {fmt.pct(r['kd_gain'], signed=True)} pp)"
    )
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
    """Completed rows of one task; a configuration's certification row (its latest round)
    replaces its search row: what the tables and plots show."""
    done = trials.query("state == 'complete'")
    if task is not None:
        done = done[done["task"] == task]
    cert = done[done["phase"] == "certify"]
    if "certify_round" in cert.columns and len(cert):
        cert = cert.sort_values("certify_round").drop_duplicates(subset=["trial"], keep="last")
    search = done[(done["phase"] == "search") & ~done["trial"].isin(set(cert["trial"]))]
    return pd.concat([search, cert]).sort_index().copy()


def requested_gap_pp(constraints: Constraints, ensemble_acc: float) -> float:
    """The tolerance asked for, in pp: ``--max-gap``, and ``--min-relative-acc R`` as the gap
    ``ensemble_acc · (1 − R)``; the smaller when both are given."""
    gaps = []
    if constraints.max_gap_pp is not None:
        gaps.append(float(constraints.max_gap_pp))
    if constraints.min_relative_acc is not None:
        gaps.append(100 * ensemble_acc * (1 - constraints.min_relative_acc))
    return min(gaps)


def warnings_for(row: dict[str, Any] | None, frame: pd.DataFrame) -> list[str]:
    """What a careful practitioner would say about a recommendation."""
    out: list[str] = []
    if row is not None:
        if int(row["n_seeds"]) < MIN_SEEDS:
            out.append(
                f"it rests on {int(row['n_seeds'])} seed(s), fewer than {MIN_SEEDS}: certify "
                "with more ([certify] seeds)."
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
                "that one member."
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
    """The knee of the *validation* capacity frontier (one configuration per architecture,
    :func:`bench.decision.protocol.validation_frontier`): the point farthest from the chord
    joining its smallest and largest student, on validation accuracy against log(params)
    (Kneedle-style). Test columns are not read."""
    from bench.decision.protocol import validation_frontier

    env = validation_frontier(frame[frame["phase"] == "search"]) if len(frame) else frame
    if len(env) < 3:
        return env.iloc[-1].to_dict() if len(env) else None
    x = np.log10(env["student_params"].to_numpy(float))
    y = env["student_val_acc"].to_numpy(float)
    xn = (x - x[0]) / (x[-1] - x[0]) if x[-1] > x[0] else x * 0
    yn = (y - y[0]) / (y[-1] - y[0]) if y[-1] > y[0] else y * 0
    return env.iloc[int(np.argmax(yn - xn))].to_dict()


def _empty(task: str, cons: dict[str, Any], cost: str, note: str) -> Recommendation:
    return Recommendation(
        task, False, cons, "nothing to decide on", cost, None, None, None, None, 0, notes=[note]
    )


# Long by design: the decision rule read top to bottom (the round, the certified set, the cost
# constraints, the ranking, the verdict, then what to say when nothing qualifies), as
# docs/methodology.md states it.
def recommend(
    trials: pd.DataFrame, constraints: Constraints, task: str | None = None
) -> Recommendation:
    """Apply the rule in the module docstring to one task of a trial table."""
    if task is None:
        tasks = list(dict.fromkeys(trials["task"]))
        if not tasks:
            raise ValueError("the trial table is empty")
        task = tasks[0]
    cons = asdict(constraints)
    cost = constraints.cost_column()
    mine = trials[trials["task"] == task]
    done = mine[mine["state"] == "complete"]
    if done.empty:
        return _empty(task, cons, cost, "No completed trial: nothing to recommend.")
    k = knee(mine)
    ens_acc = float(done["ensemble_acc"].iloc[0])
    want = requested_gap_pp(constraints, ens_acc)
    cert = done[done["phase"] == "certify"].copy()
    run_hint = f"kdbench certify RUN --max-gap {want:g}"
    if constraints.against == "best-member":
        # The same rounds, order and level; the claims are the paired bounds to the member.
        want = requested_gap_pp(constraints, float(done["best_member_acc"].iloc[0]))
        cert = cert.assign(
            certified=cert.get("certified_best_member"),
            certify_bound=cert.get("certify_bound_best_member"),
            scratch_certified=cert.get("scratch_certified_best_member"),
            scratch_certify_bound=cert.get("scratch_certify_bound_best_member"),
        )
        run_hint = f"kdbench certify RUN --max-gap {want:g}"
    if cert.empty:
        return Recommendation(
            task,
            False,
            cons,
            "no certification round in this run",
            cost,
            None,
            None,
            k,
            _extrapolate(mine, want),
            0,
            notes=["This run certified nothing ([certify] candidates = 0, or it did not finish)."],
            suggest=f"To certify: {run_hint}",
        )
    rounds = cert.groupby("certify_round")["certify_max_gap_pp"].first().sort_index().to_dict()
    usable = [r for r, g in rounds.items() if g <= want + 1e-9]
    if not usable:
        closest = cert.sort_values("certify_bound").iloc[0].to_dict()
        done_at = ", ".join(f"{g:g}" for g in sorted(set(rounds.values())))
        return Recommendation(
            task,
            False,
            cons,
            f"certified only at {done_at} pp",
            cost,
            None,
            closest,
            k,
            _extrapolate(mine, want),
            0,
            warnings=warnings_for(closest, done),
            notes=[f"No student is certified at {want:g} pp: this run certified at {done_at} pp."],
            suggest=f"To certify at {want:g} pp on fresh seeds: {run_hint}",
        )
    use = max(usable, key=lambda r: (rounds[r], r))
    gap = float(rounds[use])
    part = cert[cert["certify_round"] == use].sort_values("certify_rank")
    alpha = float(part["certify_alpha"].iloc[0])
    info = {
        "round": int(use),
        "max_gap_pp": gap,
        "alpha": alpha,
        "seeds": int(part["n_seeds"].iloc[0]),
        "seed_list": certify_seeds(int(use), int(part["n_seeds"].iloc[0])),
        "candidates": len(part),
        "certified": int(part["certified"].fillna(False).astype(bool).sum()),
    }
    basis = (
        f"certification round {use}: the shipped file's one-sided {100 * (1 - alpha):g} % gap "
        f"bound to the {constraints.against.replace('-', ' ')} within {gap:g} pp, fixed-sequence testing down {len(part)} validation-ordered "
        f"candidates on {info['seeds']} fresh seeds (family-wise error <= {alpha:g})"
    )
    notes: list[str] = []
    if gap < want - 1e-9:
        notes.append(
            f"Certified at {gap:g} pp, tighter than the {want:g} pp asked: a smaller student may "
            f"be certified at {want:g} pp."
        )
    certified = part[part["certified"].fillna(False).astype(bool)].copy()
    ok_cost = pd.Series(True, index=certified.index)
    if constraints.max_latency_ms is not None:
        col = constraints.latency_column()
        if certified[col].isna().all() if len(certified) else True:
            notes.append(
                f"{col} was not measured in this run (no {constraints.device.upper()}); the "
                "latency constraint cannot be met."
            )
        ok_cost &= certified[col] <= constraints.max_latency_ms
        hosts = sorted(certified.get("latency_host", pd.Series(dtype=str)).dropna().unique())
        if len(hosts) > 1:
            notes.append(
                f"The certified students were timed on {len(hosts)} hosts ({', '.join(hosts)}; "
                "column latency_host): their latencies are not comparable with each other, "
                "though each speed-up is (one pass, one host)."
            )
    if constraints.max_flops is not None:
        ok_cost &= certified["student_flops"] <= constraints.max_flops
    if constraints.max_params is not None:
        ok_cost &= certified["student_params"] <= constraints.max_params
    feasible = certified[ok_cost].sort_values(
        [cost, "certify_bound", "student_params"], kind="mergesort"
    )
    verdict = _verdict(part, feasible.iloc[0].to_dict() if len(feasible) else None, gap)
    suggest = f"To certify at {want:g} pp on fresh seeds: {run_hint}" if gap < want - 1e-9 else ""
    if not feasible.empty:
        chosen = feasible.iloc[0].to_dict()
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
            len(part),
            warnings=warnings_for(chosen, done),
            notes=notes,
            certification=info,
            verdict=verdict,
            suggest=suggest,
        )
    if len(certified):
        closest = certified.sort_values([cost, "certify_bound"]).iloc[0].to_dict()
        notes.append(
            f"{len(certified)} student(s) are certified but none meets the cost limits; the "
            "closest is the cheapest of them."
        )
        extra = None
    else:
        closest = part.sort_values("certify_rank").iloc[0].to_dict()
        notes.append(
            f"The first candidate in validation's order (the largest, {int(closest['student_params']):,} "
            f"params) was not certified at {gap:g} pp (bound "
            f"{fmt.pct(closest.get('certify_bound'))} pp), so none is."
        )
        extra = _extrapolate(mine, gap)
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
        len(part),
        warnings=warnings_for(closest, done),
        notes=notes,
        certification=info,
        verdict=verdict,
        suggest=suggest,
    )


def _verdict(part: pd.DataFrame, chosen: dict[str, Any] | None, gap: float) -> str:
    """Is distillation needed at this tolerance? From the scratch twins' certification."""
    if chosen is None or "scratch_certified" not in part.columns:
        return ""
    sc = part[part["scratch_certified"].fillna(False).astype(bool)]
    size = int(chosen["student_params"])
    smaller = sc[sc["student_params"] <= size]
    if len(smaller):
        best = smaller.sort_values("student_params").iloc[0]
        return (
            f"Distillation is not needed at {gap:g} pp: a student of {int(best['student_params']):,} "
            f"params trained from scratch on hard labels is certified too (bound "
            f"{fmt.pct(best['scratch_certify_bound'])} pp)."
        )
    twin = part[part["trial"] == chosen["trial"]]
    bound = float(twin["scratch_certify_bound"].iloc[0]) if len(twin) else math.nan
    why = f"its file's bound {fmt.pct(bound)} pp"
    if bound <= gap / 100:  # it passes alone: a larger scratch student failed before it
        failed = part[~part["scratch_certified"].fillna(False).astype(bool)]
        first = failed.iloc[0] if len(failed) else None
        if first is not None and int(first["certify_rank"]) < int(twin["certify_rank"].iloc[0]):
            why += (
                f", within the tolerance alone, but the scratch sequence stopped earlier, at "
                f"{int(first['student_params']):,} params (bound "
                f"{fmt.pct(first['scratch_certify_bound'])} pp)"
            )
    return (
        f"Distillation is needed at {gap:g} pp: the same student trained from scratch is not "
        f"certified ({why})."
    )


def _extrapolate(frame: pd.DataFrame, gap_pp: float, n_boot: int = 200) -> dict[str, Any]:
    """The size at which the capacity curve of validation-chosen configurations (one per
    architecture on the validation frontier; their search rows' test bounds) reaches the
    tolerance: fit ``err_hi = a · params^(−b) + c`` to the upper error bound
    ``1 − ensemble_acc + acc_gap_ci_high`` and solve for ``1 − ensemble_acc + gap``; a
    bootstrap over the points (``n_boot`` refits) gives its 95 % interval. Descriptive only:
    nothing is chosen from it."""
    from bench.decision.protocol import validation_frontier

    front = validation_frontier(frame[frame["phase"] == "search"])
    n = len(front)
    if n < 4:
        return {
            "params_needed": None,
            "n_points": n,
            "message": "too few distinct sizes on the validation frontier to fit a capacity curve",
        }
    ens = float(front["ensemble_acc"].iloc[0])
    x = front["student_params"].to_numpy(float)
    y = (1 - ens + front["acc_gap_ci_high"]).to_numpy(float)
    target = 1 - ens + gap_pp / 100

    def solve(xx: np.ndarray, yy: np.ndarray) -> float | None:
        fit = capacity_fit(xx, yy)
        if fit is None or target <= fit[2]:
            return None
        a, b, c = fit
        return float((a / (target - c)) ** (1 / b))

    needed = solve(x, y)
    lo, hi = float(x.min()), float(x.max())
    if needed is None:
        fit = capacity_fit(x, y)
        level = (1 - fit[2]) * 100 if fit is not None else math.nan
        return {
            "params_needed": None,
            "n_points": n,
            "message": (
                f"the fitted curve of the upper error bound levels off at {level:.2f} % accuracy, "
                f"short of the {(1 - target) * 100:.2f} % a {gap_pp:g} pp bound needs: no size of "
                "this family is predicted to be certified (with this test set; a larger test "
                "set narrows the bound)"
            ),
        }
    rng = np.random.default_rng(0)
    boots = [solve(x[i], y[i]) for i in (rng.integers(0, n, n) for _ in range(n_boot))]
    got = np.array([b for b in boots if b is not None], float)
    ci = (
        (float(np.percentile(got, 2.5)), float(np.percentile(got, 97.5)))
        if len(got) >= 20
        else (math.nan, math.nan)
    )
    where = "below" if needed < lo else "above" if needed > hi else "inside"
    return {
        "params_needed": needed,
        "params_needed_ci": list(ci),
        "n_points": n,
        "times_largest": needed / hi,
        "extrapolated": where != "inside",
        "position": where,
        "message": (
            f"the upper error bound of the validation frontier ({n} sizes) reaches {gap_pp:g} pp "
            f"at about {needed:,.0f} parameters (95 % bootstrap interval "
            f"{fmt.count(ci[0])}–{fmt.count(ci[1])}), {where} the trained range "
            f"{lo:,.0f}–{hi:,.0f}"
            + ("; outside it, treat it as a guess" if where != "inside" else "")
        ),
    }
