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
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from bench.decision import law as capacity_law
from bench.decision.protocol import certify_seeds
from bench.errors import InputError
from bench.fmt import to_float
from bench.stats import paired_bound, paired_interval, z_of

__all__ = [
    "OUTCOMES",
    "Comparison",
    "Constraints",
    "DistillationVerdict",
    "Recommendation",
    "RoundInfo",
    "Shortfall",
    "TwinBound",
    "by_form",
    "candidates",
    "distillation_verdict",
    "recommend",
    "ship_forms",
]

EPS = 1e-11  # tolerances compared as fractions
# The two-sided level of the descriptive comparisons (the file against its twin, the
# ensemble against its best member): 95 % intervals, each direction wrong at most 2.5 %.
ALPHA = 0.05

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
    """The certification round a decision used: its tolerance, the level it tested at (its
    share of the run's alpha, ``budget``), its fresh seeds, and how many of its candidates it
    certified."""

    round: int
    max_gap: float
    alpha: float
    budget: float
    seeds: int
    seed_list: list[int]
    candidates: int
    certified: int
    forms: dict[str, int] = field(default_factory=dict)  # [ship] forms beside fp32: certified


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two models on the test split, three ways: ``estimate`` = first −
    second accuracy with its two-sided ``1 − alpha`` interval (Tango's score interval, the
    test-set error), and ``direction``: ``better`` (the interval above 0), ``worse`` (below)
    or ``cannot tell`` at this test size."""

    estimate: float
    low: float
    high: float
    n: int
    alpha: float

    @property
    def direction(self) -> str:
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "cannot tell"

    @classmethod
    def of(cls, first_only: Any, second_only: Any, n: Any, alpha: float) -> Comparison | None:
        """From the discordant counts (first right only, second right only) of ``n`` pairs;
        None where a count is missing."""
        vals = [to_float(v) for v in (first_only, second_only, n)]
        if any(math.isnan(v) for v in vals) or vals[2] <= 0:
            return None
        a, b, m = int(vals[0]), int(vals[1]), int(vals[2])
        low, high = paired_interval(a, b, m, 1 - alpha)
        return cls((a - b) / m, low, high, m, alpha)


@dataclass(frozen=True)
class TwinBound:
    """A scratch twin's gap to the reference, with its one-sided limits at the verdict's
    simultaneous level."""

    trial: int
    arch: str
    params: int
    gap: float
    low: float
    high: float


@dataclass(frozen=True)
class DistillationVerdict:
    """Is distillation needed at the tolerance? Three ways, with simultaneous bounds.

    The family is the round's ``family`` scratch twins (every candidate's, fixed before the
    test split is read); each twin's gap gets one-sided limits at ``level`` = the round's
    level / ``family`` (Bonferroni). ``not_needed``: a twin no larger than the shipped
    student has its upper limit within the tolerance (``witness``: the smallest such);
    ``needed``: every twin no larger has its lower limit above it; otherwise ``inconclusive``.
    A wrong verdict needs some twin's limit on the wrong side of its true gap, so whichever
    size the decision ships, P(a wrong verdict) ≤ family × level = the round's level."""

    kind: str
    tolerance: float
    family: int
    level: float
    twins: tuple[TwinBound, ...]  # no larger than the shipped student, largest first
    witness: TwinBound | None = None


