"""The deployed forms certified on real suites: each suite run once with
``[ship] forms = ["fp32", "int8_dynamic", "int8_static"]`` at a tolerance its test split can
certify; per certification candidate, every form's bound, mark, onnxruntime latency (batch 1,
the run's interleaved pass, ``[measure] threads`` intra-op threads) and file size; the
decision as printed. Writes ``results/benchmarks/forms-<UTC>.md`` (the docs quote ``forms-final.md``).

    .venv/bin/python benchmarks/forms_check.py [--suites cnn_digits mnist_timm] [--max-gap 4]
    # about 10 minutes a suite on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import fmt  # noqa: E402 — after the path is set
from bench.decision.recommend import Constraints, by_form, recommend  # noqa: E402 — after the path is set
from bench.records import load_run  # noqa: E402 — after the path is set

FORMS = ["fp32", "int8_dynamic", "int8_static"]


def run_suite(name: str, max_gap: float, work: Path) -> tuple[Path, float, str]:
    """The suite with [ship] forms, run end to end; its run folder, minutes and printout."""
    data = tomllib.loads((ROOT / "suites" / f"{name}.toml").read_text())
    data["name"] = f"{name}_forms"
    data["ship"] = {"forms": FORMS}
    suite = work / f"{name}_forms.toml"
    suite.write_text(tomli_w.dumps(data))
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(suite), "--workers", "2", "--max-gap",
         str(max_gap), "--out", str(work / "r"), "--reports", str(work / "p"),
         "--cache", str(work / "c")],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    if res.returncode not in (0, 1):
        raise SystemExit(f"{name}: kdbench run failed:\n{res.stderr[-3000:]}")
    (run,) = [p for p in (work / "r").iterdir() if p.name.endswith(f"{name}_forms")]
    return run, minutes, res.stdout


def table(run: Path, max_gap: float) -> tuple[list[str], str]:
    """Markdown rows of every (candidate, form) of round 0, and the decision line."""
    trials = load_run(run).trials
    task = str(trials["task"].iloc[0])
    cert = trials[(trials["phase"] == "certify") & (trials["state"] == "complete")]
    pairs = by_form(cert.sort_values("certify_rank"), "latency_ort_cpu_b1_p50_ms")
    lines = [
        "| rank | student | params | form | test acc % | gap pp | bound pp | certified | "
        "ORT b1 p50 ms | file bytes | agrees with fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in pairs.sort_values(["certify_rank", "form_rank"]).to_dict("records"):
        f = r["form"]
        agree = "1" if f == "fp32" else fmt.number(r.get(f"form_agreement_{f}"), 4)
        lines.append(
            f"| {int(r['certify_rank'])} | {r['arch']} | {fmt.count(r['student_params'])} | {f} | "
            f"{fmt.pct(r['file_acc'])} | {fmt.pct(r['file_gap'])} | "
            f"{fmt.pct(r['certify_bound'])} | {'yes' if r['certified'] is True else 'no'} | "
            f"{fmt.number(r['latency_ort_cpu_b1_p50_ms'], 4)} | "
            f"{fmt.count(r.get(f'file_bytes_{f}'))} | {agree} |"
        )
    rec = recommend(trials, Constraints(max_gap=max_gap / 100), task)
    chosen = rec.chosen
    decision = (
        "nothing certified"
        if chosen is None
        else f"ships {chosen['arch']} ({fmt.count(chosen['student_params'])} params) in its "
        f"**{chosen['form']}** form, bound {fmt.pct(chosen['certify_bound'])} pp"
    )
    return lines, decision


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suites", nargs="+", default=["cnn_digits", "mnist_timm"])
    p.add_argument("--max-gap", type=float, default=4.0, help="the tolerance, pp")
    args = p.parse_args()
    stamp = datetime.now(UTC)
    out = [
        f"# Deployed forms certified — {stamp:%Y-%m-%dT%H%MZ}",
        "",
        f"`.venv/bin/python benchmarks/forms_check.py --suites {' '.join(args.suites)} "
        f"--max-gap {args.max_gap:g}` on {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.machine()}); each suite with `[ship] forms = {FORMS}` and "
        "`--workers 2`. Latency: onnxruntime on the CPU, batch 1, the suite's `[measure] "
        "threads` intra-op threads, median of block means, every form timed in the same "
        "interleaved pass. The forms' bounds are each at the round's level / 3 (Bonferroni "
        "over the forms).",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.suites:
            work = Path(tmp) / name
            work.mkdir()
            run, minutes, printed = run_suite(name, args.max_gap, work)
            lines, decision = table(run, args.max_gap)
            out += [
                f"## `suites/{name}.toml` at {args.max_gap:g} pp ({minutes:.1f} min)",
                "",
                f"Decision: {decision}.",
                "",
                *lines,
                "",
                "Printed:",
                "",
                "```",
                *[ln for ln in printed.splitlines() if not ln.startswith("[")][:12],
                "```",
                "",
            ]
            print("\n".join(out[-20:]), flush=True)
    path = ROOT / "results" / "benchmarks" / f"forms-{stamp:%Y%m%dT%H%MZ}.md"
    path.write_text("\n".join(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
