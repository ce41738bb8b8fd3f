"""The report's section on a transfer set ([transfer], Hinton et al. 2015 §2.1 and §6): the
paper's rows for this run, errors overall and on the omitted classes before and after the bias
fix, and scratch against distilled at the transfer fraction."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench import fmt
from bench.decision.recommend import candidates
from bench.records import TaskEntry
from bench.report.document import Document
from bench.stats import share

__all__ = ["transfer_section"]

PAPER = (
    "For reference, Hinton et al. (2015) on MNIST: a 2×1200 dropout net made 67 test errors, "
    "a 2×800 net from scratch 146, the same 2×800 net distilled at T = 20 74 (about 90 % of "
    "the gap closed). With every 3 omitted from the transfer set the distilled net made 206 "
    "errors, 133 of them on the 1,010 test 3s; with its 3-bias raised by 3.5, 109 errors, 14 "
    "on 3s. On 3 % of a speech training set, soft targets kept 57.0 % frame accuracy where "
    "hard targets gave 44.5 % (all the data: 58.9 %)."
)


def _interval(m: float, lo: float, hi: float) -> str:
    if math.isnan(m):
        return fmt.MISSING
    if math.isnan(lo) or math.isnan(hi):
        return fmt.pct(m)
    return f"{fmt.pct(m)} [{fmt.pct(lo)}, {fmt.pct(hi)}]"


def _errors(n: Any, acc: Any) -> str:
    """Test errors (mean over seeds) of ``n`` examples at accuracy ``acc``."""
    value = float(n) * (1 - float(acc)) if n == n and acc == acc else math.nan
    return fmt.MISSING if math.isnan(value) else f"{value:,.1f}"


def _intro(entry: TaskEntry) -> str:
    t = entry.transfer
    train = entry.sizes.get("train", 0)
    omitted = t.get("omit_classes") or []
    parts = [
        f"The students learned from {fmt.count(t.get('labelled_rows', 0))} labelled rows "
        f"(fraction {t.get('fraction', 1.0):g} of each class of the {fmt.count(train)} training rows, "
        "stratified and seeded)"
    ]
    if omitted:
        parts.append(f"without class(es) {', '.join(map(repr, omitted))}")
    if t.get("unlabeled_rows"):
        parts.append(
            f"plus {fmt.count(t['unlabeled_rows'])} unlabeled rows that only the teacher labels (soft "
            "term only)"
        )
    return (
        " ".join(parts)
        + f"; the teacher trained on all {fmt.count(train)}. Scratch twins learned from "
        "the labelled rows alone; the full-data scratch baseline from the whole training split."
    )


def transfer_section(doc: Document, trials: pd.DataFrame, entry: TaskEntry) -> None:
    """The paper's rows for this run's students (cheapest first)."""
    doc.heading(3, "Transfer set: what the students learned from")
    doc.para(_intro(entry))
    c = candidates(trials)
    if c.empty:
        doc.para("No completed student to compare.")
        return
    c = c.sort_values(["student_params", "phase"])
    omitted = bool(entry.transfer.get("omit_classes"))
    rows = []
    for _, r in c.iterrows():
        n, n_om = r["n_test"], r["n_test_omitted"]
        row: dict[str, Any] = {
            "trial": int(r["trial"]),
            "phase": r["phase"],
            "arch": r["arch"],
            "params": int(r["student_params"]),
            "seeds": int(r["n_seeds"]),
            "distilled errors": _errors(n, r["student_acc"]),
            "scratch errors": _errors(n, r["scratch_acc"]),
            "full-data scratch errors": _errors(n, r["full_scratch_acc"]),
            "full-data gain kept %": fmt.pct(
                share(r["student_acc"] - r["scratch_acc"], r["full_scratch_acc"] - r["scratch_acc"])
            ),
            "gap closed % [95 %]": _interval(
                r["gap_closed"], r["gap_closed_ci_low"], r["gap_closed_ci_high"]
            ),
        }
        if omitted:
            row |= {
                "errors on omitted": _errors(n_om, r["omitted_acc"]),
                "omitted acc % [95 %]": _interval(
                    r["omitted_acc"], r["omitted_acc_ci_low"], r["omitted_acc_ci_high"]
                ),
                "scratch omitted acc %": fmt.pct(r["scratch_omitted_acc"]),
                "bias shift": fmt.number(r["bias_shift"], 3),
                "errors after the bias fix": _errors(n, r["student_acc_corrected"]),
                "on omitted after the fix": _errors(n_om, r["omitted_acc_corrected"]),
                "omitted acc after the fix % [95 %]": _interval(
                    r["omitted_acc_corrected"],
                    r["omitted_acc_corrected_ci_low"],
                    r["omitted_acc_corrected_ci_high"],
                ),
            }
        rows.append(row)
    n_test, n_om = int(c["n_test"].iloc[0]), int(c["n_test_omitted"].iloc[0])
    what = f"Test errors (mean over seeds) of {fmt.count(n_test)} test examples"
    if omitted:
        what += (
            f", {fmt.count(n_om)} of them of the omitted class(es); after the bias fix: each student's "
            "omitted-class logits raised by the shift that maximises its validation accuracy"
        )
    doc.para(
        what + ". Intervals: 95 %, Student-t over seeds (gap closed: bootstrap). Gap closed: "
        "(distilled − scratch) / (ensemble − scratch); full-data gain kept: (distilled − "
        "scratch) / (full-data scratch − scratch), what soft targets on the transfer set keep "
        "of what hard targets on all the data give."
    )
    doc.table(pd.DataFrame(rows), sortable=True)
    doc.para(PAPER)
