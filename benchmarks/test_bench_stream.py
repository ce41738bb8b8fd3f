"""Peak memory of the streaming path on a 2 GiB image folder (issue #35): `make bench` runs
benchmarks/stream_memory.py in a fresh process and holds it to the bar (peak RSS < 1 GB).

The dataset is built once under /tmp/kdbench-stream-data (about 2 minutes on 2 cores) and
reused; the measured run takes about 3 minutes. The result file is
results/benchmarks/stream-memory-<UTC time>.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stream_two_gib_under_one_gb(benchmark) -> None:
    before = set((ROOT / "results" / "benchmarks").glob("stream-memory-*.json"))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "stream_memory.py"), "--gib", "2.0"]
    benchmark.pedantic(lambda: subprocess.run(cmd, check=True, cwd=ROOT), rounds=1, iterations=1)
    (new,) = set((ROOT / "results" / "benchmarks").glob("stream-memory-*.json")) - before
    r = json.loads(new.read_text())
    peak_gb = max(r["peak_rss_gib"], r["largest_worker_peak_rss_gib"]) * 2**30 / 1e9
    benchmark.extra_info.update(
        {"peak_rss_gb": peak_gb, "data_gib": r["data"]["bytes"] / 2**30, "file": new.name}
    )
    assert r["data"]["bytes"] >= 2 * 2**30 * 0.99
    assert peak_gb < 1.0
