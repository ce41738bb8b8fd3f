"""Build ``reports/<run_id>/{report.md, report.html, *.png}`` from a run folder alone.

The HTML is self-contained: images are embedded as base64 data URIs, the sort script and the
style are inline, and nothing references an external resource.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from bench import fmt
from bench.recommend import Constraints, Recommendation, candidates, recommend
from bench.records import load_run
from bench.report import plots, tables
from bench.rundir import atomic_write_bytes, atomic_write_text, check_writable, inside

__all__ = ["build_report", "importances_data"]

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, idx) {
  th.style.cursor = 'pointer';
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function (a, b) {
      var x = a.cells[idx], y = b.cells[idx];
      var vx = x.dataset.v !== undefined ? parseFloat(x.dataset.v) : x.textContent;
      var vy = y.dataset.v !== undefined ? parseFloat(y.dataset.v) : y.textContent;
      if (vx < vy) return asc ? -1 : 1; if (vx > vy) return asc ? 1 : -1; return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.rec { background: #eef6ee; border-left: 4px solid #2ca02c; padding: 0.6em 1em; white-space: pre-wrap; }
.norec { background: #fbeeee; border-left: 4px solid #d62728; padding: 0.6em 1em; white-space: pre-wrap; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 12px; }
"""


class _Doc:
    """Writes the Markdown and the HTML twins side by side."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, level: int, text: str) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str, cls: str | None = None) -> None:
        self.md.append(text + "\n")
        attr = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{attr}>{html.escape(text)}</p>")

    def pre(self, text: str) -> None:
        self.md.append("```\n" + text + "\n```\n")
        self.html.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, frame: pd.DataFrame, sortable: bool = False) -> None:
        self.md.append(tables.markdown_table(frame))
        self.html.append(tables.html_table(frame, sortable))

    def figure(self, fig: Any, name: str, caption: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        png = buf.getvalue()
        atomic_write_bytes(inside(self.out_dir, name), png)
        self.md.append(f"![{caption}]({name})\n\n_{caption}_\n")
        b64 = base64.b64encode(png).decode()
        self.html.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def write(self, title: str) -> None:
        atomic_write_text(self.out_dir / "report.md", "\n".join(self.md))
        page = (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(self.html)}<script>{_SORT_JS}</script></body></html>"
        )
        atomic_write_text(self.out_dir / "report.html", page)


def importances_data(trials: pd.DataFrame, manifest: dict[str, Any], task: str) -> pd.DataFrame:
    """fANOVA importances of the searched parameters (the family's architecture parameters,
    T, alpha) for validation accuracy, computed from the trial table alone (an in-memory
    study rebuilt from the completed search trials)."""
    from bench.space import distributions
    from bench.suite import suite_from_dict

    suite = suite_from_dict(manifest["suite"])
    dists = {
        name: d
        for name, d in distributions(suite.search, suite.student.family).items()
        if not d.single()
    }
    # The capacity axis is read back as the realised size (student / ensemble parameters).
    column = {
        n: (n if n in ("temperature", "alpha") else "param_ratio" if n == "size" else f"arch_{n}")
        for n in dists
    }
    rows = trials.query("state == 'complete' and phase == 'search'")
    rows = rows[rows["task"] == task]
    if len(rows) < 3 or not dists:
        return pd.DataFrame(columns=["param", "importance"])
    study = optuna.create_study(direction="maximize")
    for _, r in rows.iterrows():
        params = {
            k: (
                int(r[column[k]])
                if isinstance(d, optuna.distributions.IntDistribution)
                else min(max(float(r[column[k]]), d.low), d.high)
            )
            for k, d in dists.items()
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dict(dists), value=float(r["student_val_acc"])
            )
        )
    imp = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
    )
    return pd.DataFrame({"param": list(imp), "importance": list(imp.values())})


def _decision(rec: Recommendation, meta: dict[str, Any]) -> str:
    """The first screen's sentence: what to ship, its cost, and how sure the number is."""
    from bench.recommend import Constraints

    cons = Constraints(**rec.constraints)
    if rec.chosen is None:
        near = rec.closest
        text = f"No student meets {cons.describe()}."
        if near is not None:
            text += (
                f" Closest: {near['arch']}, gap {fmt.pct(near['acc_gap'])} pp (95 % interval "
                f"[{fmt.pct(near['acc_gap_ci_low'])}, {fmt.pct(near['acc_gap_ci_high'])}] pp)."
            )
        if rec.best_within_cost is not None:
            b = rec.best_within_cost
            text += (
                f" Best within the cost limits: {b['arch']}, gap {fmt.pct(b['acc_gap'])} pp "
                f"(upper bound {fmt.pct(b['acc_gap_ci_high'])} pp)."
            )
        return text
    r = rec.chosen
    return (
        f"Ship {r['arch']} (trial {int(r['trial'])}; T {r['temperature']:.2f}, alpha "
        f"{r['alpha']:.2f}). Cost: {int(r['student_params']):,} parameters ({fmt.ratio(r.get('param_ratio'))} of "
        f"the ensemble), {int(r['student_flops']):,} FLOPs per sample, CPU latency "
        f"{fmt.ms(r.get('latency_cpu_b1_p50_ms'))} at batch 1 — {fmt.number(r.get('speedup_cpu_b1'), 2)}× "
        f"faster than the faster ensemble form. Accuracy {fmt.pct(r['student_acc'])} % "
        f"[{fmt.pct(r['student_acc_ci_low'])}, {fmt.pct(r['student_acc_ci_high'])}] against the "
        f"ensemble's {fmt.pct(r['ensemble_acc'])} %: gap {fmt.pct(r['acc_gap'])} pp, 95 % interval "
        f"[{fmt.pct(r['acc_gap_ci_low'])}, {fmt.pct(r['acc_gap_ci_high'])}] pp, meeting {cons.describe()}; "
        f"{fmt.pct(r['kd_gain'], signed=True)} pp over the same student trained without distillation "
        f"[{fmt.pct(r['kd_gain_ci_low'], signed=True)}, {fmt.pct(r['kd_gain_ci_high'], signed=True)}]. Measured on "
        f"{int(r['n_test']):,} test examples and {int(r['n_seeds'])} seeds. "
        "`kdbench export` writes this student."
    )


