"""Hinton et al. (2015)'s three transfer-set experiments on kdbench's MNIST subset: runs
``suites/hinton_mnist.toml``, ``hinton_omitted.toml`` and ``hinton_little_data.toml`` with one
teacher cache (the teacher trains once) and writes their rows' columns to
``results/benchmarks/hinton-transfer-<UTC>.md`` (quoted by ``docs/transfer.md``).

    .venv/bin/python benchmarks/hinton_transfer.py      # about 3 minutes on 2 cores
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.records import load_run  # noqa: E402 — after the path is set

SUITES = ("hinton_mnist", "hinton_omitted", "hinton_little_data")
COLUMNS = (
    "ensemble_acc",
    "student_acc",
    "student_acc_ci_low",
    "student_acc_ci_high",
    "scratch_acc",
    "full_scratch_acc",
    "full_scratch_acc_ci_low",
    "full_scratch_acc_ci_high",
    "kd_gain",
    "kd_gain_ci_low",
    "kd_gain_ci_high",
    "gap_closed",
    "gap_closed_ci_low",
    "gap_closed_ci_high",
    "transfer_rows",
    "n_test",
    "n_test_omitted",
    "omitted_acc",
    "omitted_acc_ci_low",
    "omitted_acc_ci_high",
    "bias_shift",
    "omitted_acc_corrected",
    "omitted_acc_corrected_ci_low",
    "omitted_acc_corrected_ci_high",
    "student_acc_corrected",
    "student_acc_corrected_ci_low",
    "student_acc_corrected_ci_high",
    "scratch_omitted_acc",
    "scratch_omitted_acc_ci_low",
    "scratch_omitted_acc_ci_high",
    "student_params",
    "ensemble_params",
    "n_seeds",
    "temperature",
    "alpha",
    "arch",
)


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="hinton-"))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    lines = [
        f"# Hinton et al. (2015) reproduction suites: measured {stamp}",
        "",
        f"Machine: {platform.node() or 'this machine'} ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, no GPU used), torch "
        f"{__import__('torch').__version__}; kdbench at commit {commit or 'unknown'}.",
        "Command: `.venv/bin/python benchmarks/hinton_transfer.py` (each suite run as "
        "`kdbench run suites/<suite>.toml` with one `--cache`, in this order).",
        "Accuracies are fractions, means over the seeds; intervals 95 %, every one with the "
        "test-set error (accuracies: Student-t over seeds with the per-example error, at least "
        "Wilson's interval on the examples it is measured on; gaps and gains paired; "
        "gap_closed: bootstrap over test examples and seeds). Quoted by docs/transfer.md.",
        "",
    ]
    for suite in SUITES:
        proc = subprocess.run(
            [
                sys.executable, "-m", "bench", "run", str(ROOT / "suites" / f"{suite}.toml"),
                "--out", str(work / "results"), "--reports", str(work / "reports"),
                "--cache", str(work / "cache"), "-q",
            ],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        if proc.returncode not in (0, 1):
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        run_dir = max((work / "results").glob(f"*_{suite}"))
        run = load_run(run_dir)
        rows = run.trials[run.trials["state"] == "complete"]
        row = rows[rows["phase"] == "search"].iloc[0]
        timings = {k: round(v, 1) for k, v in run.manifest.tasks[row["task"]].timings_s.items()}
        lines += [
            f"## {suite}",
            "",
            f"run `{run_dir.name}`, timings (s) {timings}",
            "",
            "| column | value |",
            "|---|---|",
            *(
                f"| `{c}` | {_cell(row[c])} |"
                for c in COLUMNS
                if c in row and str(row[c]) not in ("nan", "<NA>", "None")
            ),
            "",
        ]
        print(f"{suite}: done", flush=True)
    dest = ROOT / "results" / "benchmarks" / f"hinton-transfer-{stamp}.md"
    dest.write_text("\n".join(lines))
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
