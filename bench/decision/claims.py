"""Every sentence kdbench prints about a decision: the CLI's recommendation, ``recommend
--json``'s ``verdict`` and notes, the report's first screen, the model card's claim, the
progress line of certification, and ``compare``'s line per run.

The rule (:mod:`bench.decision.recommend`) returns facts; this module words them, and no
other module words a decision (``tests/bench_tests/decision/test_claims.py`` checks it).
Tolerances arrive as fractions and are printed in percentage points.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from bench import fmt
from bench.decision.law import BELOW
from bench.decision.recommend import Comparison, Constraints, Recommendation
from bench.durable.jsonsafe import json_safe

__all__ = [
    "FORMS_NOTE",
    "MIN_SEEDS",
    "MIN_TEST",
    "basis",
    "card_claim",
    "compare_line",
    "describe",
    "describe_student",
    "ensemble_vs_best",
    "file_gain",
    "headline",
    "notes",
    "progress_certified",
    "report_decision",
    "shortfall",
    "suggestion",
    "text",
    "to_dict",
    "to_json",
    "verdict",
    "warnings",
    "warnings_for",
]

MIN_SEEDS = 3
MIN_TEST = 1000


pp = fmt.tolerance  # a tolerance in percentage points as the user typed it (0.005 → 0.5)


def describe(c: Constraints) -> str:
    """The request in words: ``max gap 0.50 pp vs ensemble, max CPU latency …``."""
    parts = []
    if c.max_gap is not None:
        parts.append(f"max gap {fmt.pct(c.max_gap)} pp")
    if c.min_relative_acc is not None:
        parts.append(f"at least {fmt.tolerance(c.min_relative_acc)} % of the reference's accuracy")
    text = " and ".join(parts) + f" vs {c.against}"
    if c.max_latency_ms is not None:
        text += f", max {c.device.upper()} latency {c.max_latency_ms:g} ms at batch {c.batch}"
    for value, label in ((c.max_flops, "FLOPs"), (c.max_params, "params")):
        if value is not None:
            text += f", max {value:g} {label}"
    return text


FORMS_NOTE = (
    "Each [ship] form of each candidate's file, built with onnxruntime's tools and run in "
    "onnxruntime: its own paired gap bound to the ensemble on the test split (its own fixed "
    "sequence in the same validation order, at the round's level split over the forms), its "
    "latency at batch 1 in the run's interleaved pass and its file size. A form whose bound "
    "breaks the tolerance is not certified, whatever its fp32 file did."
)


def describe_student(r: dict[str, Any], cost_column: str) -> str:
    """One student as the CLI and the report state it: the shipped file's claim first, then
    the recipe's (mean over the fresh seeds, with its interval and a prediction interval for
    one more training run)."""
    parts = [
        f"{r['arch']}, T {fmt.fixed(r['temperature'], 2)}, alpha {fmt.fixed(r['alpha'], 2)} "
        f"(trial {int(r['trial'])}, {r['phase']}, {int(r['n_seeds'])} seed(s))",
        f"params {fmt.count(r['student_params'])} ({fmt.ratio(r.get('param_ratio'))} of the ensemble)",
        f"FLOPs {fmt.count(r['student_flops'])}",
    ]
    form = str(r.get("form") or "fp32")
    if form != "fp32" and not fmt.is_missing(r.get("file_gap")):
        parts.append(
            f"the file's {form} form (seed {int(r['file_seed'])}, in onnxruntime): accuracy "
            f"{fmt.pct(r['file_acc'])} %, gap {fmt.pct(r['file_gap'])} pp, 95 % interval "
            f"[{fmt.pct(r['file_gap_ci_low'])}, {fmt.pct(r['file_gap_ci_high'])}] pp, certified "
            f"bound {fmt.pct(r['certify_bound'])} pp; onnxruntime b1 p50 "
            f"{fmt.ms(r.get(f'latency_ort_cpu_{form}_b1_p50_ms'))}, "
            f"{fmt.count(r.get(f'file_bytes_{form}'))} bytes"
        )
    elif not fmt.is_missing(r.get("file_gap")):
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


def warnings_for(row: dict[str, Any] | None) -> list[str]:
    """What a careful practitioner would say about a student."""
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
                f"it rests on {fmt.count(n_test)} test examples, fewer than about {fmt.count(MIN_TEST)}: its "
                "interval is wide; more data (or a larger test_fraction) narrows it."
            )
        if not fmt.is_missing(row.get("param_ratio")) and float(row["param_ratio"]) > 1:
            out.append(
                f"this 'student' has {fmt.number(row['param_ratio'], 2)}x the ensemble's parameters: "
                "it is not a compression."
            )
    return out


def warnings(rec: Recommendation) -> list[str]:
    """The warnings about a recommendation (about the student shown: chosen, else closest)."""
    if rec.outcome in ("no_trials", "no_round"):
        return []
    out = warnings_for(rec.chosen or rec.closest)
    e = rec.ensemble_vs_best
    if e is not None and e.direction == "worse":
        out.append(
            f"the ensemble is less accurate than its best member on test ({_estimate(e)}): "
            "distilling that one member may teach better."
        )
    return out


def _hint(rec: Recommendation) -> str:
    return f"kdbench certify RUN --max-gap {pp(rec.want)}"


def suggestion(rec: Recommendation) -> str:
    """The command that would certify what was asked, when this run did not."""
    if rec.outcome == "no_round":
        return f"To certify: {_hint(rec)}"
    if rec.outcome == "not_at_tolerance" or (rec.outcome != "no_trials" and rec.tighter):
        return f"To certify at {pp(rec.want)} pp on fresh seeds: {_hint(rec)}"
    return ""


def basis(rec: Recommendation) -> str:
    """What the decision rests on."""
    if rec.outcome == "no_trials":
        return "nothing to decide on"
    if rec.outcome == "no_round":
        return "no certification round in this run"
    if rec.outcome == "not_at_tolerance":
        return f"certified only at {', '.join(pp(g) for g in rec.rounds_done)} pp"
    c = rec.certification
    assert c is not None
    against = rec.constraints.against.replace("-", " ")
    forms = 1 + len(c.forms)  # fp32 and the [ship] forms beside it, one sequence each
    per_form = (
        f", once for each of the {forms} deployed forms (each at level {fmt.level(c.alpha)})"
        if forms > 1
        else ""
    )
    return (
        f"certification round {c.round}: the shipped file's one-sided "
        f"{fmt.tolerance(1 - c.alpha)} % gap bound to the {against} (Tango's score bound) "
        f"within {pp(c.max_gap)} pp, fixed-sequence testing down {c.candidates} "
        f"validation-ordered candidates{per_form} on {c.seeds} fresh seeds (family-wise error "
        f"<= {fmt.level(c.alpha * forms)}, this round's share of the run's "
        f"{fmt.level(c.budget)})"
    )


def notes(rec: Recommendation) -> list[str]:
    """What the reader should know besides the decision itself."""
    if rec.outcome == "no_trials":
        return ["No completed trial: nothing to recommend."]
    if rec.outcome == "no_round":
        return ["This run certified nothing ([certify] candidates = 0, or it did not finish)."]
    if rec.outcome == "not_at_tolerance":
        done_at = ", ".join(pp(g) for g in rec.rounds_done)
        return [
            f"No student is certified at {pp(rec.want)} pp: this run certified at {done_at} pp."
        ]
    c = rec.certification
    assert c is not None
    out: list[str] = []
    if rec.tighter:
        out.append(
            f"Certified at {pp(c.max_gap)} pp, tighter than the {pp(rec.want)} pp asked: a "
            f"smaller student may be certified at {pp(rec.want)} pp."
        )
    cons = rec.constraints
    if cons.max_latency_ms is not None and not rec.latency_measured:
        out.append(
            f"{cons.latency_column()} was not measured in this run (no {cons.device.upper()}); "
            "the latency constraint cannot be met."
        )
    if len(rec.latency_hosts) > 1:
        out.append(
            f"The certified students were timed on {len(rec.latency_hosts)} hosts "
            f"({', '.join(rec.latency_hosts)}; column latency_host): their latencies are not "
            "comparable with each other, though each speed-up is (one pass, one host)."
        )
    if rec.outcome == "over_cost":
        out.append(
            f"{rec.n_over_cost} student(s) are certified but none meets the cost limits; the "
            "closest is the cheapest of them."
        )
    if rec.outcome == "none_certified" and (s := shortfall(rec)):
        out.append(s)
    return out


def verdict(rec: Recommendation) -> str:
    """Is distillation needed at this tolerance? Three ways, with simultaneous bounds
    (:class:`bench.decision.recommend.DistillationVerdict`)."""
    v = rec.verdict
    if v is None or rec.chosen is None:
        return ""
    gap, size = pp(v.tolerance), fmt.count(rec.chosen["student_params"])
    simultaneous = (
        f"one-sided bounds at {fmt.level(v.level)} each, simultaneous over the round's "
        f"{v.family} scratch twins: P(a wrong verdict) <= {fmt.level(v.level * v.family)}"
    )
    if v.kind == "not_needed" and v.witness is not None:
        w = v.witness
        return (
            f"Distillation is not needed at {gap} pp: a student of {fmt.count(w.params)} params "
            f"trained from scratch on hard labels meets it too (upper bound "
            f"{fmt.pct(w.high)} pp; {simultaneous})."
        )
    if v.kind == "needed":
        lows = sorted(b.low for b in v.twins)
        return (
            f"Distillation is needed at {gap} pp: none of the {len(v.twins)} scratch students of "
            f"at most {size} params meets it (lower bounds {fmt.pct(lows[0])} to "
            f"{fmt.pct(lows[-1])} pp, all above the tolerance; {simultaneous})."
        )
    if not v.twins:
        return (
            f"Whether distillation is needed at {gap} pp cannot be told: no scratch twin of at "
            f"most {size} params was certified or bounded."
        )
    best = min(v.twins, key=lambda b: b.high)
    worst = min(v.twins, key=lambda b: b.low)
    return (
        f"Whether distillation is needed at {gap} pp cannot be told at this test size: no "
        f"scratch student of at most {size} params is shown to meet it (smallest upper bound "
        f"{fmt.pct(best.high)} pp, {fmt.count(best.params)} params) nor all to miss it "
        f"(lowest lower bound {fmt.pct(worst.low)} pp; {simultaneous})."
    )


def _three_way(c: Comparison, subject: str) -> str:
    """How ``subject`` compares, from a paired interval: more accurate, less accurate, or not
    to be told apart at this test size."""
    return {
        "better": f"{subject} is more accurate than",
        "worse": f"{subject} is less accurate than",
        "cannot tell": f"at this test size {subject} cannot be told from",
    }[c.direction]


def _estimate(c: Comparison) -> str:
    """``+0.30 pp, 95 % interval [-0.05, +0.67]``."""
    return (
        f"{fmt.pct(c.estimate, signed=True)} pp, {fmt.tolerance(1 - c.alpha)} % interval "
        f"[{fmt.pct(c.low, signed=True)}, {fmt.pct(c.high, signed=True)}]"
    )


def file_gain(rec: Recommendation) -> str:
    """The shipped file against its own scratch twin, three ways."""
    g = rec.file_gain
    if g is None:
        return ""
    return (
        f"The shipped file's gain over its own scratch twin: {_estimate(g)} on "
        f"{fmt.count(g.n)} paired test examples: {_three_way(g, 'it')} that twin."
    )


def ensemble_vs_best(rec: Recommendation) -> str:
    """The ensemble against its best single member (chosen on validation), three ways."""
    e = rec.ensemble_vs_best
    if e is None:
        return ""
    return (
        f"Teacher: {_three_way(e, 'the ensemble')} its best member ({_estimate(e)}, paired on "
        f"{fmt.count(e.n)} test examples)."
    )


def shortfall(rec: Recommendation) -> str:
    """Why nothing was certified, in one line."""
    s, c = rec.shortfall, rec.certification
    if s is None or c is None:
        return ""
    head = (
        f"Nothing is certified at {pp(c.max_gap)} pp because the first candidate, "
        f"{s.row['arch']} ({fmt.count(s.row['student_params'])} params), has a bound of "
        f"{fmt.pct(s.bound)} pp (observed gap {fmt.pct(s.gap)} pp on {fmt.count(s.n_test)} test "
        "examples)"
    )
    if s.n_needed is None:
        return (
            head
            + ": its observed gap exceeds the tolerance, so no test split certifies it; a larger student or a looser tolerance would."
        )
    return head + (
        f"; at that gap and disagreement rate the tolerance takes about "
        f"{fmt.count(s.n_needed)} test examples, or a larger student."
    )


def _size(v: float, trained: list[float], beyond: str = "out of reach") -> str:
    """A size the law reports: a count, or where it runs off the scanned range."""
    if not math.isfinite(v):
        return beyond
    if v <= trained[0] / BELOW * 1.0001:
        return f"≤ {fmt.count(trained[0] / BELOW)}"
    return fmt.count(v)


def capacity_law(rec: Recommendation) -> list[str]:
    """What the capacity law says (validation only), each line labelled so; nothing of a
    prediction that this task's certification contradicts, beyond saying so."""
    return law_lines(rec.law, rec.law_contradicted)


