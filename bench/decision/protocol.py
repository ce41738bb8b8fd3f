"""The size decision's protocol: validation chooses, the test split certifies once.

1. **Order (validation only).** From the search's completed students, one configuration per
   architecture — the one with the best validation accuracy — and of those the *validation
   capacity frontier*: sorted by parameters, each more accurate on validation than every
   smaller one. Validation's guess is the smallest frontier student whose validation gap is
   within the tolerance; the candidates are up to ``n`` frontier students around it, two
   larger ones first (:data:`ABOVE`), ordered from the largest down (:func:`certify_order`).
   No test column is read: permuting the test labels cannot change the list or its order.
2. **Certify (test, once, fresh seeds).** Each candidate is trained again with seeds that no
   earlier phase used (:func:`certify_seeds`); the file a user would ship is the seed with the
   best *validation* accuracy, and its paired test gap to the ensemble gets Newcombe's
   interval. Its one-sided ``1 − alpha`` upper bound (``certify_bound``) is the test
   statistic of H₀: "this file's true gap exceeds the tolerance".
3. **Fixed-sequence testing** (:func:`fixed_sequence`, :func:`round_marks` once the round is
   complete): reject H₀ down the ordered list, each at level ``alpha``, stopping at the first
   candidate that does not pass. Because the order
   is fixed before the test split is read, the probability of certifying *any* student whose
   true gap exceeds the tolerance is at most ``alpha`` (family-wise), with no multiplicity
   correction (Westfall & Krishen 2001; Angelopoulos et al. 2021, "Learn then Test").
4. The scratch twins of the candidates (same fresh seeds, trained on hard labels) are tested
   the same way, in the same order: a certified scratch student of a size at most the
   recommended one means "distillation is not needed at this tolerance" (a second family of
   claims, also at level ``alpha``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from bench.fmt import to_float

__all__ = [
    "ABOVE",
    "CERTIFY_SEED_BASE",
    "certify_order",
    "certify_seeds",
    "fixed_sequence",
    "round_marks",
    "validation_frontier",
]

ABOVE = 2  # frontier students larger than validation's guess, certified first
CERTIFY_SEED_BASE = 1000  # round r uses seeds 1000·(r+1) + i: never a search seed (< 1000)


def certify_seeds(round_: int, n: int) -> list[int]:
    """The fresh training seeds of certification round ``round_`` (disjoint from the search's
    ``range(budget.seeds)`` and from every other round's)."""
    return [CERTIFY_SEED_BASE * (round_ + 1) + i for i in range(n)]


def validation_frontier(search: pd.DataFrame) -> pd.DataFrame:
    """One configuration per architecture (best validation accuracy; ties: the earlier
    trial), then those more accurate on validation than every smaller one, by size."""
    done = search[search["state"] == "complete"]
    if done.empty:
        return done
    best = (
        done.sort_values(["student_val_acc", "trial"], ascending=[False, True], kind="mergesort")
        .drop_duplicates(subset=["arch"], keep="first")
        .sort_values(["student_params", "student_val_acc"], ascending=[True, False])
    )
    keep = best["student_val_acc"] > best["student_val_acc"].cummax().shift(fill_value=-1.0)
    return best[keep]


def certify_order(search: pd.DataFrame, n: int, max_gap: float) -> pd.DataFrame:
    """The candidates to certify, in the order they are tested (largest first), chosen on
    validation columns only (``student_val_acc``, ``ensemble_val_acc``, ``student_params``)."""
    front = validation_frontier(search).reset_index(drop=True)
    if front.empty or n <= 0:
        return front.iloc[:0]
    val_gap = front["ensemble_val_acc"] - front["student_val_acc"]
    meets = [i for i, g in enumerate(val_gap) if g <= max_gap + 1e-14]
    guess = meets[0] if meets else len(front) - 1
    top = min(len(front) - 1, guess + ABOVE)
    low = max(0, top - n + 1)
    return front.iloc[low : top + 1].iloc[::-1].reset_index(drop=True)


def fixed_sequence(bounds: Sequence[float], max_gap: float) -> list[bool]:
    """Which hypotheses fixed-sequence testing rejects: ``bounds[k] <= max_gap`` for every
    k up to the first that fails (a missing bound — a failed candidate — fails)."""
    out: list[bool] = []
    going = True
    for b in bounds:
        going = going and b is not None and not math.isnan(b) and b <= max_gap + 1e-12
        out.append(going)
    return out


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
    for col, bound in MARKS:
        bounds = [
            to_float(r.get(bound)) if r is not None and r.get("state") == "complete" else math.nan
            for r in part
        ]
        for r, passed in zip(part, fixed_sequence(bounds, tol), strict=True):
            if r is not None:
                out[int(r["trial"])][col] = passed
    return out
