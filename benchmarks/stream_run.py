"""Peak memory of a whole `kdbench run` on a streamed image folder of at least 2 GiB (issue #35).

`benchmarks/stream_memory.py` measures the library pieces; this one runs the product: a suite
with ``[task] kind = "images"`` on the same synthetic folder (built once by that script:
10,920 RGB 256×256 PNG files, 2.00 GiB), resized to 64×64 in the DataLoader workers, a CNN
teacher trained here (1 member, 1 epoch) whose outputs on every split are computed in
streaming passes (top-3 of 10 classes kept for the training split), one search trial of a CNN
student (2 seeds: distilled + scratch twins, 1 epoch each) on the streamed path, and the
latency pass. Certification is off (it would repeat the same work on fresh seeds).

The run is a child process (``python -m bench run``); its peak resident memory and its
DataLoader workers' are read with ``getrusage(RUSAGE_CHILDREN)`` after it exits — the largest
single process among them (forked workers share the parent's pages, so processes are not
additive). Writes ``results/benchmarks/stream-run-<UTC time>.md`` (and ``.json``).

    .venv/bin/python benchmarks/stream_run.py [--data DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from stream_memory import BAR_BYTES, build_folder  # noqa: E402 — after the path it needs

SUITE = """
name = "stream-run"

[task]
kind = "images"
name = "stream-run"
path = "{data}"
size = [64, 64]
val_fraction = 0.1
test_fraction = 0.1
loader_workers = {workers}

[teacher]
family = "cnn"
arch = {{ channels = 16, blocks = 2 }}
members = 1
epochs = 1
batch_size = 32
top_k = 3

[student]
family = "cnn"
epochs = 1
batch_size = 32

[search]
channels = {{ low = 4, high = 8, log = true }}
blocks = 1
temperature = 4.0
alpha = 0.9

[budget]
trials = 1
seeds = 2

[measure]
batch = 16
min_run_time = 0.01
warmup = 1
multi_thread = false
runtimes = ["torch"]

[certify]
candidates = 0
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path("/tmp/kdbench-stream-data"))
    args = ap.parse_args()
    built = build_folder(args.data, args.gib, max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="kdbench-stream-run-") as tmp:
        work = Path(tmp)
        suite = work / "suite.toml"
        suite.write_text(SUITE.format(data=args.data, workers=args.workers))
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "run", str(suite), "--out", str(work / "r"),
             "--cache", str(work / "c"), "--reports", str(work / "p"), "-v"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        if proc.returncode not in (0, 1):
            sys.exit(f"kdbench run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        import pandas as pd

        (run,) = list((work / "r").iterdir())
        trials = pd.read_parquet(run / "trials.parquet")
        manifest = json.loads((run / "manifest.json").read_text())
        phases = [line for line in proc.stderr.splitlines() if " in " in line and " s" in line]
    row = trials.iloc[0]
    sizes = manifest["tasks"]["stream-run"]["sizes"]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    ok = peak < BAR_BYTES
    lines = [
        f"# `kdbench run` on a streamed {built['bytes'] / 2**30:.2f} GiB image folder — {stamp}",
        "",
        f"`.venv/bin/python benchmarks/stream_run.py --workers {args.workers}` on "
        f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()}), CPU only. The "
        f"data: {built['images']:,} PNG files, RGB 256×256, 10 classes, "
        f"{built['bytes'] / 2**30:.2f} GiB on disk, resized to 64×64 in {args.workers} "
        f"DataLoader workers; split {sizes['train']:,} / {sizes['val']:,} / {sizes['test']:,}. "
        "Suite: CNN teacher trained here (1 member, 1 epoch), its top-3 training outputs on "
        "disk, 1 search trial of a CNN student (2 seeds, distilled and scratch, 1 epoch "
        "each), latency pass; no certification.",
        "",
        f"- **Peak RSS of the largest process of the run: {peak / 2**30:.3f} GiB = "
        f"{peak / 1e9:.3f} GB** (the `kdbench run` process or one of its DataLoader workers; "
        f"`import torch`, the CUDA build, is about 0.49 GiB of it). Bar: under 1 GB — "
        f"{'met' if ok else 'NOT met'}.",
        f"- Wall time: {wall:.0f} s. Trial: `{row['state']}`, path `{row['train_path']}`, "
        f"teacher targets: {row['teacher_targets']}; ensemble test accuracy "
        f"{row['ensemble_acc']:.3f}, student {row['student_acc']:.3f} (scratch "
        f"{row['scratch_acc']:.3f}) after one epoch.",
        "",
        "Phases (the run's own log):",
        "",
        *[f"    {line}" for line in phases[-12:]],
    ]
    dest = ROOT / "results" / "benchmarks" / f"stream-run-{stamp}"
    dest.with_suffix(".md").write_text("\n".join(lines) + "\n")
    dest.with_suffix(".json").write_text(
        json.dumps(
            {"peak_rss_bytes": peak, "wall_s": wall, "sizes": sizes, "data": built}, indent=1
        )
    )
    print("\n".join(lines))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