def law_lines(law: dict[str, Any] | None, c: dict[str, Any] | None = None) -> list[str]:
    """The capacity law's facts (:func:`bench.decision.law.facts`) in words; ``c``: the
    certified student that contradicts its prediction, if any."""
    if law is None:
        return []
    unit = "params" if law["axis"] == "params" else "FLOPs"
    head = (
        f"Capacity law (validation, {law['n_points']} trials, {len(law['shapes'])} shape(s)): "
        f"error = {fmt.pct(law['floor_val_error'])} % + a·N^-{law['exponent']:.2f} "
        f"(scatter beyond the seeds {fmt.pct(law['scatter'])} pp)"
    )
    if c is not None:
        return [
            head + f"; its predicted size for {pp(c['max_gap'])} pp is not stated: "
            f"certification shipped {c['arch']} ({fmt.count(c['size'])} {unit}) at that "
            "tolerance, below the law's 90 % interval, so the law is wrong for this run's "
            "small students."
        ]
    p = law["prediction"]
    lo, hi = p["interval"]
    trained = p["trained_range"]
    if not math.isfinite(p["size"]):
        said = (
            f"it levels off {pp(p['floor_val_error'] - p['target_val_error'] + law['max_gap'])}"
            f" pp from the ensemble, so a validation gap within {pp(law['max_gap'])} pp is out "
            f"of reach for this family ({fmt.pct(1 - p['reach'])} % of refits agree)"
        )
    else:
        said = (
            f"a validation gap within {pp(law['max_gap'])} pp is predicted from "
            f"{_size(p['size'], trained)} {unit} ({p['shape']}; 90 % interval "
            f"{_size(lo, trained)}–{_size(hi, trained)}"
            + (
                f", beyond the trained {fmt.count(trained[0])}–{fmt.count(trained[1])}"
                if p["extrapolated"]
                else ""
            )
            + ")"
        )
    lines = [
        head + "; " + said + ". A prediction, not a certificate: a decision is certification's."
    ]
    x = law.get("crossing")
    if x is not None:
        lo, hi = x["interval"]
        side, other = ("below", "above") if x["helps_below"] else ("above", "below")
        if math.isfinite(x["size"]):
            lines.append(
                f"Distillation vs scratch (validation laws): distillation helps {side} about "
                f"{fmt.count(x['size'])} {unit} and not {other} it (90 % interval "
                f"{_size(lo, trained)}–{_size(hi, trained, f'beyond {fmt.count(trained[1] * 4)}')}"
                + (
                    f"; outside the trained {fmt.count(trained[0])}–{fmt.count(trained[1])}, "
                    "an extrapolation"
                    if not trained[0] <= x["size"] <= trained[1]
                    else ""
                )
                + ")."
            )
        else:
            lines.append(
                "Distillation vs scratch (validation laws): "
                + ("distillation helps" if x["helps_below"] else "scratch training is as good")
                + f" at every size from {fmt.count(trained[0] / BELOW)} to "
                f"{fmt.count(trained[1] * 4)} {unit}."
            )
    return lines


