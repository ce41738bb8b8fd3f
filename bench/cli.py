"""kdbench command line: run | certify | pull | report | recommend | predict | export | compare | doctor | data | list.

Exit codes: 0 ok; 1 an unmet recommendation or a ``compare`` regression; 2 usage or input
error (bad suite, data or teacher file, damaged or missing run folder), printed as one line
without a traceback; 74 a write failed (a full disk: resumable once fixed); 130 / 143
interrupted by SIGINT / SIGTERM (the run is resumable).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import DEFAULT_MAX_GAP
from bench.durable.interrupts import interrupt
from bench.errors import InputError

__all__ = ["main"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run stops cleanly and stays resumable."""


def _on_sigterm(signum: int, frame: Any) -> None:
    interrupt(Terminated())


def _on_sigint(signum: int, frame: Any) -> None:
    interrupt(KeyboardInterrupt())


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _load_cli_plugins(args: argparse.Namespace) -> None:
    from bench.config.plugins import ensure_entry_points, import_plugins

    ensure_entry_points()
    import_plugins(args.plugin or (), Path.cwd(), "The '--plugin' option")


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.config.suite import load_suite
    from bench.progress import ProgressPrinter
    from bench.report import build_report
    from bench.run.options import RunHooks, RunOptions
    from bench.run.sweep import run_suite

    _load_cli_plugins(args)
    suite = None if args.resume else load_suite(args.suite)
    options = RunOptions(
        out_root=Path(args.out),
        trials=args.trials,
        resume=args.resume,
        replay=args.replay,
        cache_dir=Path(args.cache) if args.cache else None,
        reports_root=Path(args.reports),
        storage=args.storage,
        study=args.study,
        workers=args.workers,
        max_gap=_fraction(args.max_gap),
    )
    show = ProgressPrinter(quiet=args.quiet)
    hooks = RunHooks(show.trial, show.teacher_epoch, show.message)
    try:
        run_dir = run_suite(suite, options, hooks)
    finally:
        show.close()
    print(f"run folder: {run_dir}")
    cons = _constraints(args, default_gap=_certified_gap(run_dir))
    report_dir = build_report(run_dir, Path(args.reports), constraints=cons)
    met = _print_recommendations(run_dir, cons)
    print(f"report: {report_dir / 'report.html'}")
    print(f"        {report_dir / 'report.md'}")
    return 0 if met else 1


def _cmd_certify(args: argparse.Namespace) -> int:
    from bench.decision.recommend import Constraints
    from bench.progress import ProgressPrinter
    from bench.records import require_run_dir
    from bench.report import build_report
    from bench.run.options import RunHooks, RunOptions
    from bench.run.sweep import run_suite

    _load_cli_plugins(args)
    run_dir = require_run_dir(Path(args.run_dir), "The RUN_DIR argument of certify")
    gap = _fraction(args.max_gap)
    options = RunOptions(
        resume=run_dir,
        cache_dir=Path(args.cache) if args.cache else None,
        workers=args.workers,
        certify_gap=gap,
    )
    show = ProgressPrinter(quiet=args.quiet)
    try:
        run_dir = run_suite(None, options, RunHooks(show.trial, None, show.message))
    finally:
        show.close()
    cons = Constraints(max_gap=gap)
    report_dir = build_report(run_dir, Path(args.reports), constraints=cons)
    met = _print_recommendations(run_dir, cons)
    print(f"report: {report_dir / 'report.html'}")
    return 0 if met else 1


def _fraction(pp: float | None) -> float | None:
    """A tolerance given in percentage points at the command line, as the fraction kdbench
    computes with (the one place the unit changes on the way in)."""
    return None if pp is None else pp / 100


def _certified_gap(run_dir: Path) -> float:
    """The tolerance a run certified first (its suite's or its --max-gap), the decision shown
    when no --max-gap is given; the default tolerance for a run that certified nothing."""
    from bench.records import Manifest, require_run_dir

    rounds = Manifest.read(require_run_dir(run_dir, "The RUN_DIR argument")).certify_rounds
    return float(rounds[0]) if rounds else DEFAULT_MAX_GAP


