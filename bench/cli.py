"""kdbench command line: run | pull | report | recommend | compare | doctor | list.

Exit codes: 0 ok; 1 an unmet recommendation or a ``compare`` regression; 2 usage or input
error (bad suite, data or teacher file, damaged or missing run folder), printed as one line
without a traceback; 130 / 143 interrupted by SIGINT / SIGTERM (the run is resumable).
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
from pathlib import Path
from typing import Any

from bench.errors import InputError

__all__ = ["main"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run stops cleanly and stays resumable."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _fmt_row(row: dict) -> str:
    if row.get("state") != "complete":
        return f"{row['arch']}: {str(row['state']).upper()} ({row['fail_reason']})"
    return (
        f"{row['arch']} T {row['temperature']:.2f} "
        f"alpha {row['alpha']:.2f}: val {row['student_val_acc'] * 100:.2f} %, "
        f"params 1/{1 / row['param_ratio']:.0f} of the ensemble"
    )


def _progress(p) -> None:  # bench.worker.Progress
    best = ""
    if p.best is not None:
        b = p.best
        best = f" | best val so far: {b['student_val_acc'] * 100:.2f} % (trial {b['trial']}, {b['arch']})"
    label = "trial" if p.phase == "search" else "confirm"
    print(
        f"[{p.task}] {label} {p.done}/{p.total}  {p.elapsed_s:6.1f}s  trial {p.row['trial']}: "
        f"{_fmt_row(p.row)}{best}",
        flush=True,
    )


def _load_cli_plugins(args: argparse.Namespace) -> None:
    from bench.plugins import ensure_entry_points, import_plugins

    ensure_entry_points()
    import_plugins(args.plugin or (), Path.cwd(), "The '--plugin' option")


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.report import build_report
    from bench.suite import load_suite
    from bench.sweep import run_suite

    _load_cli_plugins(args)
    suite = None if args.resume else load_suite(args.suite)
    if args.trials is not None and args.trials < 1:
        raise InputError(f"The '--trials' option must be an int >= 1. Got {args.trials} instead.")
    run_dir = run_suite(
        suite,
        out_root=Path(args.out),
        trials=args.trials,
        resume=args.resume,
        replay=args.replay,
        cache_dir=Path(args.cache) if args.cache else None,
        reports_root=Path(args.reports),
        storage=args.storage,
        study=args.study,
        workers=args.workers,
        on_progress=_progress,
    )
    print(f"run folder: {run_dir}")
    report_dir = build_report(run_dir, Path(args.reports), max_gap_pp=args.max_gap)
    _print_recommendations(run_dir, args.max_gap)
    print(f"report: {report_dir / 'report.html'}")
    print(f"        {report_dir / 'report.md'}")
    return 0


def _print_recommendations(run_dir: Path, max_gap: float) -> None:
    from bench.recommend import Constraints, recommend
    from bench.records import load_run

    trials = load_run(run_dir).trials
    for task in dict.fromkeys(trials["task"]):
        print(recommend(trials, Constraints(max_gap_pp=max_gap), task).text())


def _cmd_pull(args: argparse.Namespace) -> int:
    from bench.pull import pull
    from bench.study import StorageSpec
    from bench.suite import check_safe_name

    check_safe_name(args.study, "--study", "the command line")
    storage = args.storage
    spec = StorageSpec(url=storage) if "://" in storage else StorageSpec(path=storage)
    if not spec.shared and not Path(storage).is_file():
        raise InputError(
            f"The '--storage' option of pull must be a database URL or a study journal file. "
            f"Got {storage!r} instead."
        )
    run_dir = pull(spec, args.study, Path(args.out))
    print(f"run folder: {run_dir}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.report import build_report

    out = build_report(Path(args.run_dir), Path(args.reports), max_gap_pp=args.max_gap)
    print(f"report: {out / 'report.html'}")
    print(f"        {out / 'report.md'}")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from bench.recommend import Constraints, recommend
    from bench.records import load_run

    trials = load_run(args.run_dir).trials
    tasks = [args.task] if args.task else list(dict.fromkeys(trials["task"]))
    unknown = [t for t in tasks if t not in set(trials["task"])]
    if unknown:
        raise InputError(
            f"The '--task' option must name a task of this run ({', '.join(dict.fromkeys(trials['task']))}). Got {unknown[0]!r} instead."
        )
    if args.max_gap < 0:
        raise InputError(
            f"The '--max-gap' option must be a number of percentage points >= 0. Got {args.max_gap} instead."
        )
    cons = Constraints(
        max_gap_pp=args.max_gap,
        against=args.against,
        max_latency_ms=args.max_latency_ms,
        max_flops=args.max_flops,
        max_params=args.max_params,
        device=args.device,
        batch=args.batch,
    )
    recs = [recommend(trials, cons, t) for t in tasks]
    if args.json:
        print("[" + ",\n".join(r.to_json() for r in recs) + "]")
    else:
        print("\n\n".join(r.text() for r in recs))
    return 0 if all(r.met for r in recs) else 1


def _cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_runs, parse_threshold

    thresholds = [parse_threshold(t) for t in args.fail]
    text, regressions = compare_runs(
        Path(args.run_a), Path(args.run_b), thresholds, max_gap_pp=args.max_gap
    )
    print(text)
    return 1 if regressions else 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from bench.doctor import diagnose

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
        from kdcore import get_family, list_families

        _load_cli_plugins(args)
        for name in list_families():
            fam = get_family(name)
            params = ", ".join(
                f"{p.name} ({p.kind.__name__} {p.default[0]:g}-{p.default[1]:g}{', log' if p.log else ''})"
                for p in fam.params
            )
            print(f"{name:14s} {params or '-':44s} {fam.description}")
    else:
        from bench.doctor import run_status

        for path in sorted(Path(args.out).glob("*/manifest.json")):
            print(f"{run_status(path.parent):12s} {path.parent}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdbench", description="How small can the distilled student be?"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite: teacher, Optuna sweep, results, report")
    run.add_argument("suite", nargs="?", help="suite TOML file (omit with --resume)")
    run.add_argument("--trials", type=int, help="override the suite's trial budget")
    run.add_argument("--out", default="results", help="results root (default: results)")
    run.add_argument("--reports", default="reports", help="reports root (default: reports)")
    run.add_argument(
        "--cache", help="folder of trained teachers, shared between runs (default: OUT/teachers)"
    )
    run.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="import MODULE first (it registers model families); repeatable",
    )
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    run.add_argument(
        "--replay",
        type=Path,
        metavar="RUN_DIR",
        help="evaluate that run's search configurations instead of sampling new ones",
    )
    run.add_argument(
        "--storage",
        metavar="URL",
        help="a database URL (postgresql://user@host/db): join or create a shared study there",
    )
    run.add_argument(
        "--study", metavar="NAME", help="the shared study's name (default: suite name + hash)"
    )
    run.add_argument(
        "--workers", type=int, default=1, help="local worker processes on one study (default 1)"
    )
    run.add_argument(
        "--max-gap",
        type=_finite,
        default=0.5,
        help="gap tolerance in pp for the printed recommendation",
    )
    run.set_defaults(func=_cmd_run)

    pl = sub.add_parser("pull", help="rebuild a run folder from a study's storage alone")
    pl.add_argument("--storage", required=True, metavar="URL", help="database URL or journal file")
    pl.add_argument("--study", required=True, metavar="NAME", help="the study's name")
    pl.add_argument("--out", default="results", help="where to write the run folder")
    pl.set_defaults(func=_cmd_pull)

    rep = sub.add_parser("report", help="rebuild reports/<run_id>/ from a run folder")
    rep.add_argument("run_dir")
    rep.add_argument("--reports", default="reports")
    rep.add_argument(
        "--max-gap",
        type=_finite,
        default=0.5,
        help="gap tolerance (pp) for the report's recommendation",
    )
    rep.set_defaults(func=_cmd_report)

    rec = sub.add_parser("recommend", help="smallest student meeting the constraints")
    rec.add_argument("run_dir")
    rec.add_argument(
        "--max-gap",
        type=_finite,
        required=True,
        metavar="PP",
        help="max accuracy gap in percentage points",
    )
    rec.add_argument("--against", choices=("ensemble", "best-member"), default="ensemble")
    rec.add_argument("--max-latency-ms", type=_finite)
    rec.add_argument("--max-flops", type=_finite)
    rec.add_argument("--max-params", type=_finite)
    rec.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    rec.add_argument(
        "--batch",
        choices=("1", "N"),
        default="1",
        help="latency at batch 1 or the suite's large batch N",
    )
    rec.add_argument("--task", help="only this task")
    rec.add_argument("--json", action="store_true", help="print JSON")
    rec.set_defaults(func=_cmd_recommend)

    cmp_ = sub.add_parser("compare", help="compare two runs; exit 1 when a threshold is crossed")
    cmp_.add_argument("run_a")
    cmp_.add_argument("run_b")
    cmp_.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="METRIC:THRESHOLD",
        help="e.g. latency_cpu_b1_p50_ms:10%% or acc_gap:0.5pp (repeatable)",
    )
    cmp_.add_argument("--max-gap", type=_finite, default=0.5)
    cmp_.set_defaults(func=_cmd_compare)

    doc = sub.add_parser("doctor", help="what is damaged in a run folder and what can be recovered")
    doc.add_argument("run_dir")
    doc.add_argument("--repair", action="store_true", help="rebuild what can be rebuilt")
    doc.set_defaults(func=_cmd_doctor)

    lst = sub.add_parser("list", help="list result columns, model families or runs (with status)")
    lst.add_argument("what", choices=("columns", "families", "runs"))
    lst.add_argument("--out", default="results")
    lst.add_argument("--plugin", action="append", metavar="MODULE", help="import MODULE first")
    lst.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "run" and not args.suite and not args.resume:
        parser.error("run needs a SUITE file or --resume RUN_DIR")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
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
        from bench.sweep import RunInterrupted

        if isinstance(exc, RunInterrupted):
            return _interrupted(exc)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(exc: BaseException) -> int:
    from bench.sweep import RunInterrupted

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