def suite_toml(suite: dict[str, Any]) -> str:
    """The suite as run, as TOML to copy into a file (the storage URL is already redacted)."""
    import tomli_w

    data = json.loads(json.dumps(suite))
    search = data.pop("search", {})
    data["search"] = {
        k: (
            v["low"]
            if v["low"] == v["high"]
            else {"low": v["low"], "high": v["high"], "log": v["log"]}
        )
        for k, v in search.items()
    }
    tasks = data.pop("tasks", [])
    data["tasks"] = [{k: v for k, v in t.items() if v not in ("", [], None)} for t in tasks]

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if v is not None and v != "" and v != {}}
        return value

    return tomli_w.dumps(prune(data))


INTERVALS = (
    "95 % intervals: a paired bootstrap over the test examples and the seeds (2,000 resamples, "
    "percentile), widened to at least the binomial score interval (Wilson for accuracies, "
    "Newcombe's paired interval for gaps and KD gains), clipped to [-100, 100] pp. The decision "
    "uses the gap's upper bound (and the relative accuracy's lower bound), never the mean."
)


def build_report(
    run_dir: Path,
    reports_root: Path = Path("reports"),
    max_gap_pp: float | None = None,
    constraints: Constraints | None = None,
) -> Path:
    """Render the report of ``run_dir`` into ``reports_root/<run_id>/`` and return that folder.

    The first screen is the decision: per task, what to ship, its cost and its uncertainty,
    the warnings, a summary table and the Pareto set with the recommended row marked."""
    cons = constraints or Constraints(max_gap_pp=0.5 if max_gap_pp is None else max_gap_pp)
    run = load_run(run_dir)
    manifest = run.manifest.to_dict()
    trials = run.trials
    check_writable(Path(reports_root), "The reports folder (--reports)")
    out_dir = inside(Path(reports_root), manifest["run_id"])
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = _Doc(out_dir)
    suite = manifest["suite"]
    title = f"kdbench report — {manifest['run_id']}"
    doc.heading(1, title)
    tasks = list(dict.fromkeys(trials["task"])) if len(trials) else []
    recs = {t: recommend(trials, cons, t) for t in tasks}
    doc.heading(2, f"Decision ({cons.describe()})")
    for task, rec in recs.items():
        meta = manifest.get("tasks", {}).get(task, {})
        doc.para(f"[{task}] {_decision(rec, meta)}", "rec" if rec.met else "norec")
        for w in [*meta.get("warnings", []), *rec.warnings]:
            doc.para(f"[{task}] WARNING: {w}", "warn")
    doc.table(tables.summary_table(recs))
    doc.para(
        INTERVALS + " Accuracies are test-split percentages; gaps are percentage points (pp) "
        "to the reference (positive = student worse). Every selection (best epoch, Optuna "
        "objective, the confirm short-list, the exported seed) used the validation split only."
    )
    for task, rec in recs.items():
        doc.heading(3, f"Pareto set of '{task}': cost (FLOPs) against the gap's upper bound")
        doc.table(tables.pareto_table(trials, task, rec))
    doc.para(
        f"Suite '{suite['name']}' ({manifest.get('suite_source') or 'from manifest'}), status "
        f"{manifest['status']}, {len(trials)} trial rows."
    )

    for task in tasks:
        _task_section(doc, trials, manifest, task, recs[task], cons, multi=len(tasks) > 1)

    doc.heading(2, "Measurement protocol and provenance")
    conv = manifest.get("conventions", {})
    doc.table(pd.DataFrame({"quantity": list(conv), "convention": list(conv.values())}))
    m = manifest.get("machine", {})
    pk = manifest.get("packages", {})
    g = manifest.get("git", {})
    doc.table(
        pd.DataFrame(
            {
                "item": [
                    "CPU",
                    "cores",
                    "training threads",
                    "latency threads",
                    "GPU",
                    "train device",
                    "git commit",
                    "git dirty",
                    "suite sha256",
                    *pk.keys(),
                ],
                "value": [
                    m.get("cpu_model"),
                    m.get("cpu_cores"),
                    m.get("train_threads"),
                    m.get("latency_threads"),
                    m.get("gpu") or "none (GPU columns NaN)",
                    manifest.get("train_device"),
                    g.get("commit"),
                    g.get("dirty"),
                    manifest.get("suite_sha256"),
                    *pk.values(),
                ],
            }
        ).astype(str)
    )
    doc.heading(3, "Suite as run (TOML)")
    doc.pre(suite_toml(suite))
    doc.write(title)
    return out_dir


