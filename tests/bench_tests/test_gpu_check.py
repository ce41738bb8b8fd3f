"""The prepared GPU check runs in its dry mode on CPU (so that it cannot rot between GPU loans)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_option_is_one_line_and_exit_2() -> None:
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--fast"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "gpu_check.sh: unknown option '--fast' (use --dry, --out DIR, --suite FILE)"
    )


@pytest.mark.slow
def test_the_gpu_check_runs_dry_on_cpu_and_writes_its_result_file(tiny_suite, tmp_path) -> None:
    out = tmp_path / "out"
    r = subprocess.run(
        [
            "bash",
            "benchmarks/gpu_check.sh",
            "--dry",
            "--out",
            str(out),
            "--suite",
            str(tiny_suite()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (result,) = out.glob("gpu-check-*.md")
    text = result.read_text()
    assert "DRY RUN on CPU (not GPU figures)" in text
    assert text.count("(ok)") == 4 and "FAILED" not in text
    rows = [line for line in text.splitlines() if line.startswith(("| fp32 |", "| bf16 |"))]
    assert len(rows) == 4
    assert "trained on cpu" in text
