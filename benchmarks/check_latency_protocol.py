"""Check the latency protocol on the seed suite's models: speed-ups from the interleaved pass
(:func:`kdcore.measure_latencies`, what a run's pass does at each setting) against the adjacent protocol it
replaced (the ensemble timed, then each student, one after the other), repeated; and the
p99 of single calls against the p99 of block means.

Usage: ``python benchmarks/check_latency_protocol.py [--reps 5] [--load]``; ``--load`` runs a
CPU-bound process that starts and stops every 1.5 s beside the measurement (a shared machine),
which is what interleaving is for. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import time
from datetime import UTC, datetime

import numpy as np
import torch
from torch.utils import benchmark

from bench.config.suite import load_suite
from bench.latency.measure import ensemble_forms
from kdcore import TeacherEnsemble, build_student
from kdcore.latency import measure_latencies, measure_latency

STUDENTS = {"w12xd2": (12, 2), "w40xd1": (40, 1), "w120xd3": (120, 3)}


def _burn(stop: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    """On for 1.5 s, off for 1.5 s: a neighbour that comes and goes."""
    while not stop.is_set():
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            pass
        time.sleep(1.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--load", action="store_true")
    args = ap.parse_args()
    cfg = load_suite("suites/seed.toml").measure
    torch.manual_seed(0)
    ensemble = TeacherEnsemble([build_student("seed_teacher", (20,), 2) for _ in range(5)])
    forms = ensemble_forms(ensemble)
    students = {
        k: build_student("mlp", (20,), 2, width=w, depth=d) for k, (w, d) in STUDENTS.items()
    }
    stop = mp.Event()
    burner = mp.Process(target=_burn, args=(stop,), daemon=True) if args.load else None
    if burner is not None:
        burner.start()
    speedups: dict[str, dict[str, list[float]]] = {"interleaved": {}, "adjacent": {}}
    p99: dict[str, list[float]] = {"single calls": [], "block means": []}
    walls: dict[str, list[float]] = {"interleaved": [], "adjacent": []}
    x = torch.randn(1, 20)
    try:
        for _ in range(args.reps):
            kw = {"threads": cfg.threads, "warmup": cfg.warmup, "min_run_time": cfg.min_run_time}
            t0 = time.perf_counter()
            res = measure_latencies({**forms, **students}, x, block_s=cfg.block_ms / 1e3, **kw)
            walls["interleaved"].append(time.perf_counter() - t0)
            ens = min(res[f].p50_ms for f in forms)
            for k in students:
                speedups["interleaved"].setdefault(k, []).append(ens / res[k].p50_ms)
            small = res["w12xd2"]
            p99["single calls"].append(small.p99_ms)
            t0 = time.perf_counter()
            one = {
                n: measure_latency(m, x, block_s=cfg.block_ms / 1e3, **kw) for n, m in forms.items()
            }
            for k, m in students.items():
                r = measure_latency(m, x, block_s=cfg.block_ms / 1e3, **kw)
                speedups["adjacent"].setdefault(k, []).append(
                    min(o.p50_ms for o in one.values()) / r.p50_ms
                )
            walls["adjacent"].append(time.perf_counter() - t0)
            p99["block means"].append(
                _block_p99(students["w12xd2"], x, small.number_per_block, small.n_blocks)
            )
    finally:
        stop.set()
        if burner is not None:
            burner.join()
    print(
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; {args.reps} repetitions; "
        f"batch 1, {cfg.threads} thread(s), warm-up {cfg.warmup}, min_run_time {cfg.min_run_time} s, "
        f"block {cfg.block_ms} ms; load beside: {'on/off every 1.5 s' if args.load else 'none'}.\n"
    )
    print("| student | protocol | speed-up median | min | max | (max − min) / median |")
    print("|---|---|---|---|---|---|")
    for k in students:
        for proto in ("interleaved", "adjacent"):
            v = speedups[proto][k]
            med = statistics.median(v)
            print(
                f"| {k} | {proto} | {med:.2f}× | {min(v):.2f}× | {max(v):.2f}× | {(max(v) - min(v)) / med * 100:.1f} % |"
            )
    print()
    for proto, w in walls.items():
        print(
            f"* wall time of one {proto} pass of 2 ensemble forms + 3 students: median {statistics.median(w):.2f} s"
        )
    print(
        f"* w12xd2 p99 over single calls: median {statistics.median(p99['single calls']) * 1e3:.1f} µs; "
        f"p99 of block means (old): median {statistics.median(p99['block means']) * 1e3:.1f} µs"
    )


def _block_p99(model: torch.nn.Module, x: torch.Tensor, number: int, n: int) -> float:
    """The old p99 column: the 99th percentile of n block means of ``number`` calls."""
    timer = benchmark.Timer(stmt="m(x)", globals={"m": model.eval(), "x": x}, num_threads=1)
    with torch.inference_mode():
        return float(np.percentile([timer.timeit(number).median * 1e3 for _ in range(n)], 99))


if __name__ == "__main__":
    main()
