"""The report's section on a specialist teacher (Hinton et al. 2015, §5): what the
specialists add, where, at what cost, and whether a distilled student keeps it."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench import fmt
from bench.decision.recommend import candidates
from bench.records import TaskEntry
from bench.report.document import Document

__all__ = ["specialists_section"]


# Long by design: the section's paragraphs and tables in reading order.
def specialists_section(
    doc: Document, trials: pd.DataFrame, entry: TaskEntry, spec: dict[str, Any]
) -> None:
    """A specialist teacher: what the specialists add, where, at what cost, and whether a
    distilled student keeps it (the capacity curve above has the three students)."""
    teacher = entry.teacher
    lat = entry.ensemble_latency
    gen_ms = lat.get("generalist_cpu_b1", {}).get("p50_ms", math.nan)
    sys_ms = lat.get("loop_cpu_b1", {}).get("p50_ms", math.nan)
    sizes = [len(s) for s in spec["class_sets"]]
    doc.heading(3, "Specialists: the generalist against generalist + specialists")
    doc.para(
        f"Generalist: one network ({teacher.arch}), test accuracy "
        f"{fmt.pct(spec['generalist_acc'])} %. Generalist + {len(sizes)} specialists (class "
        f"clusters of sizes {', '.join(map(str, sizes))} from K-means on the covariance of the "
        f"generalist's predictions; each specialist started from the generalist and trained on "
        f"half its classes, half dustbin, dustbin logit corrected), combined per example by "
        f"the KL problem over the specialists active for the generalist's top-{spec['top_n']} "
        f"classes: {fmt.pct(spec['system_acc'])} %. Difference "
        f"{fmt.pct((spec['system_acc'] - spec['generalist_acc']), signed=True)} pp, 95 % interval "
        f"[{fmt.pct(spec['system_gain_ci_low'], signed=True)}, {fmt.pct(spec['system_gain_ci_high'], signed=True)}] pp "
        f"(Newcombe's corrected paired interval on {fmt.count(spec['n_test'])} test examples)."
    )
    doc.para(
        f"Extra cost of the whole system: {fmt.count(spec['system_params'])} parameters against the "
        f"generalist's {fmt.count(spec['generalist_params'])} "
        f"({fmt.times(spec['system_params'] / max(spec['generalist_params'], 1))}); network FLOPs per "
        f"sample {fmt.count(spec['system_network_flops'])} against {fmt.count(spec['generalist_flops'])} "
        f"(every specialist run; the solver's own work comes on top); CPU batch-1 p50 latency "
        f"{fmt.ms(sys_ms)} against {fmt.ms(gen_ms)} (the system includes the batched KL solve)."
    )

    def breakdown(rows: list[dict[str, Any]], what: str) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    what: r["value"],
                    "test examples": r["n_test"],
                    "generalist %": round(r["generalist_acc"] * 100, 2),
                    "generalist + specialists %": round(r["system_acc"] * 100, 2),
                    "change pp": round((r["system_acc"] - r["generalist_acc"]) * 100, 2),
                    "wrong → right": r["changed_to_right"],
                    "right → wrong": r["changed_to_wrong"],
                }
                for r in rows
            ]
        )

    doc.para(
        "Test accuracy by the number of specialists whose classes include the true class (the "
        "shape of Hinton et al.'s Table 4; clusters are disjoint here, so 0 or 1):"
    )
    doc.table(breakdown(spec["by_covering"], "specialists covering the true class"))
    doc.para(
        "By the number of specialists that took part (their classes met the generalist's top-n):"
    )
    doc.table(breakdown(spec["by_active"], "active specialists"))
    doc.para("The clusters (specialist validation accuracy: own classes vs dustbin, corrected):")
    val = spec.get("specialist_val_acc", [])
    doc.table(
        pd.DataFrame(
            [
                {
                    "specialist": m,
                    "classes": ", ".join(names),
                    "val acc %": round(val[m] * 100, 2) if m < len(val) else None,
                }
                for m, names in enumerate(spec["class_names"])
            ]
        )
    )
    doc.heading(3, "Distilled back: does the student keep the specialists' gain?")
    c = candidates(trials)
    if c.empty or "specialist_gain" not in c or c["specialist_gain"].isna().all():
        doc.para("No completed student to compare.")
        return
    c = c.sort_values(["student_params", "phase"])
    doc.table(
        pd.DataFrame(
            {
                "trial": c["trial"].astype(int),
                "phase": c["phase"],
                "arch": c["arch"],
                "params": c["student_params"].astype(int),
                "T": c["temperature"].round(2),
                "alpha": c["alpha"].round(2),
                "seeds": c["n_seeds"].astype(int),
                "specialist-taught %": (c["student_acc"] * 100).round(2),
                "generalist-taught %": (c["generalist_taught_acc"] * 100).round(2),
                "scratch %": (c["scratch_acc"] * 100).round(2),
                "specialist gain pp [95 %]": [
                    f"{fmt.pct(g, signed=True)} [{fmt.pct(lo, signed=True)}, {fmt.pct(hi, signed=True)}]"
                    for g, lo, hi in zip(
                        c["specialist_gain"],
                        c["specialist_gain_ci_low"],
                        c["specialist_gain_ci_high"],
                        strict=True,
                    )
                ],
            }
        )
    )
    kept = c[c["specialist_gain_ci_low"] > 0]
    lost = c[c["specialist_gain_ci_high"] < 0]
    if not kept.empty:
        verdict = (
            f"{len(kept)} of {len(c)} students keep a gain over the generalist-taught student "
            f"whose 95 % interval excludes 0; the smallest has {fmt.count(kept['student_params'].min())} "
            "parameters."
        )
    else:
        verdict = (
            f"No student's gain over the generalist-taught student has a 95 % interval above 0 "
            f"({len(c)} students, mean gain {fmt.pct(c['specialist_gain'].mean(), signed=True)} pp): at these "
            "sizes the specialists' gain does not survive distillation measurably."
        )
    if not lost.empty:
        verdict += f" {len(lost)} are significantly worse than with the generalist alone."
    doc.para(verdict)
