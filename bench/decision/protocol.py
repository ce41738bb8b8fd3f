"""The size decision's protocol: validation chooses, the test split certifies once.

1. **Order (validation only).** From the search's completed students, one configuration per
   architecture — the one with the best validation accuracy — and of those the *validation
   capacity frontier*: sorted by parameters, each more accurate on validation than every
   smaller one. The first candidate is the smallest frontier student that validation says is
   safely within the tolerance (its validation gap plus the test split's expected noise),
   after :data:`ABOVE` larger ones; the candidates then step down the frontier
   (:func:`certify_order`). No test result is read: permuting the test labels cannot change
   the list or its order.
2. **Certify (test, once, fresh seeds).** Each candidate is trained again with seeds no
   earlier step used (:func:`certify_seeds`, disjoint from the search's, the teacher's and
   the split's); the file a user would ship is the seed with the best *validation* accuracy.
   Its paired test gap to the ensemble gets Tango's score bound with a half-count
   continuity correction (:func:`bench.stats.paired_bound`): the one-sided ``1 − level``
   upper bound ``certify_bound`` is the statistic of H₀ "this file's true gap exceeds the
   tolerance". Its level stays at or below ``level`` on the grid of paired tables
   ``tests/bench_tests/test_stats.py`` simulates (Newcombe's interval, used before, reached
   6.7 % at a nominal 5 %).
3. **Fixed-sequence testing** (:func:`fixed_sequence`, :func:`round_marks` once the round is
   complete): reject H₀ down the ordered list, each at the round's level, stopping at the
   first candidate that does not pass. Because the order is fixed before the test split is
   read, the probability of certifying *any* student whose true gap exceeds the tolerance is
   at most that level (family-wise), with no multiplicity correction (Westfall & Krishen
   2001; Angelopoulos et al. 2021, "Learn then Test").
4. **Rounds share alpha.** Round k (a later ``kdbench certify --max-gap``) tests at
   :func:`round_level` = alpha / 2^(k+1): every round reads the same test split, and the
   shares sum to alpha, so the run's certificates hold together with probability at least
   1 − alpha however many rounds follow.
5. The scratch twins of the candidates (the same fresh seeds, trained on hard labels) get the
   same bounds; whether distillation is needed is a separate, three-way claim with its own
   simultaneous bounds (:mod:`bench.decision.recommend`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.config.suite import DERIVED_FORMS
from bench.fmt import to_float
from bench.stats import z_of

__all__ = [
    "ABOVE",
    "CERTIFY_SEED_BASE",
    "certify_margin",
    "certify_order",
    "certify_seeds",
    "claim_level",
    "file_choice",
    "fixed_sequence",
    "round_level",
    "round_marks",
    "validation_frontier",
]

ABOVE = 1  # frontier students larger than the first safe one, certified before it
CERTIFY_SEED_BASE = 2_000_000_000  # round r: CERTIFY_SEED_BASE + 1000·r + i


def certify_seeds(round_: int, n: int) -> list[int]:
    """The fresh training seeds of certification round ``round_``: disjoint from every seed a
    run uses before (the search's ``range(budget.seeds)``, at most 100; the teacher's members
    and specialists and the task's split, at most ``SEED_MAX`` + a few hundred) and from every
    other round's (``n`` ≤ 100)."""
    return [CERTIFY_SEED_BASE + 1000 * round_ + i for i in range(n)]


def file_choice(val_accs: Sequence[float], seeds: Sequence[int]) -> int:
    """Which of a candidate's fresh seeds is the file to ship (its index): the best
    *validation* accuracy, ties to the smaller seed. Validation only: the test split never
    chooses the file it certifies."""
    return max(range(len(seeds)), key=lambda i: (val_accs[i], -seeds[i]))


def claim_level(alpha: float, round_: int, forms: int = 1) -> float:
    """The one-sided level of each bound of certification round ``round_`` when ``forms``
    deployed forms are certified (``[ship] forms``): the round's share split evenly over the
    forms' fixed sequences (Bonferroni), so P(any (size, form) certified wrongly) stays within
    the round's share."""
    return round_level(alpha, round_) / max(1, forms)


def round_level(alpha: float, round_: int) -> float:
    """The share of ``alpha`` that certification round ``round_`` spends: alpha / 2^(round+1).
    The rounds of one run read the same test split, and a later round's tolerance may be
    chosen after seeing an earlier round's bounds; these shares sum to alpha over any number
    of rounds, so the chance that *any* round certifies a student whose true gap exceeds its
    tolerance stays at most alpha (Bonferroni over rounds)."""
    return alpha / 2 ** (round_ + 1)


def validation_frontier(search: pd.DataFrame, n_val: float = math.nan) -> pd.DataFrame:
    """One configuration per architecture (best validation accuracy; ties: the earlier
    trial), then, by size, those more accurate on validation than every smaller one.

    With ``n_val`` (the validation split's size), the frontier within validation's noise: a
    larger student also stays when it is less accurate than the most accurate smaller one by
    less than one standard error of their difference, at most ``√((e₁ + e₂) / n_val)`` for
    error rates e₁, e₂. One lucky small student then no longer hides every larger one that
    validation cannot tell from it (the winner's curse of a sweep's best)."""
    done = search[search["state"] == "complete"]
    if done.empty:
        return done
    best = (
        done.sort_values(["student_val_acc", "trial"], ascending=[False, True], kind="mergesort")
        .drop_duplicates(subset=["arch"], keep="first")
        .sort_values(["student_params", "student_val_acc"], ascending=[True, False])
    )
    acc = best["student_val_acc"].to_numpy(float)
    keep, top = [], -1.0
    for a in acc:
        slack = math.sqrt((2 - top - a) / n_val) if top >= 0 and n_val > 0 else 0.0
        keep.append(bool(a > top or (slack > 0 and a > top - slack)))
        top = max(top, a)
    return best[keep]


def certify_order(
    search: pd.DataFrame, n: int, max_gap: float, level: float = 0.05, n_val: int | None = None
) -> pd.DataFrame:
    """The candidates to certify, in the order they are tested (largest first), chosen on
    validation columns and the splits' *sizes* only (``student_val_acc``,
    ``ensemble_val_acc``, ``student_params``, ``n_test``; ``n_val``, default ``n_test``).

    The first candidate tested is one validation says is safely within the tolerance, so that
    fixed-sequence testing has something it can certify: the smallest frontier student whose
    predicted certification bound clears ``max_gap`` by one standard error,

        val_gap + z_{1−level} · √(d / n_test) + √(d / n_test + d / n_val) ≤ max_gap,

    with ``d`` the two models' validation error rates summed (an upper bound on how often they
    disagree): the bound sits ``z · √(d / n_test)`` above the test gap, and the test gap
    differs from the validation gap by about ``√(d / n_test + d / n_val)``, so such a student
    passes in about 84 % of runs where validation is unbiased (a bare ``val_gap + z · se ≤
    max_gap`` would pass in about half). :data:`ABOVE` larger frontier students go before it;
    when none qualifies, the largest frontier student goes first. The candidates then step
    down the frontier towards validation's optimistic guess (the smallest frontier student
    whose validation gap is within ``max_gap``), evenly in log-size when there are more
    frontier students than candidates (:func:`_step_down`), ``n`` in all. The frontier is the one within validation's noise
    (:func:`validation_frontier` with ``n_val``): larger students that validation cannot
    tell from a lucky smaller one stay candidates."""
    n_test_col = pd.to_numeric(search.get("n_test", pd.Series(math.nan, index=search.index)))
    size_val = float(n_val) if n_val is not None else float(n_test_col.max())
    front = validation_frontier(search, size_val).reset_index(drop=True)
    if front.empty or n <= 0:
        return front.iloc[:0]
    val_gap = front["ensemble_val_acc"] - front["student_val_acc"]
    n_test = pd.to_numeric(front.get("n_test", pd.Series(math.nan, index=front.index)))
    noise = certify_margin(
        front["student_val_acc"],
        front["ensemble_val_acc"],
        n_test,
        n_test if n_val is None else n_val,
        level,
    ).fillna(0.0)
    safe = [i for i, ok in enumerate(val_gap + noise <= max_gap + 1e-14) if ok]
    first = safe[0] if safe else len(front) - 1
    top = min(len(front) - 1, first + ABOVE)
    guess = next((i for i, g in enumerate(val_gap) if g <= max_gap + 1e-14), top)
    picked = _step_down(front["student_params"].to_numpy(float), top, min(guess, top), n)
    return front.iloc[picked].reset_index(drop=True)


def certify_margin(
    student_val_acc: Any, ensemble_val_acc: Any, n_test: Any, n_val: Any, level: float
) -> Any:
    """How far below the tolerance a student's validation gap must sit for
    :func:`certify_order` to count it safe (about 84 % likely to be certified):
    ``z_{1−level} · √(d / n_test) + √(d / n_test + d / n_val)``, ``d`` the two validation
    error rates summed. Element-wise on arrays or Series."""
    disagree = (1 - student_val_acc) + (1 - ensemble_val_acc)
    var_test = disagree / n_test
    var_val = disagree / n_val
    return z_of(1 - 2 * level) * var_test**0.5 + (var_test + var_val) ** 0.5


def _step_down(params: np.ndarray, top: int, guess: int, n: int) -> list[int]:
    """``n`` frontier indices from ``top`` down, largest first: spread evenly in log-size
    between ``top`` and validation's optimistic guess ``guess`` (both included) when there
    are more frontier students between them than candidates, else every one of them and then
    the next smaller ones. Near-equal large students would spend the candidates without
    moving towards the answer."""
    span = list(range(top, guess - 1, -1))
    if len(span) <= n:
        return (span + list(range(guess - 1, -1, -1)))[:n]
    logs = np.log(params)
    targets = np.linspace(logs[top], logs[guess], n)
    picked: list[int] = []
    for t in targets:
        free = [i for i in span if i not in picked]
        picked.append(min(free, key=lambda i: (abs(logs[i] - t), -i)))
    return sorted(picked, reverse=True)


def fixed_sequence(bounds: Sequence[float], max_gap: float) -> list[bool]:
    """Which hypotheses fixed-sequence testing rejects: ``bounds[k] <= max_gap`` for every
    k up to the first that fails (a missing bound — a failed candidate — fails)."""
    out: list[bool] = []
    going = True
    for b in bounds:
        going = going and b is not None and not math.isnan(b) and b <= max_gap + 1e-12
        out.append(going)
    return out


FORM_MARKS = DERIVED_FORMS  # each form's own mark; fp32's is ``certified``

MARKS = (
    ("certified", "certify_bound"),
    ("scratch_certified", "scratch_certify_bound"),
    ("certified_best_member", "certify_bound_best_member"),
    ("scratch_certified_best_member", "scratch_certify_bound_best_member"),
)


def round_marks(rows: Iterable[dict[str, Any]], candidates: int) -> dict[int, dict[str, bool]]:
    """The marks of one complete certification round: for each of its ``candidates`` (by
    trial), ``certified`` and ``scratch_certified`` by fixed-sequence testing in
    ``certify_rank`` order at the round's tolerance; the same against the best member
    (``*_best_member``: a second family of claims, each at level ``alpha``, in the same
    validation order, so the order still owes nothing to the test split). A rank with no
    completed row (a failed or lost candidate) fails, and so does every rank after it."""
    by_rank = {
        int(r["certify_rank"]): r
        for r in rows
        if r.get("state") != "duplicate" and r.get("certify_rank") is not None
    }
    part = [by_rank.get(k) for k in range(candidates)]
    tol = next((float(r["certify_max_gap"]) for r in part if r is not None), math.nan)
    out: dict[int, dict[str, bool]] = {int(r["trial"]): {} for r in part if r is not None}
    forms = sorted(
        {
            str(k).removeprefix("certify_bound_")
            for r in part
            if r is not None
            for k in r
            if str(k).startswith("certify_bound_") and str(k)[14:] in FORM_MARKS
        }
    )
    for col, bound in (*MARKS, *((f"certified_{f}", f"certify_bound_{f}") for f in forms)):
        bounds = [
            to_float(r.get(bound)) if r is not None and r.get("state") == "complete" else math.nan
            for r in part
        ]
        for r, passed in zip(part, fixed_sequence(bounds, tol), strict=True):
            if r is not None:
                out[int(r["trial"])][col] = passed
    return out