def _teacher_origin(teacher: dict[str, Any]) -> str:
    kind = teacher.get("kind", "train")
    if kind == "train":
        return (
            "reused from " + str(teacher.get("source"))
            if teacher.get("reused")
            else "trained in this run"
        )
    return {
        "checkpoint": "kdbench checkpoint ",
        "checkpoints": "checkpoints ",
        "logits": "offline logits ",
    }.get(kind, "") + str(teacher.get("source"))


def _specialists_section(
    doc: _Doc, trials: pd.DataFrame, meta: dict[str, Any], spec: dict[str, Any]
) -> None:
    """A specialist teacher: what the specialists add, where, at what cost, and whether a
    distilled student keeps it (the capacity curve above has the three students)."""
    teacher = meta.get("teacher", {})
    lat = meta.get("ensemble_latency", {})
    gen_ms = lat.get("generalist_cpu_b1", {}).get("p50_ms", math.nan)
    sys_ms = lat.get("loop_cpu_b1", {}).get("p50_ms", math.nan)
    sizes = [len(s) for s in spec["class_sets"]]
    doc.heading(3, "Specialists: the generalist against generalist + specialists")
    doc.para(
        f"Generalist: one network ({teacher.get('arch', '?')}), test accuracy "
        f"{spec['generalist_acc'] * 100:.2f} %. Generalist + {len(sizes)} specialists (class "
        f"clusters of sizes {', '.join(map(str, sizes))} from K-means on the covariance of the "
        f"generalist's predictions; each specialist started from the generalist and trained on "
        f"half its classes, half dustbin, dustbin logit corrected), combined per example by "
        f"the KL problem over the specialists active for the generalist's top-{spec['top_n']} "
        f"classes: {spec['system_acc'] * 100:.2f} %. Difference "
        f"{(spec['system_acc'] - spec['generalist_acc']) * 100:+.2f} pp, 95 % interval "
        f"[{spec['system_gain_ci_low'] * 100:+.2f}, {spec['system_gain_ci_high'] * 100:+.2f}] pp "
        f"(paired bootstrap over {spec['n_test']:,} test examples, at least Newcombe's interval)."
    )
    doc.para(
        f"Extra cost of the whole system: {fmt.count(spec['system_params'])} parameters against the "
        f"generalist's {fmt.count(spec['generalist_params'])} "
        f"({spec['system_params'] / max(spec['generalist_params'], 1):.1f}×); network FLOPs per "
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
                    f"{g * 100:+.2f} [{lo * 100:+.2f}, {hi * 100:+.2f}]"
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
            f"({len(c)} students, mean gain {c['specialist_gain'].mean() * 100:+.2f} pp): at these "
            "sizes the specialists' gain does not survive distillation measurably."
        )
    if not lost.empty:
        verdict += f" {len(lost)} are significantly worse than with the generalist alone."
    doc.para(verdict)