@dataclass(frozen=True)
class Shortfall:
    """Why nothing was certified: the first candidate's file, its bound, and the test
    examples the tolerance would take at its observed gap and disagreement rate (None when
    its observed gap already exceeds the tolerance: no test split certifies it)."""

    row: dict[str, Any]
    bound: float
    gap: float
    n_test: int
    n_needed: int | None


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
    # the capacity law's answers on validation (bench.decision.law.facts), and the certified
    # student that contradicts its predicted size when one does (then it is not stated)
    law: dict[str, Any] | None = None
    law_contradicted: dict[str, Any] | None = None
    latency_measured: bool = True  # False: the latency limit's column is NaN everywhere
    latency_hosts: tuple[str, ...] = ()
    n_over_cost: int = 0  # certified students outside the cost limits (outcome over_cost)
    verdict: DistillationVerdict | None = None  # outcome chosen
    file_gain: Comparison | None = None  # the shipped file against its own scratch twin
    ensemble_vs_best: Comparison | None = None  # the ensemble against its best member
    shortfall: Shortfall | None = None  # outcome none_certified
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
        ens_not_file=cert.get("best_not_file"),
        file_not_ens=cert.get("file_not_best"),
        ens_not_twin=cert.get("best_not_twin"),
        twin_not_ens=cert.get("twin_not_best"),
    )


def _flag(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].fillna(False).astype(bool)


def recommend(
    trials: pd.DataFrame,
    constraints: Constraints,
    task: str | None = None,
    seeds: pd.DataFrame | None = None,
) -> Recommendation:
    """Apply the rule in the module docstring to one task of a trial table; ``seeds`` (the
    per-seed table) weights the capacity law's points by their seeds' error."""
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
    base |= _teacher_facts(done)
    ens, best = base["ensemble_acc"], base["best_member_acc"]
    cert = done[done["phase"] == "certify"].copy()
    if constraints.against == "best-member":
        cert = _against_best_member(cert)
    want = constraints.requested_gap(best if constraints.against == "best-member" else ens)
    base["want"] = want
    if cert.empty:
        return _with_law(Recommendation(**base, met=False, outcome="no_round"), mine, seeds, want)
    rounds = cert.groupby("certify_round")["certify_max_gap"].first().sort_index().to_dict()
    usable = [r for r, g in rounds.items() if g <= want + EPS]
    if not usable:
        rec = Recommendation(
            **base,
            met=False,
            outcome="not_at_tolerance",
            closest=cert.sort_values("certify_bound").iloc[0].to_dict(),
            rounds_done=tuple(sorted(set(rounds.values()))),
        )
        return _with_law(rec, mine, seeds, want)
    use = max(usable, key=lambda r: (rounds[r], r))
    part = cert[cert["certify_round"] == use].sort_values("certify_rank")
    info = _round_info(part, int(use), float(rounds[use]))
    base |= {"n_candidates": len(part), "certification": info}
    return _with_law(_in_round(base, part, info, constraints), mine, seeds, info.max_gap, part)


def _with_law(
    rec: Recommendation,
    mine: pd.DataFrame,
    seeds: pd.DataFrame | None,
    max_gap: float,
    part: pd.DataFrame | None = None,
) -> Recommendation:
    """``rec`` with the capacity law's answers for ``max_gap`` (on validation). A predicted
    size that the round's certification contradicts — a student certified at that tolerance
    below the prediction's interval, or certified where the law says the tolerance is out of
    reach — is recorded as contradicted, and only that is said of it. The law is of the gap to
    the ensemble (the rows hold no validation accuracy of the best member): against the best
    member it is not stated."""
    if not math.isfinite(max_gap) or rec.constraints.against != "ensemble":
        return rec
    mine_seeds = seeds[seeds["task"] == rec.task] if seeds is not None else None
    facts = capacity_law.facts(mine, mine_seeds, max_gap)
    if facts is None:
        return replace(rec, law=None)
    contradicted = None
    if part is not None and rec.certification is not None:
        pred = facts["prediction"]
        sure = part[_flag(part, "certified")]
        if len(sure):
            smallest = sure.sort_values("student_params").iloc[0]
            size = float(smallest["student_params"])
            if not math.isfinite(pred["size"]) or size < pred["interval"][0]:
                contradicted = {
                    "arch": smallest["arch"],
                    "size": size,
                    "max_gap": rec.certification.max_gap,
                }
    return replace(rec, law=facts, law_contradicted=contradicted)