def holdout_lines(h: dict[str, Any] | None) -> list[str]:
    """The held-out check (:meth:`bench.decision.law.Holdout.as_dict`) in words."""
    if h is None:
        return ["Held-out check: too few distinct sizes to fit on two-thirds and score the rest."]
    return [
        f"Held-out check: fitted on the sizes up to {fmt.count(h['fit_sizes_up_to'])}, the "
        f"law's 90 % band covers {h['covered']} of the {h['held_out']} larger trials' "
        f"validation errors (median error of the prediction {fmt.pct(h['median_abs_error'])} pp)."
    ] + [
        f"  trial {p['trial']}: {fmt.count(p['size'])}: measured {fmt.pct(p['measured'])} %, "
        f"predicted {fmt.pct(p['predicted'])} % [{fmt.pct(p['band'][0])}, {fmt.pct(p['band'][1])}]"
        for p in h["points"]
    ]


def text(rec: Recommendation) -> str:
    """The recommendation as the CLI prints it."""
    lines = [f"[{rec.task}] {describe(rec.constraints)}"]
    c = rec.certification
    if c is not None:
        lines.append(
            f"Certified at {pp(c.max_gap)} pp (level {fmt.level(c.alpha)}, {c.seeds} fresh "
            f"seeds {c.seed_list}): {c.certified} of {c.candidates} candidates"
            + "".join(f"; {f} form: {n} of {c.candidates}" for f, n in c.forms.items())
            + "."
        )
    if rec.chosen is not None:
        lines.append("Recommended student: " + describe_student(rec.chosen, rec.cost_column))
    else:
        lines.append("No certified student meets the constraints.")
        if rec.closest is not None:
            lines.append("Closest: " + describe_student(rec.closest, rec.cost_column))
    lines += [s for s in (verdict(rec), file_gain(rec), ensemble_vs_best(rec)) if s]
    lines += capacity_law(rec)
    lines.append(f"Decided by: {basis(rec)}.")
    if s := suggestion(rec):
        lines.append(s)
    lines += [f"WARNING: {w}" for w in warnings(rec)]
    lines += notes(rec)
    return "\n".join(lines)