def _print_recommendations(run_dir: Path, cons) -> bool:  # cons: Constraints
    """Print each task's warnings and recommendation; False when a decision was asked for
    (the suite certifies: ``[certify] candidates`` > 0) and some task's is unmet — exit 1
    for run and certify, as for recommend."""
    from bench.config.suite import suite_from_dict
    from bench.decision import claims
    from bench.decision.recommend import recommend
    from bench.records import load_run

    run = load_run(run_dir)
    asked = suite_from_dict(run.manifest.suite).certify.candidates > 0
    met = True
    for task in dict.fromkeys(run.trials["task"]):
        for w in run.manifest.task(task).warnings:
            print(f"[{task}] WARNING: {w}")
        rec = recommend(run.trials, cons, task, run.seeds)
        met = met and (rec.met or not asked)
        print(claims.text(rec))
    return met


def _cmd_pull(args: argparse.Namespace) -> int:
    from bench.config.suite import check_safe_name
    from bench.run.pull import pull
    from bench.study import StorageSpec

    check_safe_name(args.study, "--study", "the command line")
    storage = args.storage
    spec = StorageSpec(url=storage) if "://" in storage else StorageSpec(path=storage)
    if not spec.shared and not Path(storage).is_file():
        raise InputError(
            f"The '--storage' option of pull must be a database URL or a study journal file. "
            f"Got {storage!r} instead."
        )
    run_dir, missing = pull(spec, args.study, Path(args.out), args.artifacts)
    print(f"run folder: {run_dir}")
    for line in missing:
        print(
            f"warning: {line}; pull --artifacts LOCATION fetches it from another copy",
            file=sys.stderr,
        )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.report import build_report

    cons = _constraints(args, default_gap=_certified_gap(Path(args.run_dir)))
    out = build_report(Path(args.run_dir), Path(args.reports), constraints=cons)
    print(f"report: {out / 'report.html'}")
    print(f"        {out / 'report.md'}")
    return 0


def _constraints(args: argparse.Namespace, default_gap: float | None = None):  # -> Constraints
    """The decision's constraints from the options (``default_gap``: a fraction, used when
    neither --max-gap nor --min-relative-acc is given)."""
    from bench.decision.recommend import Constraints

    max_gap = _fraction(args.max_gap)
    if max_gap is None and args.min_relative_acc is None:
        if default_gap is None:
            raise InputError(
                f"The '{args.command}' command needs --max-gap PP or --min-relative-acc R (or both). Got neither."
            )
        max_gap = default_gap
    return Constraints(
        max_gap=max_gap,
        min_relative_acc=args.min_relative_acc,
        against=getattr(args, "against", "ensemble"),
        max_latency_ms=getattr(args, "max_latency_ms", None),
        max_flops=getattr(args, "max_flops", None),
        max_params=getattr(args, "max_params", None),
        device=getattr(args, "device", "cpu"),
        batch=getattr(args, "batch", "1"),
    )


def _cmd_export(args: argparse.Namespace) -> int:
    from bench.ship.export import export_student

    cons = _constraints(args, default_gap=_certified_gap(Path(args.run_dir)))
    formats = (
        None if args.format is None else [f.strip() for f in args.format.split(",") if f.strip()]
    )
    files = export_student(
        Path(args.run_dir),
        Path(args.out),
        trial=args.trial,
        task=args.task,
        constraints=cons,
        formats=formats,
        form=args.form,
    )
    for i, path in enumerate(files):
        print(f"{'exported:' if i == 0 else '':<10}{path}")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from bench.decision import claims
    from bench.decision.recommend import recommend
    from bench.records import load_run

    run = load_run(args.run_dir)
    trials = run.trials
    tasks = _tasks(trials, args.task)
    cons = _constraints(args)
    recs = [recommend(trials, cons, t, run.seeds) for t in tasks]
    if args.json:
        print("[" + ",\n".join(claims.to_json(r) for r in recs) + "]")
    else:
        print("\n\n".join(claims.text(r) for r in recs))
    return 0 if all(r.met for r in recs) else 1


