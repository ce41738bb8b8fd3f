"""Build ``reports/<run_id>/{report.md, report.html, *.png}`` from a run folder alone.

The HTML is self-contained: images are embedded as base64 data URIs, the sort script and the
style are inline, and nothing references an external resource.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from bench import fmt
from bench.config import DEFAULT_MAX_GAP
from bench.decision import claims
from bench.decision.recommend import Constraints, Recommendation, recommend
from bench.durable.rundir import check_writable, inside
from bench.records import TaskEntry, TeacherSummary, load_run, task_entry
from bench.report import plots, tables
from bench.report.document import Document
from bench.report.specialists import specialists_section
from bench.report.transfer import transfer_section
from bench.stats import METHOD

__all__ = ["build_report", "importances_data"]


def importances_data(trials: pd.DataFrame, manifest: dict[str, Any], task: str) -> pd.DataFrame:
    """fANOVA importances of the searched parameters (the family's architecture parameters,
    T, alpha) for validation accuracy, computed from the trial table alone (an in-memory
    study rebuilt from the completed search trials)."""
    from bench.config.suite import suite_from_dict
    from bench.search.space import distributions

    suite = suite_from_dict(manifest["suite"])
    dists = {
        name: d
        for name, d in distributions(suite.search, suite.student.family).items()
        if not d.single()
    }
    # The capacity axis is read back as the realised size (student / ensemble parameters).
    column = {
        n: (
            "param_ratio"
            if n == "size"
            else f"arch_{n}"
            if n in suite.search.arch_names
            else n  # temperature, alpha and searched recipe keys are columns of their own
        )
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


def suite_toml(suite: dict[str, Any]) -> str:
    """The suite as run, as TOML to copy into a file (the storage URL is already redacted)."""
    import tomli_w

    data = json.loads(json.dumps(suite))
    search = data.pop("search", {})
    data["search"] = {
        k: (
            v
            if not isinstance(v, dict)  # strategy
            else v["low"]
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
    METHOD.replace("[-1, 1]", "[-100, 100] pp")
    + ". The decision uses the certification bound of the shipped file, never a mean."
)


def build_report(
    run_dir: Path,
    reports_root: Path = Path("reports"),
    constraints: Constraints | None = None,
) -> Path:
    """Render the report of ``run_dir`` into ``reports_root/<run_id>/`` and return that folder.

    The first screen is the decision: per task, what to ship, its cost and its uncertainty,
    the warnings, a summary table and the Pareto set with the recommended row marked."""
    cons = constraints or Constraints(max_gap=DEFAULT_MAX_GAP)
    run = load_run(run_dir)
    manifest = run.manifest.to_dict()
    trials = run.trials
    check_writable(Path(reports_root), "The reports folder (--reports)")
    out_dir = inside(Path(reports_root), manifest["run_id"])
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = Document(out_dir)
    suite = manifest["suite"]
    title = f"kdbench report — {manifest['run_id']}"
    doc.heading(1, title)
    tasks = list(dict.fromkeys(trials["task"])) if len(trials) else []
    recs = {t: recommend(trials, cons, t, run.seeds) for t in tasks}
    doc.heading(2, f"Decision ({claims.describe(cons)})")
    for task, rec in recs.items():
        entry = task_entry(manifest, task)
        if len(recs) > 1:
            doc.heading(3, f"Task '{task}'")
        doc.headline(claims.headline(rec), "met" if rec.met else "unmet")
        doc.para(f"[{task}] {claims.report_decision(rec)}", "rec" if rec.met else "norec")
        for w in [*entry.warnings, *claims.warnings(rec)]:
            doc.para(f"[{task}] WARNING: {w}", "warn")
    doc.table(tables.summary_table(recs))
    doc.para(
        INTERVALS + " Accuracies are test-split percentages; gaps are percentage points (pp) "
        "to the reference (positive = student worse). Every selection (best epoch, Optuna "
        "objective, halving, the certification candidates and their order, the exported seed) "
        "used the validation split only; the test split was read once per candidate, to certify."
    )
    for task, rec in recs.items():
        doc.heading(
            3, f"Certification of '{task}': the candidates in validation's order, tested once"
        )
        doc.table(tables.certification_table(trials, task, rec))
        forms = tables.forms_table(trials, task, rec)
        if len(forms):
            doc.heading(
                3,
                f"Deployed forms of '{task}': each form's own bound, latency and size",
            )
            doc.para(claims.FORMS_NOTE)
            doc.table(forms)
        doc.heading(3, f"Pareto set of '{task}': cost (FLOPs) against the recipe gap's bound")
        doc.table(tables.pareto_table(trials, task, rec))
    doc.para(
        f"Suite '{suite['name']}' ({manifest.get('suite_source') or 'from manifest'}), status "
        f"{manifest['status']}, {len(trials)} trial rows."
    )

    for task in tasks:
        _task_section(
            doc, trials, run.seeds, manifest, task, recs[task], cons, multi=len(tasks) > 1
        )

    _provenance(doc, manifest)
    doc.write(title)
    return out_dir


def _provenance(doc: Document, manifest: dict[str, Any]) -> None:
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
                    m.get("gpu") or "none (GPU columns not measured: shown as n/a)",
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
    doc.pre(suite_toml(manifest["suite"]))


def _teacher_origin(teacher: TeacherSummary) -> str:
    if teacher.kind == "train":
        return "reused from " + teacher.source if teacher.reused else "trained in this run"
    return {
        "checkpoint": "kdbench checkpoint ",
        "checkpoints": "checkpoints ",
        "logits": "offline logits ",
    }.get(teacher.kind, "") + teacher.source


def _task_section(
    doc: Document,
    trials: pd.DataFrame,
    seeds: pd.DataFrame,
    manifest: dict[str, Any],
    task: str,
    rec: Recommendation,
    cons: Constraints,
    multi: bool,
) -> None:
    entry = task_entry(manifest, task)
    doc.heading(2, f"Task '{task}'")
    _task_intro(doc, entry)
    doc.heading(3, "Recommendation in full")
    doc.pre(claims.text(rec))
    sub = trials[trials["task"] == task]
    _decision_plots(doc, sub, seeds, manifest, task, rec, cons, f"{task}_" if multi else "")
    spec = entry.teacher.specialists
    if spec:
        specialists_section(doc, sub, entry, spec)
    if entry.transfer:
        transfer_section(doc, sub, entry)
    pick = int(rec.chosen["trial"]) if rec.chosen else None
    _latency_section(doc, trials, task, pick, entry)
    _trial_tables(doc, trials, task)


def _encoding(entry: TaskEntry, limit: int = 12) -> str:
    """``0 = 'cat', 1 = 'dog', …``: the class order every teacher output must follow."""
    names = list(entry.class_names)
    shown = ", ".join(f"{k} = {n!r}" for k, n in enumerate(names[:limit]))
    return shown + (", …" if len(names) > limit else "")


def _task_intro(doc: Document, entry: TaskEntry) -> None:
    sizes, teacher = entry.sizes, entry.teacher
    members = teacher.member_test_acc
    doc.para(
        f"Data: {sizes.get('train', '?')} train / {sizes.get('val', '?')} val / "
        f"{sizes.get('test', '?')} test samples, input shape {list(entry.input_shape)}, "
        f"{entry.num_classes} classes (label encoding {_encoding(entry)}). "
        f"Teacher: {len(members)} members ({teacher.arch}) "
        f"combined by {teacher.combine}, {fmt.count(teacher.params)} parameters, "
        f"{fmt.count(teacher.flops)} FLOPs/sample ({_teacher_origin(teacher)}). "
        f"Ensemble test accuracy {fmt.pct(teacher.ensemble_acc)} %; members "
        f"{', '.join(fmt.pct(a) for a in members)} % (best single, chosen on val: "
        f"{fmt.pct(teacher.best_member_acc)} %; mean {fmt.pct(teacher.mean_member_acc)} %). "
        f"Teacher mean max-probability on the transfer set: "
        f"{fmt.number(teacher.mean_max_prob_train, 3)} "
        f"(near 1 = near one-hot soft targets, little for KD to transfer)."
    )


# Long by design: a list of figures, each one call with its caption (the captions are most
# of the lines); the data of each is computed in bench.report.plots.
def _decision_plots(
    doc: Document,
    sub: pd.DataFrame,
    seeds: pd.DataFrame,
    manifest: dict[str, Any],
    task: str,
    rec: Recommendation,
    cons: Constraints,
    prefix: str,
) -> None:
    """The task's figures, each computed from the rows and drawn (bench.report.plots)."""
    teacher = task_entry(manifest, task).teacher
    pick = int(rec.chosen["trial"]) if rec.chosen else None
    best_member_gap = (teacher.ensemble_acc - teacher.best_member_acc) * 100
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
                max_gap=cons.max_gap,
            ),
            name,
            f"accuracy gap vs {label.split(' (')[0]}",
            f"Gap to the ensemble against {label}: dots = mean gap, bars = its 95 % interval "
            "(test examples and seeds); red = Pareto front on the interval's upper bound "
            "(descriptive: the decision is certification's, in the table above); ring = the "
            "recommended, certified student; grey = dominated; purple dashed = best single teacher. Bars beyond the frame are clipped "
            "and marked with arrows (the count is in the corner); no point is ever cut.",
        )
    figure(
        plots.capacity_data(sub),
        lambda d, ax: plots.draw_capacity(
            d,
            ax,
            ensemble_acc=teacher.ensemble_acc,
            best_member_acc=teacher.best_member_acc,
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
        plots.law_data(sub, seeds[seeds["task"] == task] if len(seeds) else None, rec),
        plots.draw_law,
        "capacity_law",
        "capacity law on validation (a prediction, not the decision)",
        "Validation error against student size, one dot per completed search trial (bars: "
        "the seeds' standard error). Blue line and band: the law fitted on every point (its "
        "best shape at each size) and the 90 % interval of that curve. Orange: the held-out "
        "check: the larger third of the sizes and, as bars, the 90 % prediction band of the "
        "law fitted on the smaller two-thirds alone. Grey dashed: the scratch twins' law. "
        "Black: the tolerance on validation and the predicted smallest size; dotted: where "
        "the distilled and scratch laws cross.",
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


def _latency_section(
    doc: Document, trials: pd.DataFrame, task: str, pick: int | None, entry: TaskEntry
) -> None:
    doc.heading(3, "Latency: ensemble loop vs fused, and the student")
    lat = tables.latency_table(trials, task, pick)
    doc.table(lat)
    if not lat.empty:
        loop, fused, stud = (lat["CPU b1 p50 ms"].iloc[i] for i in range(3))
        doc.para(
            f"At CPU batch 1 the student is {fmt.times(loop / stud)} faster than the ensemble run "
            f"as a loop and {fmt.times(fused / stud)} faster than the fused ensemble; the honest "
            f"speed-up is {fmt.times(min(loop, fused) / stud)}."
        )
    detail = entry.ensemble_latency
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


def _trial_tables(doc: Document, trials: pd.DataFrame, task: str) -> None:
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