def _teacher_facts(done: pd.DataFrame) -> dict[str, Any]:
    """The ensemble's accuracy, its best member's, and the two compared paired on test."""
    head = done.iloc[0]
    return {
        "ensemble_acc": float(head["ensemble_acc"]),
        "best_member_acc": float(head["best_member_acc"]),
        "ensemble_vs_best": Comparison.of(
            head.get("ens_not_best"), head.get("best_not_ens"), head.get("n_test"), ALPHA
        ),
    }


def _in_round(
    base: dict[str, Any], part: pd.DataFrame, info: RoundInfo, constraints: Constraints
) -> Recommendation:
    """The decision within the round used: the cheapest certified student within the cost
    limits, with the distillation verdict and its own gain; else why not."""
    cost = constraints.cost_column()
    limit = constraints.latency_column() if constraints.max_latency_ms is not None else None
    pairs = by_form(part, limit)
    certified = pairs[_flag(pairs, "certified")].copy()
    ok_cost, base["latency_measured"], base["latency_hosts"] = _within_cost(certified, constraints)
    feasible = certified[ok_cost].sort_values(
        [cost, "form_rank", "certify_bound", "student_params"], kind="mergesort"
    )
    if len(feasible):
        chosen = feasible.iloc[0].to_dict()
        gain = Comparison.of(
            chosen.get("file_not_twin"), chosen.get("twin_not_file"), chosen.get("n_test"), ALPHA
        )
        return Recommendation(
            **base,
            met=True,
            outcome="chosen",
            chosen=chosen,
            verdict=distillation_verdict(part, chosen, info.alpha),
            file_gain=gain,
        )
    if len(certified):
        return Recommendation(
            **base,
            met=False,
            outcome="over_cost",
            closest=certified.sort_values([cost, "certify_bound"]).iloc[0].to_dict(),
            n_over_cost=len(certified),
        )
    first = part.iloc[0].to_dict()
    return Recommendation(
        **base,
        met=False,
        outcome="none_certified",
        closest=first,
        shortfall=_shortfall(first, info.max_gap, info.alpha),
    )


FORM_CELLS = (
    "file_acc",
    "file_gap",
    "file_gap_ci_low",
    "file_gap_ci_high",
    "certify_bound",
    "ens_not_file",
    "file_not_ens",
)


def ship_forms(part: pd.DataFrame) -> tuple[str, ...]:
    """The round's ``[ship] forms``, in the suite's order (``("fp32",)`` before forms)."""
    listed = part["ship_forms"].dropna() if "ship_forms" in part else pd.Series(dtype=str)
    return tuple(str(listed.iloc[0]).split(",")) if len(listed) else ("fp32",)


