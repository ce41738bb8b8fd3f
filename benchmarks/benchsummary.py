"""Summarise a pytest-benchmark JSON of `make bench` into a Markdown table.

``python benchmarks/benchsummary.py [FILE_OR_DIR]`` reads the given JSON (or the newest one in the
folder, default ``results/benchmarks``), prints the table and writes it beside the JSON as
``<name>.md``. Ratios are between medians measured in the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.durable.rundir import atomic_write_text

__all__ = ["summarise"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summarise(data: dict[str, Any]) -> str:
    benches = {b["name"]: b for b in data["benchmarks"]}
    machine = data.get("machine_info", {})
    lines = [
        f"Machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}, "
        f"{machine.get('cpu', {}).get('count', '?')} logical CPUs, Python {machine.get('python_version', '?')}; "
        f"run {data.get('datetime', '?')}.",
        "",
        "| benchmark | median s | IQR s | rounds | test acc | GFLOP/s | of matmul peak | vs reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ref = benches.get("test_trial_reference")
    ref_median = ref["stats"]["median"] if ref else None
    for name, b in benches.items():
        st, extra = b["stats"], b.get("extra_info", {})
        ratio = ""
        if ref_median and name.startswith("test_trial_"):
            ratio = f"{ref_median / st['median']:.1f}×"
        lines.append(
            f"| {name} | {st['median']:.4g} | {st['iqr']:.2g} | {st['rounds']} | "
            f"{_fmt(extra.get('test_acc', ''))} | {_fmt(extra.get('achieved_gflops', extra.get('gflops', '')))} | "
            f"{_fmt(extra.get('fraction_of_peak', ''))} | {ratio} |"
        )
    tpm = {
        n: b["extra_info"]
        for n, b in benches.items()
        if "trials_per_minute" in b.get("extra_info", {})
    }
    if tpm:
        lines += [
            "",
            "| seed-suite run (3 seeds per trial) | trials | group_size | trials / minute |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {e['trials']} | {e.get('group_size', '')} | {e['trials_per_minute']:.2f} |"
            for n, e in tpm.items()
        ]
        g = [e["trials_per_minute"] for e in tpm.values() if e.get("grouped")]
        s = [e["trials_per_minute"] for e in tpm.values() if not e.get("grouped")]
        if g and s:
            lines.append(f"\nGrouping on / off: {g[0] / s[0]:.1f}× more trials per minute.")
    sizes: dict[tuple[int, int], dict[str, float]] = {}
    for n, b in benches.items():
        if n.startswith("test_grouping_by_size"):
            e = b["extra_info"]
            sizes.setdefault((e["width"], e["depth"]), {})[
                "grouped" if e["grouped"] else "separate"
            ] = b["stats"]["median"]
    if sizes:
        lines += [
            "",
            "| trial training, 3 seeds + 3 scratch | grouped s | separate s | speed-up |",
            "|---|---|---|---|",
        ]
        for (w, d), t in sorted(sizes.items()):
            if {"grouped", "separate"} <= set(t):
                lines.append(
                    f"| width {w}, depth {d} | {t['grouped']:.3g} | {t['separate']:.3g} | {t['separate'] / t['grouped']:.1f}× |"
                )
    lines += _suite_runs(benches)
    lines += _student_lr(benches)
    lines += _augment(benches)
    grouped = benches.get("test_trial_grouped_per_student", {}).get("extra_info", {})
    if grouped:
        lines.append(
            f"\nThreads: {grouped.get('threads')}; trial = width {grouped.get('width')}, depth {grouped.get('depth')}, "
            f"{grouped.get('epochs')} epochs, batch {grouped.get('batch_size')}, {grouped.get('n_train')} training samples; "
            f"grouped = {grouped.get('group_size')} students at once, timed per student; "
            f"float32 matmul peak {grouped.get('matmul_peak_gflops', float('nan')):.1f} GFLOP/s (2048², same run)."
        )
    return "\n".join(lines) + "\n"


def _suite_runs(benches: dict[str, Any]) -> list[str]:
    """Whole seed-suite runs (test_bench_suite.py): one row per round or path."""
    runs = []
    for name, b in benches.items():
        e = b.get("extra_info", {})
        if "rounds" in e:
            runs += [
                (f"{name} round {i + 1}", s, r)
                for i, (s, r) in enumerate(zip(b["stats"]["data"], e["rounds"], strict=True))
            ]
        elif "path" in e:
            runs.append((name, b["stats"]["median"], e))
    if not runs:
        return []
    lines = [
        "",
        "| seed-suite run | wall s | teacher s | search + certify s | latency s | pruned | recommended (--max-gap 0.5) | certified | file bound pp | recipe gap bound pp |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, wall, r in runs:
        t = r.get("timings_s") or {}
        lines.append(
            f"| {label} | {wall:.1f} | {_fmt(t.get('teacher', ''))} | {_fmt(t.get('search_and_certify', ''))} | "
            f"{_fmt(t.get('latency', ''))} | {r.get('pruned', '')} | {r.get('recommended_arch')}, "
            f"{r.get('recommended_params')} params | {r.get('certified')} of "
            f"{r.get('candidates')} | {_fmt(r.get('certify_bound_pp', ''))} | "
            f"{_fmt(r.get('gap_high_pp', ''))} |"
        )
    return lines


def _augment(benches: dict[str, Any]) -> list[str]:
    """The consistent-teacher trial (test_bench_augment.py): time per trial by teacher mode."""
    trials = {n: b for n, b in benches.items() if n.startswith("test_augment_trial_")}
    if not trials:
        return []
    base = trials.get("test_augment_trial_none", {}).get("stats", {}).get("median")
    lines = [
        "",
        "| digits CNN trial (4 seeds + 4 scratch twins) | median s | vs none | distilled test acc | scratch test acc |",
        "|---|---|---|---|---|",
    ]
    for b in trials.values():
        e, med = b["extra_info"], b["stats"]["median"]
        ratio = f"{med / base:.2f}×" if base else ""
        lines.append(
            f"| {e['mode']} | {med:.3g} | {ratio} | {_fmt(e['distilled_test_acc'])} | "
            f"{_fmt(e['scratch_test_acc'])} |"
        )
    pre = benches.get("test_augment_views_precompute")
    if pre:
        e = pre["extra_info"]
        lines.append(
            f"\nStored views: the teacher ({e['teacher_members']} members) on {e['rows']:,} views "
            f"({e['views']} per image) once, {pre['stats']['median']:.3g} s; their outputs hold "
            f"{e['stored_target_bytes'] / 2**20:.2f} MiB."
        )
    alone = trials.get("test_augment_trial_views_one_by_one")
    views = next((b for n, b in trials.items() if n == "test_augment_trial_views"), None)
    if alone and views:
        lines.append(
            f"Grouping under stored views: {alone['stats']['median'] / views['stats']['median']:.1f}× "
            "faster than the same members one by one."
        )
    return lines


def _student_lr(benches: dict[str, Any]) -> list[str]:
    """The learning-rate probe: mean validation accuracy per student and rate."""
    e = benches.get("test_student_lr", {}).get("extra_info", {})
    if not e:
        return []
    rates = list(e["best_lr_counts"])
    lines = [
        "",
        f"Student learning rate, chosen on {e['split']}: mean accuracy % over {e['seeds']} seeds "
        f"({e['epochs']} epochs, patience {e['patience']}; the suite uses {e['suite_lr']:g}):",
        "",
        "| student | params | " + " | ".join(f"lr {r}" for r in rates) + " |",
        "|---|---|" + "---|" * len(rates),
    ]
    for student, row in e["students"].items():
        cells = " | ".join(f"{row[f'val_acc_pct@{r}']:.2f}" for r in rates)
        lines.append(f"| {student} | {row['params']} | {cells} |")
    lines.append(
        "\nBest rate per student: "
        + ", ".join(f"{r}: {n}" for r, n in e["best_lr_counts"].items())
        + "."
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path("results/benchmarks")
    if target.is_dir():
        files = sorted(target.glob("*.json"), key=lambda p: p.stat().st_mtime)
        if not files:
            print(f"no benchmark JSON in {target}", file=sys.stderr)
            return 2
        target = files[-1]
    text = summarise(json.loads(target.read_text()))
    atomic_write_text(target.with_suffix(".md"), text)
    print(text)
    print(f"written: {target.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
