"""The student-size decision, from a run's trial table alone: chosen among *certified*
students only (:mod:`bench.decision.protocol` states the protocol and its guarantee).

Rule. The requested tolerance is ``max_gap`` (a fraction; ``--max-gap PP`` at the command
line) and/or ``min_relative_acc`` R (as the gap ``ensemble_acc · (1 − R)``), against the
ensemble (``against="best-member"``: against the member best on validation, with the certify
rows' paired bounds to that member, certified by the same fixed-sequence test in the same
order). Of the task's certification rounds, the one with the largest tolerance at most the
requested one is used (chosen before any result is looked at; a later round comes from
``kdbench certify RUN --max-gap X``); its certified students — each one's shipped file has a
one-sided ``1 − alpha`` gap bound within the round's tolerance, by fixed-sequence testing in
validation's order — all hold together with probability at least ``1 − alpha``. Of those
within every cost constraint the cheapest by the chosen cost (FLOPs unless a latency
constraint makes latency the cost) is recommended, ties broken by the smaller bound, then
fewer parameters. With no round at or below the request, or none certified, nothing is
recommended. The scratch twins, certified the same way, say whether distillation is needed
at that tolerance.

This module decides and returns facts (:class:`Recommendation`); every sentence about them
is worded in :mod:`bench.decision.claims`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.decision.curve import extrapolate, knee
from bench.decision.protocol import certify_seeds
from bench.errors import InputError

__all__ = ["OUTCOMES", "Constraints", "Recommendation", "RoundInfo", "candidates", "recommend"]

EPS = 1e-11  # tolerances compared as fractions

# What the rule found, in the order it looks:
OUTCOMES = (
    "no_trials",  # no completed trial
    "no_round",  # nothing was certified (no round, or the run did not finish one)
    "not_at_tolerance",  # every round's tolerance is looser than the request
    "none_certified",  # the round used certified no candidate
    "over_cost",  # candidates are certified, none within the cost limits
    "chosen",  # the recommendation
)


@dataclass(frozen=True)
class Constraints:
    """What the user asks for: gaps are fractions (0.005 = 0.5 pp), latency in ms, the
    relative accuracy a fraction of the reference's (0.99 = 99 %)."""

    max_gap: float | None = None
    min_relative_acc: float | None = None
    against: str = "ensemble"  # or "best-member"
    max_latency_ms: float | None = None
    max_flops: float | None = None
    max_params: float | None = None
    device: str = "cpu"
    batch: str = "1"  # "1" or "N" (the suite's large batch)

    def __post_init__(self) -> None:
        if self.max_gap is None and self.min_relative_acc is None:
            raise ValueError("give max_gap or min_relative_acc (or both)")
        if self.max_gap is not None and not 0 <= self.max_gap <= 1:
            raise InputError(
                "The '--max-gap' option must be a number of percentage points in [0, 100]. "
                f"Got {self.max_gap * 100:g} instead."
            )
        if self.min_relative_acc is not None and not 0 < self.min_relative_acc <= 1:
            raise InputError(
                "The '--min-relative-acc' option must be a fraction in (0, 1], e.g. 0.99. Got "
                f"{self.min_relative_acc} instead."
            )

    def latency_column(self) -> str:
        return f"latency_{self.device}_b{'1' if self.batch == '1' else 'N'}_p50_ms"

    def cost_column(self) -> str:
        return self.latency_column() if self.max_latency_ms is not None else "student_flops"

    def has_cost_limit(self) -> bool:
        return any(v is not None for v in (self.max_latency_ms, self.max_flops, self.max_params))

    def requested_gap(self, reference_acc: float) -> float:
        """The tolerance asked for, a fraction: ``max_gap``, and ``min_relative_acc`` R as the
        gap ``reference_acc · (1 − R)``; the smaller when both are given."""
        gaps = [] if self.max_gap is None else [float(self.max_gap)]
        if self.min_relative_acc is not None:
            gaps.append(reference_acc * (1 - self.min_relative_acc))
        return min(gaps)


@dataclass(frozen=True)
class RoundInfo:
    """The certification round a decision used."""

    round: int
    max_gap: float
    alpha: float
    seeds: int
    seed_list: list[int]
    candidates: int
    certified: int


@dataclass(frozen=True)
class ScratchFacts:
    """What the scratch twins' certification says at the recommended size: the smallest
    certified scratch twin no larger than it (``smaller``), the recommended row's own twin's
    bound, and the first failed scratch candidate ranked before that twin (``stopped_at``)."""

    smaller: dict[str, Any] | None
    twin_bound: float
    stopped_at: dict[str, Any] | None


@dataclass(frozen=True)
class Recommendation:
    """The facts of one task's decision (:data:`OUTCOMES`); rows are the trial table's."""

    task: str
    met: bool
    constraints: Constraints
    want: float  # the tolerance asked for (a fraction), against the reference
    outcome: str
    cost_column: str
    chosen: dict[str, Any] | None = None
    closest: dict[str, Any] | None = None
    n_candidates: int = 0
    certification: RoundInfo | None = None
    rounds_done: tuple[float, ...] = ()  # every round's tolerance (outcome not_at_tolerance)
    knee: dict[str, Any] | None = None
    extrapolation: dict[str, Any] | None = None
    latency_measured: bool = True  # False: the latency limit's column is NaN everywhere
    latency_hosts: tuple[str, ...] = ()
    n_over_cost: int = 0  # certified students outside the cost limits (outcome over_cost)
    scratch: ScratchFacts | None = None
    ensemble_acc: float = math.nan
    best_member_acc: float = math.nan

    @property
    def tighter(self) -> bool:
        """The round used certified a tighter tolerance than asked."""
        c = self.certification
        return c is not None and c.max_gap < self.want - EPS


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