def _tasks(trials: Any, task: str | None) -> list[str]:
    """The tasks a command reads: ``--task`` (checked against the run's), else every one."""
    names = list(dict.fromkeys(trials["task"]))
    if task is not None and task not in names:
        raise InputError(
            f"The '--task' option must name a task of this run ({', '.join(names)}). "
            f"Got {task!r} instead."
        )
    return [task] if task is not None else names


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from bench.decision import claims
    from bench.decision import law as capacity_law
    from bench.durable.jsonsafe import json_safe
    from bench.records import load_run

    max_gap = DEFAULT_MAX_GAP if args.max_gap is None else float(_fraction(args.max_gap) or 0.0)
    if not 0 < max_gap < 1:
        raise InputError(
            f"The '--max-gap' option must be in (0, 100) pp. Got {args.max_gap!r} instead."
        )
    if not 20 <= args.boot <= 100_000:
        raise InputError(
            f"The '--boot' option must be an int in [20, 100000]. Got {args.boot!r} instead."
        )
    run = load_run(args.run_dir)
    tasks = _tasks(run.trials, args.task)
    out: list[dict[str, Any]] = []
    for task in tasks:
        rows = run.trials[run.trials["task"] == task]
        seeds = run.seeds[run.seeds["task"] == task] if len(run.seeds) else None
        facts = capacity_law.facts(rows, seeds, max_gap, n_boot=args.boot, axis=args.axis)
        kd = capacity_law.fit_task(rows, seeds, "distilled", args.axis, n_boot=0)
        hold = capacity_law.holdout(kd.points, n_boot=args.boot) if kd is not None else None
        out.append(
            {"task": task, "law": facts, "holdout": hold.as_dict() if hold is not None else None}
        )
    if args.json:
        print(json.dumps(json_safe(out), indent=2, allow_nan=False))
        return 0
    for item in out:
        print(f"[{item['task']}] capacity law on validation ({args.axis})")
        lines = claims.law_lines(item["law"]) or [
            "Too few distinct sizes among the completed search trials to fit the law."
        ]
        print("\n".join(lines + claims.holdout_lines(item["holdout"])))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from bench.report.compare import compare_runs, parse_threshold

    thresholds = [parse_threshold(t) for t in args.fail]
    text, regressions = compare_runs(
        Path(args.run_a),
        Path(args.run_b),
        thresholds,
        constraints=_constraints(args, default_gap=DEFAULT_MAX_GAP),
    )
    print(text)
    return 1 if regressions else 0


def _cmd_data(args: argparse.Namespace) -> int:
    from bench.config.suite import load_suite
    from bench.ship.datafiles import write_data_files

    _load_cli_plugins(args)
    for folder in write_data_files(load_suite(args.suite), Path(args.out)):
        print(f"data: {folder}/ ({', '.join(sorted(p.name for p in folder.iterdir()))})")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from bench.run.doctor import diagnose

    d = diagnose(Path(args.run_dir), repair=args.repair)
    print(d.text())
    return 0 if d.ok or (args.repair and "no damage found" in d.notes[-1]) else 2


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "columns":
        from bench.records import COLUMNS

        for c in COLUMNS:
            print(f"{c.name:44s} {c.dtype:8s} {c.unit:10s} {c.meaning}")
        print(
            f"{'arch_<name>':44s} {'Int64':8s} {'-':10s} one column per architecture parameter of the family"
        )
    elif args.what == "families":
        from bench.models import EXAMPLES
        from kdcore import get_family, list_families
        from kdcore.families import list_sources

        _load_cli_plugins(args)
        for name in (*list_families(), *EXAMPLES):
            fam = get_family(name)
            params = ", ".join(
                f"{p.name}{'?' if p.optional else ''} ({p.kind.__name__} {p.default[0]:g}-"
                f"{p.default[1]:g}{', log' if p.log else ''})"
                for p in fam.params
                if not p.from_data
            )
            print(f"{name:28s} {params or '-':44s} {fam.description}")
        print(
            f"families by name: {', '.join(list_sources())} (every timm name of a declared "
            "kind; '?': optional, left out = the model's own)"
        )
    else:
        from bench.run.doctor import run_status

        for path in sorted(Path(args.out).glob("*/manifest.json")):
            print(f"{run_status(path.parent):12s} {path.parent}")
    return 0