def by_form(part: pd.DataFrame, latency_column: str | None = None) -> pd.DataFrame:
    """One row per (candidate, form): a form's own cells (``file_acc_int8_dynamic`` …) in the
    fp32 names, its own mark as ``certified``, ``form`` and ``form_rank`` (the order of
    ``[ship] forms``: the preference between forms of one student); with a latency limit's
    ``latency_column``, a form's onnxruntime latency in it (the form is what ships)."""
    frames = []
    for rank, form in enumerate(ship_forms(part)):
        f = part.copy()
        f["form"], f["form_rank"] = form, rank
        if form != "fp32":
            for col in FORM_CELLS:
                f[col] = part.get(f"{col}_{form}", math.nan)
            f["certified"] = part.get(f"certified_{form}", False)
            if latency_column is not None:
                tag = "b1" if "_b1_" in latency_column else "bN"
                f[latency_column] = part.get(f"latency_ort_cpu_{form}_{tag}_p50_ms", math.nan)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def _round_info(part: pd.DataFrame, use: int, max_gap: float) -> RoundInfo:
    """The facts of the certification round ``use`` from its candidates' rows."""
    seeds = int(part["n_seeds"].iloc[0])
    level = float(part["certify_alpha"].iloc[0])
    listed = part["certify_seeds"].iloc[0] if "certify_seeds" in part else None
    return RoundInfo(
        round=use,
        max_gap=max_gap,
        alpha=level,
        budget=level * len(ship_forms(part)) * 2 ** (use + 1),
        seeds=seeds,
        seed_list=[int(s) for s in str(listed).split(",")]
        if isinstance(listed, str)
        else certify_seeds(use, seeds),
        candidates=len(part),
        certified=int(_flag(part, "certified").sum()),
        forms={
            f: int(_flag(part, f"certified_{f}").sum()) if f"certified_{f}" in part else 0
            for f in ship_forms(part)
            if f != "fp32"
        },
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


def _twin_bound(row: pd.Series, level: float) -> TwinBound | None:
    counts = [to_float(row.get(c)) for c in ("ens_not_twin", "twin_not_ens", "n_test")]
    if any(math.isnan(v) for v in counts) or counts[2] <= 0:
        return None
    a, b, n = (int(v) for v in counts)
    return TwinBound(
        trial=int(row["trial"]),
        arch=str(row["arch"]),
        params=int(row["student_params"]),
        gap=(a - b) / n,
        low=paired_bound(a, b, n, 1 - level, upper=False),
        high=paired_bound(a, b, n, 1 - level, upper=True),
    )


def distillation_verdict(
    part: pd.DataFrame, chosen: dict[str, Any], level: float
) -> DistillationVerdict | None:
    """:class:`DistillationVerdict` for the round ``part`` (its candidates' rows) and the
    shipped student ``chosen``, at the round's ``level``."""
    family = [r for _, r in part.iterrows() if _twin_bound(r, 1.0) is not None]
    if not family:
        return None
    each = level / len(family)
    tol = float(part["certify_max_gap"].iloc[0])
    size = int(chosen["student_params"])
    bounds = [_twin_bound(r, each) for r in family if int(r["student_params"]) <= size]
    twins = tuple(sorted((b for b in bounds if b is not None), key=lambda b: -b.params))
    passing = [b for b in twins if b.high <= tol + EPS]
    if passing:
        witness = min(passing, key=lambda b: b.params)
        return DistillationVerdict("not_needed", tol, len(family), each, twins, witness)
    kind = "needed" if twins and all(b.low > tol for b in twins) else "inconclusive"
    return DistillationVerdict(kind, tol, len(family), each, twins)


def _shortfall(first: dict[str, Any], tol: float, level: float) -> Shortfall | None:
    """How far the first candidate's file is from being certified at ``tol``."""
    counts = [to_float(first.get(c)) for c in ("ens_not_file", "file_not_ens", "n_test")]
    if any(math.isnan(v) for v in counts) or counts[2] <= 0:
        return None
    a, b, n = (int(v) for v in counts)
    gap = (a - b) / n
    disagree = (a + b) / n
    needed = _examples_needed(a / n, b / n, tol, level) if gap < tol and disagree > 0 else None
    return Shortfall(first, to_float(first.get("certify_bound")), gap, n, needed)


def _examples_needed(p12: float, p21: float, tol: float, level: float) -> int | None:
    """The fewest test examples at which the certification bound itself (Tango's, at
    ``level``) of a file with these discordant rates is within ``tol``: the observed rates
    held fixed, the bound solved for n (by doubling, then bisection); None past 10⁹."""

    def passes(m: int) -> bool:
        return paired_bound(p12 * m, p21 * m, m, 1 - level) <= tol + EPS

    # the normal approximation gap + z·√(d / n) ≤ tol gives a starting point
    guess = z_of(1 - 2 * level) ** 2 * (p12 + p21) / (tol - (p12 - p21)) ** 2
    low, high = 1, max(2, math.ceil(guess))
    while not passes(high):
        low, high = high, high * 2
        if high > 10**9:
            return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if passes(mid) else (mid, high)
    return high