def _public(v: Any) -> Any:
    """``v`` without its private (``_``-prefixed) keys, at every depth."""
    if isinstance(v, dict):
        return {k: _public(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, list | tuple):
        return [_public(x) for x in v]
    return v


def to_dict(rec: Recommendation) -> dict[str, Any]:
    """``recommend --json``: the facts and their sentences, strict-JSON-safe (NaN → null)."""
    data = asdict(rec)
    data |= {
        "capacity_law_text": capacity_law(rec),
        "gap_basis": basis(rec),
        "verdict": verdict(rec),
        "file_gain_text": file_gain(rec),
        "ensemble_vs_best_text": ensemble_vs_best(rec),
        "shortfall_text": shortfall(rec),
        "notes": notes(rec),
        "warnings": warnings(rec),
        "suggest": suggestion(rec),
    }
    out: dict[str, Any] = json_safe(_public(data))
    return out


def to_json(rec: Recommendation) -> str:
    return json.dumps(to_dict(rec), indent=2, allow_nan=False)


def report_decision(rec: Recommendation) -> str:
    """The report's first-screen sentence: what to ship, at which certified tolerance and
    level, its cost, the file's and the recipe's intervals, and whether distillation was
    needed."""
    c = rec.certification
    certified = (
        f"Certified at {pp(c.max_gap)} pp at level {fmt.level(c.alpha)}"
        + (f" per form ({1 + len(c.forms)} forms)" if c.forms else "")
        + f" (this round's share of the run's family-wise error {fmt.level(c.budget)}) on {c.seeds} fresh seeds ({', '.join(map(str, c.seed_list))}): {c.certified} of "
        f"{c.candidates} validation-ordered candidates. "
        if c is not None
        else ""
    )
    v = " ".join(s for s in (verdict(rec), file_gain(rec)) if s)
    if rec.chosen is None:
        out = certified + f"No certified student meets {describe(rec.constraints)}."
        near = rec.closest
        if near is not None and not fmt.is_missing(near.get("certify_bound")):
            out += (
                f" Closest: {near['arch']} ({fmt.count(near['student_params'])} params), its file's "
                f"certified bound {fmt.pct(near['certify_bound'])} pp."
            )
        if s := shortfall(rec):
            out += " " + s
        if s := suggestion(rec):
            out += " " + s + "."
        return out + (" " + v if v else "")
    r = rec.chosen
    return (
        certified + f"Ship {r['arch']} (trial {int(r['trial'])}, seed {int(r['file_seed'])}; T "
        f"{fmt.fixed(r['temperature'], 2)}, alpha {fmt.fixed(r['alpha'], 2)}). Cost: {fmt.count(r['student_params'])} "
        f"parameters ({fmt.ratio(r.get('param_ratio'))} of the ensemble), "
        f"{fmt.count(r['student_flops'])} FLOPs per sample, CPU latency "
        f"{fmt.ms(r.get('latency_cpu_b1_p50_ms'))} at batch 1 — "
        f"{fmt.number(r.get('speedup_cpu_b1'), 2)}× faster than the faster ensemble form. "
        f"The file: accuracy {fmt.pct(r['file_acc'])} % against the ensemble's "
        f"{fmt.pct(r['ensemble_acc'])} %, gap {fmt.pct(r['file_gap'])} pp, 95 % interval "
        f"[{fmt.pct(r['file_gap_ci_low'])}, {fmt.pct(r['file_gap_ci_high'])}] pp (certified "
        f"bound {fmt.pct(r['certify_bound'])} pp). The recipe over {int(r['n_seeds'])} seeds: gap "
        f"{fmt.pct(r['acc_gap'])} pp [{fmt.pct(r['acc_gap_ci_low'])}, "
        f"{fmt.pct(r['acc_gap_ci_high'])}]; one more training run: "
        f"[{fmt.pct(r.get('acc_gap_pi_low'))}, {fmt.pct(r.get('acc_gap_pi_high'))}] pp; "
        f"{fmt.pct(r['kd_gain'], signed=True)} pp over the same student trained without "
        f"distillation [{fmt.pct(r['kd_gain_ci_low'], signed=True)}, "
        f"{fmt.pct(r['kd_gain_ci_high'], signed=True)}]. {v} Measured on "
        f"{fmt.count(r['n_test'])} test examples. `kdbench export` writes this file."
    )


VERDICT_WORDS = {
    "not_needed": "not needed",
    "needed": "needed",
    "inconclusive": "cannot tell",
}


def headline(rec: Recommendation) -> list[tuple[str, str, str]]:
    """The report's first screen, as a few large figures: (label, value, the small print).
    What to ship, its size as a fraction of the teacher, its speed-up, the certified bound
    against the tolerance, and whether distillation was needed; when nothing is certified,
    that and why."""
    c = rec.certification
    if rec.chosen is None:
        why = shortfall(rec) or (notes(rec) or [""])[0]
        return [("No certified student", "none", describe(rec.constraints)), ("Why", "", why)]
    r = rec.chosen
    assert c is not None
    figures = [
        ("Ship", str(r["arch"]), f"trial {int(r['trial'])}, seed {int(r['file_seed'])}"),
        (
            "Size",
            f"{fmt.ratio(r.get('param_ratio'))} of the teacher",
            f"{fmt.count(r['student_params'])} parameters",
        ),
        (
            "Speed-up",
            f"{fmt.number(r.get('speedup_cpu_b1'), 2)}× faster",
            "CPU, batch 1, against the faster ensemble form",
        ),
        (
            "Certified gap",
            f"≤ {fmt.pct(r['certify_bound'])} pp",
            f"tolerance {pp(c.max_gap)} pp; one-sided {fmt.tolerance(1 - c.alpha)} % bound",
        ),
    ]
    if rec.verdict is not None:
        figures.append(
            (
                "Distillation",
                VERDICT_WORDS[rec.verdict.kind],
                f"against scratch students of at most {fmt.count(r['student_params'])} params",
            )
        )
    return figures


def _true(v: object) -> bool:
    """A nullable boolean cell: NA (an older table's missing column) is not true."""
    return not fmt.is_missing(v) and bool(v)


def card_claim(row: dict[str, Any]) -> list[str]:
    """The model card's "The claim" lines for the exported file's row: the bound it passed,
    and the guarantee of the procedure that certified it (a property of the procedure over
    runs, not a probability about this one file)."""
    gap = pp(float(row["certify_max_gap"]))
    bound = fmt.pct(row["certify_bound"], signed=True)
    level = float(row["certify_alpha"])
    listed = row.get("ship_forms")
    forms = len(str(listed).split(",")) if isinstance(listed, str) else 1
    share = level * forms  # each form's sequence at level / forms
    budget = share * 2 ** (int(row.get("certify_round") or 0) + 1)
    form = str(row.get("form") or "fp32")
    procedure = (
        "The procedure (candidates ordered on validation, fresh seeds, the test split read "
        "once per candidate, fixed-sequence testing"
        + (f" once per deployed form ({listed})" if forms > 1 else "")
        + ", alpha shared across the run's rounds) certifies a student"
        + (" or form" if forms > 1 else "")
        + " whose true gap exceeds its tolerance in at most "
        f"{fmt.level(budget * 100)} % of runs (this round's share: "
        f"{fmt.level(share * 100)} %), for a tolerance set before the test split was read."
    )
    what = "this file's" if form == "fp32" else f"this file's {form} form's (`student.onnx`)"
    lines = [
        (
            f"- **Certified at {gap} pp**: {what} one-sided "
            f"{fmt.tolerance(1 - level)} % upper bound on its gap to the ensemble is {bound} "
            f"pp (Tango's score bound). {procedure}"
            if _true(row.get("certified"))
            else f"- **Not certified** at {gap} pp (one-sided bound {bound} pp): exported on "
            "request."
        )
    ]
    if _true(row.get("certified_best_member")):
        lines.append(
            f"- **Certified against the best member** (chosen on validation; test accuracy "
            f"{fmt.pct(row['best_member_acc'])} %): one-sided bound "
            f"{fmt.pct(row['certify_bound_best_member'], signed=True)} pp within {gap} pp, "
            "paired on the same test examples, by the same procedure."
        )
    return lines


def progress_certified(done: int, total: int) -> str:
    """The certification progress count: candidates tested so far (which are certified is
    known when the round ends: fixed-sequence testing needs every earlier rank)."""
    return f"{done}/{total} candidates tested"


def compare_line(task: str, label: str, rec: Recommendation | None) -> str:
    """``compare``'s line for one run's recommendation of ``task``."""
    if rec is None:
        return f"[{task}] {label}: task not in run"
    if rec.chosen is None:
        return f"[{task}] {label}: no student meets {describe(rec.constraints)}"
    r = rec.chosen
    return (
        f"[{task}] {label}: {r['arch']}, {fmt.count(r['student_params'])} params, acc "
        f"{fmt.pct(r['student_acc'])} %, gap {fmt.pct(r['acc_gap'])} pp"
    )