EXIT_CODES = """exit codes: 0 ok; 1 an unmet recommendation or a compare regression; 2 a usage or
input error (one line, no traceback); 74 a write failed (full disk, quota, read-only or failing
disk; resumable once fixed); 130 / 143 interrupted by SIGINT / SIGTERM (resumable)."""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("kdbench")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "unknown"


def _common(verbosity_defaults: bool) -> argparse.ArgumentParser:
    """-v/--quiet, accepted before or after the command (argparse would otherwise let a
    sub-command's default overwrite a value given before it: hence SUPPRESS there)."""
    p = argparse.ArgumentParser(add_help=False)
    kw: dict[str, Any] = {} if verbosity_defaults else {"default": argparse.SUPPRESS}
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log details (INFO) on stderr", **kw
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output", **kw)
    return p


def _quality_options(p: argparse.ArgumentParser, gap_default: str = "") -> None:
    g = p.add_argument_group("the decision (quality: judged on the 95 % interval's bounds)")
    g.add_argument(
        "--max-gap",
        type=_finite,
        metavar="PP",
        help=f"max accuracy gap to the reference, percentage points{gap_default}",
    )
    g.add_argument(
        "--min-relative-acc",
        type=_finite,
        metavar="R",
        help="min student / reference accuracy, a fraction (MLPerf style: 0.99 = 99 %%)",
    )
    g.add_argument(
        "--against",
        choices=("ensemble", "best-member"),
        default="ensemble",
        help="the reference: the teacher ensemble (default) or its best single member",
    )


def _cost_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cost limits (the recommendation is the cheapest student within them)")
    g.add_argument(
        "--max-latency-ms",
        type=_finite,
        metavar="MS",
        help="max p50 latency per call (then latency is the cost ranked)",
    )
    g.add_argument(
        "--max-flops",
        type=_finite,
        metavar="F",
        help="max forward FLOPs per sample (2 per multiply-add)",
    )
    g.add_argument("--max-params", type=_finite, metavar="P", help="max parameters")
    g.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="latency measured on the CPU (default) or the GPU",
    )
    g.add_argument(
        "--batch",
        choices=("1", "N"),
        default="1",
        help="latency at batch 1 (default) or the suite's large batch N",
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="kdbench",
        description="How small can the distilled student be? Distil a teacher ensemble into "
        "students of many sizes, measure them, and recommend one.",
        epilog="examples:\n  kdbench run suites/seed.toml\n  kdbench recommend results/RUN --max-gap 0.5\n"
        "  kdbench export results/RUN --out shipped/\n\n" + EXIT_CODES,
        formatter_class=fmt,
        parents=[_common(True)],
    )
    parser.add_argument("--version", action="version", version=f"kdbench {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common(False)

    def command(name: str, help_: str, examples: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=help_,
            parents=[common],
            formatter_class=fmt,
            epilog="examples:\n" + examples + "\n\n" + EXIT_CODES,
        )

    for add in (
        _run_parser,
        _certify_parser,
        _pull_parser,
        _report_parser,
        _recommend_parser,
        _predict_parser,
        _export_parser,
        _compare_parser,
        _doctor_parser,
        _data_parser,
        _list_parser,
    ):
        add(command)
    return parser


def _run_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    run = command(
        "run",
        "run a suite: validate, train (or reuse) the teacher, sweep students, report, recommend",
        "  kdbench run suites/seed.toml\n  kdbench run suites/seed.toml --workers 2\n"
        "  kdbench run --resume results/20261122T193131Z_seed\n"
        "  kdbench run suites/seed.toml --storage postgresql://kd@db/studies --study seed-1",
    )
    run.add_argument("suite", nargs="?", help="the suite's TOML file (omit with --resume)")
    run.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="search trials per task (overrides the suite's [budget] trials)",
    )
    run.add_argument(
        "--out", default="results", metavar="DIR", help="where run folders go (default: results)"
    )
    run.add_argument(
        "--reports", default="reports", metavar="DIR", help="where reports go (default: reports)"
    )
    run.add_argument(
        "--cache",
        metavar="DIR",
        help="trained teachers, shared between runs and workers (default: OUT/teachers)",
    )
    run.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="import MODULE first (it registers model families); repeatable",
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted local run exactly where it stopped",
    )
    run.add_argument(
        "--replay",
        type=Path,
        metavar="RUN_DIR",
        help="evaluate that run's search configurations instead of sampling new ones",
    )
    run.add_argument(
        "--storage",
        metavar="URL",
        help="a database (postgresql://user@host/db) to share the study between workers on any hosts",
    )
    run.add_argument(
        "--study",
        metavar="NAME",
        help="the shared study's name (default: the suite name and a hash of the suite)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="local worker processes on one study (threads divided between them; default 1)",
    )
    _quality_options(
        run,
        " (default: the suite's [certify] max_gap_pp, else "
        f"{DEFAULT_MAX_GAP * 100:g}): certified, printed and reported",
    )
    run.set_defaults(func=_cmd_run)