def _task_section(
    doc: _Doc,
    trials: pd.DataFrame,
    manifest: dict[str, Any],
    task: str,
    rec: Recommendation,
    cons: Constraints,
    multi: bool,
) -> None:
    meta = manifest.get("tasks", {}).get(task, {})
    teacher = meta.get("teacher", {})
    prefix = f"{task}_" if multi else ""
    doc.heading(2, f"Task '{task}'")
    sizes = meta.get("sizes", {})
    members = teacher.get("member_test_acc", [])
    doc.para(
        f"Data: {sizes.get('train', '?')} train / {sizes.get('val', '?')} val / {sizes.get('test', '?')} test samples, "
        f"input shape {meta.get('input_shape', '?')}, {meta.get('num_classes', '?')} classes. "
        f"Teacher: {len(members)} members ({teacher.get('arch', '?')}) combined by "
        f"{teacher.get('combine', '?')}, {fmt.count(teacher.get('params'))} parameters, "
        f"{fmt.count(teacher.get('flops'))} FLOPs/sample "
        f"({_teacher_origin(teacher)}). "
        f"Ensemble test accuracy {teacher.get('ensemble_acc', math.nan) * 100:.2f} %; members "
        f"{', '.join(f'{a * 100:.2f}' for a in members)} % (best single, chosen on val: "
        f"{teacher.get('best_member_acc', math.nan) * 100:.2f} %; mean {teacher.get('mean_member_acc', math.nan) * 100:.2f} %). "
        f"Teacher mean max-probability on the transfer set: {teacher.get('mean_max_prob_train', math.nan):.3f} "
        f"(near 1 = near one-hot soft targets, little for KD to transfer)."
    )
    doc.heading(3, "Recommendation in full")
    doc.pre(rec.text())

    pick = int(rec.chosen["trial"]) if rec.chosen else None
    best_member_gap = (
        teacher.get("ensemble_acc", math.nan) - teacher.get("best_member_acc", math.nan)
    ) * 100
    doc.heading(3, "Decision plots")
    costs = [
        ("student_flops", "student FLOPs per sample (log)", "pareto_flops"),
        (
            "latency_cpu_b1_p50_ms",
            "student CPU latency, batch 1, p50 (ms, log)",
            "pareto_latency_cpu",
        ),
        (
            "latency_gpu_b1_p50_ms",
            "student GPU latency, batch 1, p50 (ms, log)",
            "pareto_latency_gpu",
        ),
        ("student_params", "student parameters (log)", "pareto_params"),
    ]
    sub = trials[trials["task"] == task]

    def figure(
        data: pd.DataFrame,
        draw: Any,
        name: str,
        title: str,
        caption: str,
        size: tuple[float, float] = (7.0, 4.5),
    ) -> None:
        """Draw one figure from its data (skipped when there is nothing to plot)."""
        if data.empty:
            return
        fig, ax = plots.new_axes(*size)
        draw(data, ax)
        ax.set_title(f"{task}: {title}")
        doc.figure(fig, f"{prefix}{name}.png", caption)

    for col, label, name in costs:
        figure(
            plots.pareto_data(sub, col, pick),
            lambda d, ax, label=label: plots.draw_pareto(
                d,
                ax,
                xlabel=label,
                best_member_gap_pp=best_member_gap,
                max_gap_pp=cons.max_gap_pp,
            ),
            name,
            f"accuracy gap vs {label.split(' (')[0]}",
            f"Gap to the ensemble against {label}: dots = mean gap, bars = its 95 % interval "
            "(test examples and seeds); red = Pareto front on the interval's upper bound — what "
            "the decision uses — so the recommended student (ring) is always on it; grey = "
            "dominated; purple dashed = best single teacher. Bars beyond the frame are clipped "
            "and marked with arrows (the count is in the corner); no point is ever cut.",
        )
    figure(
        plots.capacity_data(sub),
        lambda d, ax: plots.draw_capacity(
            d,
            ax,
            ensemble_acc=teacher.get("ensemble_acc", math.nan),
            best_member_acc=teacher.get("best_member_acc", math.nan),
            knee_params=plots.knee_params(sub),
            recommended=(rec.chosen["student_params"], rec.chosen["student_acc"])
            if rec.chosen
            else None,
        ),
        "capacity",
        "capacity curve (distilled at best-val temperature vs scratch)",
        "Test accuracy against student parameters: distilled (blue) and scratch "
        "(orange) of the same architectures and seeds, bands = 95 % intervals, green = ensemble.",
    )
    figure(
        plots.temperature_map_data(sub),
        plots.draw_temperature_map,
        "temperature_map",
        "mean gap (pp) by student size and temperature",
        "Which temperature suits which size: mean gap to the ensemble "
        "per student-size bin and temperature bin (blank = not sampled).",
    )
    figure(
        plots.kd_gain_data(sub),
        plots.draw_kd_gain,
        "kd_gain",
        "where distillation helps",
        "KD gain over the scratch student of the same architecture and seeds, with its 95 % "
        "interval (test examples and seeds); bars beyond the frame are clipped and marked with "
        "arrows, points never are.",
    )
    figure(
        plots.history_data(sub),
        plots.draw_history,
        "history",
        "Optuna optimisation history (validation)",
        "Optimisation history: the study's objective (validation accuracy).",
        (7, 3.5),
    )
    try:
        imp = importances_data(sub, manifest, task)
    except (ValueError, RuntimeError):
        imp = pd.DataFrame()
    figure(
        imp,
        plots.draw_importances,
        "importances",
        "hyper-parameter importances",
        "fANOVA importances of the searched hyper-parameters for validation accuracy.",
        (7, 3),
    )

    spec = teacher.get("extra", {}).get("specialists")
    if spec:
        _specialists_section(doc, sub, meta, spec)
    doc.heading(3, "Latency: ensemble loop vs fused, and the student")
    lat = tables.latency_table(trials, task, pick)
    doc.table(lat)
    if not lat.empty:
        loop, fused, stud = (lat["CPU b1 p50 ms"].iloc[i] for i in range(3))
        doc.para(
            f"At CPU batch 1 the student is {loop / stud:.1f}× faster than the ensemble run as a loop and "
            f"{fused / stud:.1f}× faster than the fused ensemble; the honest speed-up is {min(loop, fused) / stud:.1f}×."
        )
    detail = meta.get("ensemble_latency", {})
    if detail:
        doc.para("Ensemble latency, full statistics (ms per call; threads as recorded):")
        doc.table(
            pd.DataFrame(
                [
                    {
                        "form / device / batch": key,
                        "threads": d.get("threads"),
                        "p50": d.get("p50_ms"),
                        "p90": d.get("p90_ms"),
                        "p99": d.get("p99_ms"),
                        "IQR": d.get("iqr_ms"),
                        "noisy": d.get("noisy"),
                        "throughput /s": d.get("throughput_per_s"),
                    }
                    for key, d in detail.items()
                ]
            )
        )
    doc.heading(3, "All completed students (cheapest first; click a header to sort)")
    doc.table(tables.trials_table(trials, task), sortable=True)
    doc.heading(3, "Where the training time went, by student size")
    spent = tables.time_by_size(trials, task)
    doc.table(spent)
    if not spent.empty:
        doc.para(
            "Trial wall time (training and evaluation, all seeds and scratch baselines; a "
            "pruned trial counts the epochs it ran) summed per decade of student parameters. "
            "Summed over workers, so with several workers it exceeds the run's wall time."
        )
    doc.heading(3, "Failed and pruned trials")
    doc.table(tables.failed_table(trials, task))