def _against_best_member(cert: pd.DataFrame) -> pd.DataFrame:
    """The certify rows with their claims against the best member in the claim columns: the
    same rounds, order and level, the paired bounds to that member."""
    return cert.assign(
        certified=cert.get("certified_best_member"),
        certify_bound=cert.get("certify_bound_best_member"),
        scratch_certified=cert.get("scratch_certified_best_member"),
        scratch_certify_bound=cert.get("scratch_certify_bound_best_member"),
    )


def _flag(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].fillna(False).astype(bool)


def recommend(
    trials: pd.DataFrame, constraints: Constraints, task: str | None = None
) -> Recommendation:
    """Apply the rule in the module docstring to one task of a trial table."""
    if task is None:
        tasks = list(dict.fromkeys(trials["task"]))
        if not tasks:
            raise ValueError("the trial table is empty")
        task = tasks[0]
    cost = constraints.cost_column()
    mine = trials[trials["task"] == task]
    done = mine[mine["state"] == "complete"]
    base: dict[str, Any] = {"task": task, "constraints": constraints, "cost_column": cost}
    if done.empty:
        return Recommendation(**base, met=False, want=math.nan, outcome="no_trials")
    ens, best = float(done["ensemble_acc"].iloc[0]), float(done["best_member_acc"].iloc[0])
    base |= {"ensemble_acc": ens, "best_member_acc": best, "knee": knee(mine)}
    cert = done[done["phase"] == "certify"].copy()
    if constraints.against == "best-member":
        cert = _against_best_member(cert)
    want = constraints.requested_gap(best if constraints.against == "best-member" else ens)
    base["want"] = want
    if cert.empty:
        return Recommendation(
            **base, met=False, outcome="no_round", extrapolation=extrapolate(mine, want)
        )
    rounds = cert.groupby("certify_round")["certify_max_gap"].first().sort_index().to_dict()
    usable = [r for r, g in rounds.items() if g <= want + EPS]
    if not usable:
        return Recommendation(
            **base,
            met=False,
            outcome="not_at_tolerance",
            closest=cert.sort_values("certify_bound").iloc[0].to_dict(),
            rounds_done=tuple(sorted(set(rounds.values()))),
            extrapolation=extrapolate(mine, want),
        )
    use = max(usable, key=lambda r: (rounds[r], r))
    part = cert[cert["certify_round"] == use].sort_values("certify_rank")
    seeds = int(part["n_seeds"].iloc[0])
    base |= {
        "n_candidates": len(part),
        "certification": RoundInfo(
            round=int(use),
            max_gap=float(rounds[use]),
            alpha=float(part["certify_alpha"].iloc[0]),
            seeds=seeds,
            seed_list=certify_seeds(int(use), seeds),
            candidates=len(part),
            certified=int(_flag(part, "certified").sum()),
        ),
    }
    certified = part[_flag(part, "certified")].copy()
    ok_cost, base["latency_measured"], base["latency_hosts"] = _within_cost(certified, constraints)
    feasible = certified[ok_cost].sort_values(
        [cost, "certify_bound", "student_params"], kind="mergesort"
    )
    if len(feasible):
        chosen = feasible.iloc[0].to_dict()
        return Recommendation(
            **base, met=True, outcome="chosen", chosen=chosen, scratch=_scratch(part, chosen)
        )
    if len(certified):
        return Recommendation(
            **base,
            met=False,
            outcome="over_cost",
            closest=certified.sort_values([cost, "certify_bound"]).iloc[0].to_dict(),
            n_over_cost=len(certified),
        )
    return Recommendation(
        **base,
        met=False,
        outcome="none_certified",
        closest=part.iloc[0].to_dict(),
        extrapolation=extrapolate(mine, base["certification"].max_gap),
    )


def _within_cost(
    certified: pd.DataFrame, constraints: Constraints
) -> tuple[pd.Series, bool, tuple[str, ...]]:
    """Which certified students meet the cost limits; whether the latency limit's column was
    measured at all, and on which hosts (a latency limit only)."""
    ok = pd.Series(True, index=certified.index)
    measured, hosts = True, ()
    if constraints.max_latency_ms is not None:
        col = constraints.latency_column()
        measured = bool(len(certified)) and not certified[col].isna().all()
        ok &= certified[col] <= constraints.max_latency_ms
        found = certified.get("latency_host", pd.Series(dtype=str)).dropna().unique()
        hosts = tuple(sorted(found))
    if constraints.max_flops is not None:
        ok &= certified["student_flops"] <= constraints.max_flops
    if constraints.max_params is not None:
        ok &= certified["student_params"] <= constraints.max_params
    return ok, measured, hosts


def _scratch(part: pd.DataFrame, chosen: dict[str, Any]) -> ScratchFacts | None:
    """The scratch twins' certification at the chosen student's size."""
    if "scratch_certified" not in part.columns:
        return None
    passed = _flag(part, "scratch_certified")
    smaller = part[passed & (part["student_params"] <= int(chosen["student_params"]))]
    twin = part[part["trial"] == chosen["trial"]]
    bound = float(twin["scratch_certify_bound"].iloc[0]) if len(twin) else math.nan
    failed = part[~passed]
    stopped = None
    if len(twin) and len(failed):
        first = failed.iloc[0]
        if int(first["certify_rank"]) < int(twin["certify_rank"].iloc[0]):
            stopped = first.to_dict()
    return ScratchFacts(
        smaller=smaller.sort_values("student_params").iloc[0].to_dict() if len(smaller) else None,
        twin_bound=bound,
        stopped_at=stopped,
    )