def _certify_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    cert = command(
        "certify",
        "certify a finished local run at another tolerance: validation orders the candidates, "
        "fresh seeds, the test split once; appends the rows (resumable: run it again)",
        "  kdbench certify results/20261122T193131Z_seed --max-gap 1.0\n"
        "  kdbench certify results/20261122T193131Z_seed --max-gap 1.0 --workers 2",
    )
    cert.add_argument("run_dir", metavar="RUN_DIR", help="a local run folder")
    cert.add_argument(
        "--max-gap",
        type=_finite,
        required=True,
        metavar="PP",
        help="the tolerance to certify, percentage points of accuracy below the ensemble",
    )
    cert.add_argument(
        "--cache",
        metavar="DIR",
        help="the trained teachers (default: the run folder's parent/teachers)",
    )
    cert.add_argument(
        "--reports", default="reports", metavar="DIR", help="where reports go (default: reports)"
    )
    cert.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="import MODULE first (it registers model families); repeatable",
    )
    cert.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="local worker processes (the answer is the same for any N; default 1)",
    )
    cert.set_defaults(func=_cmd_certify)


def _pull_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    pl = command(
        "pull",
        "rebuild a complete run folder from a study's storage alone",
        "  kdbench pull --storage postgresql://kd@db/studies --study seed-1 --out results\n"
        "  kdbench pull --storage results/RUN/study.journal --study RUN",
    )
    pl.add_argument(
        "--storage", required=True, metavar="URL", help="the database URL, or a study.journal file"
    )
    pl.add_argument("--study", required=True, metavar="NAME", help="the study's name")
    pl.add_argument(
        "--artifacts",
        default=None,
        metavar="LOCATION",
        help="the artifact store to fetch kept students from, a folder or s3://bucket "
        "(default: the store each trial recorded)",
    )
    pl.add_argument(
        "--out",
        default="results",
        metavar="DIR",
        help="where to write the run folder (default: results)",
    )
    pl.set_defaults(func=_cmd_pull)


