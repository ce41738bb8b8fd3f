"""Report tables: pandas method chains over the flat trial table."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

from bench import fmt
from bench.decision.recommend import candidates

__all__ = [
    "failed_table",
    "latency_table",
    "markdown_table",
    "pareto_table",
    "summary_table",
    "time_by_size",
    "trials_table",
]

TRIAL_COLUMNS = {
    "trial": "trial",
    "phase": "phase",
    "arch": "architecture",
    "temperature": "T",
    "alpha": "alpha",
    "n_seeds": "seeds",
    "student_params": "params",
    "param_ratio_inv": "1/param ratio",
    "student_flops": "FLOPs",
    "student_acc_pct": "student acc %",
    "gap_pp": "gap pp",
    "gap_high_pp": "gap CI high pp",
    "scratch_acc_pct": "scratch acc %",
    "kd_gain_pp": "KD gain pp",
    "agreement_pct": "agreement %",
    "kl_to_teacher": "KL(ens‖stud)",
    "latency_cpu_b1_p50_ms": "CPU b1 p50 ms",
    "speedup_cpu_b1": "speed-up b1",
    "train_time_s": "train s",
}


def trials_table(trials: pd.DataFrame, task: str) -> pd.DataFrame:
    """Completed students of a task, cheapest first, in report units (%, pp)."""
    return (
        candidates(trials, task)
        .assign(
            param_ratio_inv=lambda d: 1 / d["param_ratio"],
            student_acc_pct=lambda d: d["student_acc"] * 100,
            gap_pp=lambda d: d["acc_gap"] * 100,
            gap_high_pp=lambda d: d["acc_gap_ci_high"] * 100,
            scratch_acc_pct=lambda d: d["scratch_acc"] * 100,
            kd_gain_pp=lambda d: d["kd_gain"] * 100,
            agreement_pct=lambda d: d["agreement"] * 100,
        )
        .sort_values(["student_flops", "gap_pp"])
        .loc[:, list(TRIAL_COLUMNS)]
        .rename(columns=TRIAL_COLUMNS)
        .reset_index(drop=True)
    )


def summary_table(recs: dict[str, Any]) -> pd.DataFrame:
    """The first screen's table: per task the decision, its cost and its uncertainty."""
    rows: list[dict[str, Any]] = []
    for task, rec in recs.items():
        r = rec.chosen
        if r is None:
            rows.append({"task": task, "ship": "none meets the constraints"})
            continue
        c = rec.certification
        rows.append(
            {
                "task": task,
                "ship": r["arch"],
                "params": int(r["student_params"]),
                "of the ensemble": fmt.ratio(r.get("param_ratio")),
                "FLOPs": int(r["student_flops"]),
                "CPU b1 p50 ms": r.get("latency_cpu_b1_p50_ms", math.nan),
                "speed-up vs faster ensemble form": r.get("speedup_cpu_b1", math.nan),
                "certified at pp (alpha)": f"{fmt.tolerance(c.max_gap)} ({c.alpha:g})" if c else "",
                "file gap pp [95 %]": f"{fmt.pct(r.get('file_gap'))} "
                + fmt.interval(r.get("file_gap_ci_low"), r.get("file_gap_ci_high")),
                "certified bound pp": r.get("certify_bound", math.nan) * 100,
                "ensemble acc %": r["ensemble_acc"] * 100,
                "recipe gap pp [95 %]": f"{fmt.pct(r['acc_gap'])} "
                + fmt.interval(r["acc_gap_ci_low"], r["acc_gap_ci_high"]),
                "one more run pp": fmt.interval(r.get("acc_gap_pi_low"), r.get("acc_gap_pi_high")),
                "KD gain pp [95 %]": f"{fmt.pct(r['kd_gain'], signed=True)} "
                + fmt.interval(r["kd_gain_ci_low"], r["kd_gain_ci_high"], True),
                "seeds": int(r["n_seeds"]),
                "test examples": int(r["n_test"])
                if r.get("n_test") == r.get("n_test")
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _round_rows(trials: pd.DataFrame, task: str, round_: int) -> pd.DataFrame:
    """The candidates of certification round ``round_`` (not the duplicates), in rank order."""
    return trials[
        (trials["task"] == task)
        & (trials["phase"] == "certify")
        & (trials["certify_round"] == round_)
        & (trials["state"] != "duplicate")
    ].sort_values("certify_rank")


def certification_table(trials: pd.DataFrame, task: str, rec: Any) -> pd.DataFrame:
    """The decision's own data: the candidates of the certification round used, in the order
    validation fixed, each file's gap, interval and certified bound, whether fixed-sequence
    testing certified it, its scratch twin's bound, and the recommended row marked."""
    if rec.certification is None:
        return pd.DataFrame()
    part = _round_rows(trials, task, rec.certification.round)
    pick = int(rec.chosen["trial"]) if rec.chosen is not None else None

    def yes(v):
        return "yes" if v is True or v == 1 else "no"

    return pd.DataFrame(
        {
            "rank": part["certify_rank"].astype("Int64"),
            "recommended": ["◀ recommended" if int(t) == pick else "" for t in part["trial"]],
            "trial": part["trial"],
            "arch": part["arch"],
            "params": part["student_params"],
            "FLOPs": part["student_flops"],
            "file gap pp [95 %]": [
                f"{fmt.pct(g)} {fmt.interval(lo, hi)}"
                for g, lo, hi in zip(
                    part["file_gap"], part["file_gap_ci_low"], part["file_gap_ci_high"], strict=True
                )
            ],
            "certified bound pp": part["certify_bound"] * 100,
            "certified": [yes(v) for v in part["certified"]],
            "scratch bound pp": part["scratch_certify_bound"] * 100,
            "scratch certified": [yes(v) for v in part["scratch_certified"]],
            "recipe gap pp [95 %]": [
                f"{fmt.pct(g)} {fmt.interval(lo, hi)}"
                for g, lo, hi in zip(
                    part["acc_gap"], part["acc_gap_ci_low"], part["acc_gap_ci_high"], strict=True
                )
            ],
        }
    ).reset_index(drop=True)


def forms_table(trials: pd.DataFrame, task: str, rec: Any) -> pd.DataFrame:
    """Per candidate of the round used, its ``[ship] forms`` side by side (empty when the run
    certified fp32 alone): bound, certified, onnxruntime latency at batch 1, file size."""
    from bench.decision.recommend import by_form, ship_forms

    if rec.certification is None:
        return pd.DataFrame()
    part = _round_rows(trials, task, rec.certification.round)
    part = part[part["state"] == "complete"]
    if ship_forms(part) == ("fp32",):
        return pd.DataFrame()
    pairs = by_form(part, "latency_ort_cpu_b1_p50_ms").sort_values(
        ["certify_rank", "form_rank"], kind="mergesort"
    )
    pick = None if rec.chosen is None else (int(rec.chosen["trial"]), rec.chosen.get("form"))
    return pd.DataFrame(
        {
            "rank": pairs["certify_rank"].astype("Int64"),
            "arch": pairs["arch"],
            "params": pairs["student_params"],
            "form": pairs["form"],
            "recommended": [
                "◀ recommended" if (int(t), f) == pick else ""
                for t, f in zip(pairs["trial"], pairs["form"], strict=True)
            ],
            "file gap pp": pairs["file_gap"] * 100,
            "certified bound pp": pairs["certify_bound"] * 100,
            "certified": ["yes" if v is True or v == 1 else "no" for v in pairs["certified"]],
            "ORT b1 p50 ms": pairs["latency_ort_cpu_b1_p50_ms"],
            "file bytes": [
                row.get(f"file_bytes_{f}")
                for row, f in zip(pairs.to_dict("records"), pairs["form"], strict=True)
            ],
        }
    ).reset_index(drop=True)


def pareto_table(trials: pd.DataFrame, task: str, rec: Any) -> pd.DataFrame:
    """The Pareto set on (FLOPs, the recipe gap's upper bound), descriptive: test numbers of
    students validation chose, with the recommended (certified) row marked."""
    from bench.stats import pareto_mask

    c = candidates(trials, task)
    if c.empty:
        return pd.DataFrame()
    front = c[pareto_mask(c["student_flops"].to_numpy(), c["acc_gap_ci_high"].to_numpy())]
    pick = int(rec.chosen["trial"]) if rec.chosen is not None else None
    pick_phase = rec.chosen["phase"] if rec.chosen is not None else None
    return (
        front.sort_values("student_flops")
        .assign(
            recommended=lambda d: [
                "◀ recommended" if (t == pick and p == pick_phase) else ""
                for t, p in zip(d["trial"], d["phase"], strict=True)
            ],
            gap_pp=lambda d: d["acc_gap"] * 100,
            gap_bound_pp=lambda d: d["acc_gap_ci_high"] * 100,
            acc_pct=lambda d: d["student_acc"] * 100,
        )
        .loc[
            :,
            [
                "recommended",
                "trial",
                "phase",
                "arch",
                "student_params",
                "student_flops",
                "latency_cpu_b1_p50_ms",
                "acc_pct",
                "gap_pp",
                "gap_bound_pp",
                "n_seeds",
            ],
        ]
        .rename(
            columns={
                "student_params": "params",
                "student_flops": "FLOPs",
                "latency_cpu_b1_p50_ms": "CPU b1 p50 ms",
                "acc_pct": "acc %",
                "gap_pp": "gap pp",
                "gap_bound_pp": "gap upper bound pp",
                "n_seeds": "seeds",
            }
        )
        .reset_index(drop=True)
    )


def time_by_size(trials: pd.DataFrame, task: str) -> pd.DataFrame:
    """Where the training time went: trial wall time (``trial_time_s``; pruned and failed
    trials count the time they ran) summed by student size in decades of parameters, with
    each decade's share of the whole, per phase."""
    t = trials[(trials["task"] == task) & trials["trial_time_s"].notna()]
    t = t[t["student_params"].notna()]
    if t.empty:
        return pd.DataFrame()
    spent = t["trial_time_s"].astype(float)
    out = (
        t.assign(
            decade=(10 ** np.floor(np.log10(t["student_params"].astype(float).clip(lower=1)))),
            pruned=t["state"] == "pruned",
            search_s=spent.where(t["phase"] == "search", 0.0),
            certify_s=spent.where(t["phase"] == "certify", 0.0),
        )
        .groupby("decade")
        .agg(
            trials=("trial", "size"),
            pruned=("pruned", "sum"),
            search_s=("search_s", "sum"),
            certify_s=("certify_s", "sum"),
            total_s=("trial_time_s", "sum"),
        )
        .reset_index()
    )
    total = float(spent.sum())
    out.insert(
        0,
        "student params",
        [f"{fmt.count(d)}–{fmt.count(int(10 * d) - 1)}" for d in out.pop("decade")],
    )
    out["share %"] = (100 * out["total_s"] / total).round(1)
    return out.round({"search_s": 1, "certify_s": 1, "total_s": 1})


def failed_table(trials: pd.DataFrame, task: str) -> pd.DataFrame:
    return (
        trials.query("state != 'complete'")
        .loc[
            lambda d: d["task"] == task,
            ["trial", "phase", "state", "arch", "temperature", "alpha", "fail_reason"],
        ]
        .sort_values("trial")
        .reset_index(drop=True)
    )


def latency_table(trials: pd.DataFrame, task: str, rec_trial: int | None) -> pd.DataFrame:
    """Ensemble as a loop and fused, and the recommended (or smallest) student, p50 ms."""
    c = candidates(trials, task)
    if c.empty:
        return pd.DataFrame()
    pick = c[c["trial"] == rec_trial] if rec_trial is not None else c.nsmallest(1, "student_flops")
    r = (pick if len(pick) else c.nsmallest(1, "student_flops")).iloc[0]
    rows = []
    for label, prefix in (
        ("ensemble, Python loop over members", "ensemble_loop_latency"),
        ("ensemble, fused batched matmuls", "ensemble_fused_latency"),
        (
            f"student (trial {int(r['trial'])}, {r['arch']})",
            "latency",
        ),
    ):
        rows.append(
            {
                "model": label,
                "CPU b1 p50 ms": r[f"{prefix}_cpu_b1_p50_ms"],
                "CPU bN p50 ms": r[f"{prefix}_cpu_bN_p50_ms"],
                "GPU b1 p50 ms": r[f"{prefix}_gpu_b1_p50_ms"],
                "GPU bN p50 ms": r[f"{prefix}_gpu_bN_p50_ms"],
            }
        )
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(none)_\n"
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| "
        + " | ".join(
            fmt.cell(v, str(c)).replace("|", "\\|") for c, v in zip(frame.columns, row, strict=True)
        )
        + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([head, sep, *body]) + "\n"


def html_table(frame: pd.DataFrame, sortable: bool = True) -> str:
    if frame.empty:
        return "<p><em>(none)</em></p>"
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for c, v in zip(frame.columns, row, strict=True):
            sort_key = (
                ""
                if not isinstance(v, int | float) or (isinstance(v, float) and math.isnan(v))
                else f' data-v="{float(v)!r}"'
            )
            num = ' class="num"' if sort_key and not isinstance(v, bool) else ""
            cells.append(f"<td{num}{sort_key}>{html.escape(fmt.cell(v, str(c)))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