def _report_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    rep = command(
        "report",
        "rebuild reports/<run_id>/ (Markdown, self-contained HTML, PNG plots) from a run folder",
        "  kdbench report results/RUN\n  kdbench report results/RUN --min-relative-acc 0.99",
    )
    rep.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    rep.add_argument(
        "--reports", default="reports", metavar="DIR", help="where reports go (default: reports)"
    )
    _quality_options(
        rep, f" (default: the tolerance the run certified, else {DEFAULT_MAX_GAP * 100:g})"
    )
    rep.set_defaults(func=_cmd_report)


def _recommend_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    rec = command(
        "recommend",
        "the smallest student meeting the constraints (exit 1 when none does)",
        "  kdbench recommend results/RUN --max-gap 0.5\n"
        "  kdbench recommend results/RUN --min-relative-acc 0.99 --max-latency-ms 0.05\n"
        "  kdbench recommend results/RUN --max-gap 1 --json | python -m json.tool",
    )
    rec.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    _quality_options(rec, " (give it or --min-relative-acc)")
    _cost_options(rec)
    rec.add_argument("--task", help="only this task of a multi-task run")
    rec.add_argument("--json", action="store_true", help="print strict JSON (null for NaN)")
    rec.set_defaults(func=_cmd_recommend)


def _export_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    exp = command(
        "export",
        "write the student to ship: weights, configuration (TOML) and model card",
        "  kdbench export results/RUN --out shipped/\n  kdbench export results/RUN --trial 36 --out shipped/",
    )
    exp.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    exp.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="the folder to write student.{pt,safetensors,json,onnx}, student.toml and MODEL_CARD.md into",
    )
    exp.add_argument(
        "--trial",
        type=int,
        metavar="N",
        help="a certification candidate (default: the recommended student)",
    )
    exp.add_argument("--task", help="the task of a multi-task run (default: the first)")
    exp.add_argument(
        "--form",
        metavar="FORM",
        help="ship this certified [ship] form of the student (fp32, int8_dynamic, int8_static, "
        "fp16; default: the recommended one, the first of [ship] forms certified)",
    )
    exp.add_argument(
        "--format",
        metavar="LIST",
        help="comma-separated formats among torch, safetensors, onnx (default: every one whose "
        "dependencies are installed; onnx: raw rows in, checked with onnxruntime)",
    )
    _quality_options(
        exp,
        f" (default: the tolerance the run certified, else {DEFAULT_MAX_GAP * 100:g}) for "
        "choosing the student",
    )
    _cost_options(exp)
    exp.set_defaults(func=_cmd_export)


def _compare_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    cmp_ = command(
        "compare",
        "compare two runs in percentage points; exit 1 when B is worse than A beyond a threshold",
        "  kdbench compare results/A results/B\n"
        "  kdbench compare results/A results/B --fail latency_cpu_b1_p50_ms:10% --fail acc_gap:0.5pp",
    )
    cmp_.add_argument("run_a", metavar="RUN_A", help="the reference run")
    cmp_.add_argument("run_b", metavar="RUN_B", help="the run judged against it")
    cmp_.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="METRIC:THRESHOLD",
        help="a result column and how much worse B may be: N%% (relative), Npp (percentage points) or N (the column's unit); repeatable",
    )
    _quality_options(cmp_, f" (default {DEFAULT_MAX_GAP * 100:g}) for each run's recommendation")
    cmp_.set_defaults(func=_cmd_compare)


def _predict_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    pr = command(
        "predict",
        "the capacity law fitted to a run's search: the predicted size, the scratch crossing "
        "and the held-out check (validation only; the decision is certification's)",
        "  kdbench predict results/RUN\n  kdbench predict results/RUN --max-gap 1 --json",
    )
    pr.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    pr.add_argument(
        "--max-gap",
        type=_finite,
        metavar="PP",
        help=f"the validation gap to predict the size for, in pp (default {DEFAULT_MAX_GAP * 100:g})",
    )
    pr.add_argument("--axis", choices=("params", "flops"), default="params", help="the size axis")
    pr.add_argument(
        "--boot",
        type=int,
        default=300,
        metavar="B",
        help="bootstrap refits behind every band (default 300)",
    )
    pr.add_argument("--task", help="only this task of a multi-task run")
    pr.add_argument("--json", action="store_true", help="print strict JSON (null for NaN)")
    pr.set_defaults(func=_cmd_predict)


def _doctor_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    doc = command(
        "doctor",
        "what is damaged in a run folder and what can be recovered",
        "  kdbench doctor results/RUN\n  kdbench doctor results/RUN --repair",
    )
    doc.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    doc.add_argument(
        "--repair",
        action="store_true",
        help="rebuild the tables and manifest from the study journal",
    )
    doc.set_defaults(func=_cmd_doctor)


def _data_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    dat = command(
        "data",
        "write each task's split rows, label encoding and training-split scaler (to train a "
        "compatible teacher or check a number)",
        "  kdbench data suites/seed.toml --out data/",
    )
    dat.add_argument("suite", metavar="SUITE", help="the suite file")
    dat.add_argument("--out", required=True, metavar="DIR", help="folder for DIR/<task>/")
    dat.add_argument(
        "--plugin", action="append", metavar="MODULE", help="import MODULE first (for families)"
    )
    dat.set_defaults(func=_cmd_data)


def _list_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    lst = command(
        "list",
        "list result columns, model families, or runs with their status",
        "  kdbench list runs\n  kdbench list families --plugin my_families\n  kdbench list columns",
    )
    lst.add_argument("what", choices=("columns", "families", "runs"), help="what to list")
    lst.add_argument(
        "--out",
        default="results",
        metavar="DIR",
        help="where run folders are (for runs; default: results)",
    )
    lst.add_argument(
        "--plugin", action="append", metavar="MODULE", help="import MODULE first (for families)"
    )
    lst.set_defaults(func=_cmd_list)


def entry() -> None:
    """The ``kdbench`` console script (and ``python -m bench``): :func:`main`, then exit
    without the interpreter's teardown, which takes about 1 s once torch, scikit-learn and
    matplotlib are loaded; everything kdbench writes is closed by then. Tests call
    :func:`main`."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, e.g. after a broken pipe
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "run" and not args.suite and not args.resume:
        parser.error("run needs a SUITE file or --resume RUN_DIR")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    previous_int = signal.signal(signal.SIGINT, _on_sigint)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"kdbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `kdbench list columns | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except Exception as exc:
        from bench.errors import is_write_error
        from bench.run.sweep import RunInterrupted

        if isinstance(exc, RunInterrupted):
            return _interrupted(exc)
        if is_write_error(exc):  # outside a run (a report, an export): nothing to resume
            assert isinstance(exc, OSError)
            where = f" to {exc.filename}" if exc.filename else ""
            print(
                f"kdbench: error: a write{where} failed ({exc.strerror}, errno {exc.errno})",
                file=sys.stderr,
            )
            return 74
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _interrupted(exc: BaseException) -> int:
    from bench.run.sweep import RunInterrupted, RunStopped

    if isinstance(exc, RunStopped):
        cause = exc.cause.strerror or str(exc.cause)
        print(
            f"kdbench: stopped: a write to {exc.run_dir or 'the study'} failed ({cause}, errno "
            f"{exc.cause.errno}); everything written before is intact: fix the cause (free "
            f"space), then resume with `{exc.resume_hint}`",
            file=sys.stderr,
        )
        return 74
    if isinstance(exc, RunInterrupted):
        how = "SIGTERM" if exc.how == "Terminated" else exc.how
        where = (
            f"; the run folder {exc.run_dir} is resumable: {exc.resume_hint}"
            if exc.run_dir
            else f"; {exc.resume_hint}"
        )
        print(f"kdbench: interrupted ({how}){where}", file=sys.stderr)
        return 143 if how == "SIGTERM" else 130
    how = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
    print(f"kdbench: interrupted ({how})", file=sys.stderr)
    return 143 if how == "SIGTERM" else 130


if __name__ == "__main__":
    sys.exit(main())
