"""Summarise one ``benchmarks/gpu_check.sh`` run into its dated result file.

    python benchmarks/gpu_summary.py WORK OUT.md --dry 0|1 --seconds S

Reads the steps' exit codes and logs, ``resnet.json`` (benchmarks/gpu_resnet.py), the grouped
MLP benchmark's pytest-benchmark JSON and the end-to-end run's manifest. Exits 1 when a step
failed (the file is written all the same, with the failing step's last lines).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

STEPS = {
    "cuda_tests": "CUDA tests (tests/kdcore_tests/test_cuda.py, tests/bench_tests/test_cuda_run.py)",
    "resnet": "timm ResNet-18 student, 3×32×32 (benchmarks/gpu_resnet.py)",
    "grouped_mlp": "grouped small-MLP students (benchmarks/test_bench_gpu.py)",
    "end_to_end": "end-to-end suite (kdbench run)",
}


def _steps(work: Path) -> list[tuple[str, int, int, str]]:
    out = []
    for name in STEPS:
        rc_file = work / "steps" / f"{name}.rc"
        if not rc_file.exists():
            out.append((name, -1, 0, "not run"))
            continue
        rc, secs = (int(v) for v in rc_file.read_text().split())
        log = (work / "steps" / f"{name}.log").read_text(errors="replace").strip().splitlines()
        out.append((name, rc, secs, log[-1] if log else ""))
    return out


def _ok(name: str, rc: int) -> bool:
    """A step passed; ``kdbench run`` exits 1 when nothing is certified — a decision, not a
    failure (a short check's few trials often certify nothing)."""
    return rc == 0 or (name == "end_to_end" and rc == 1)


def _resnet(work: Path) -> list[str]:
    f = work / "resnet.json"
    if not f.exists():
        return ["(no result)"]
    r = json.loads(f.read_text())
    peak = r["peak_flops"]
    lines = [
        f"Device: {r['device']}; torch {r['torch']}; batch {r['batch']}; training FLOPs per image "
        f"{r['train_flops_per_image'] / 1e9:.3f} GFLOP (FlopCounterMode, forward + backward, "
        f"2 per multiply-add); measured matmul peak fp32 (TF32 off) "
        f"{peak['fp32'] / 1e12:.2f} TFLOP/s, bf16 {peak['bf16'] / 1e12:.2f} TFLOP/s.",
        "",
        "| precision | channels_last | model-bound images/s | fraction of peak | "
        "through the streaming path images/s |",
        "|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['precision']} | {'yes' if row['channels_last'] else 'no'} | "
            f"{row['model_images_per_s']:,.0f} | {100 * row['fraction_of_peak']:.2f} % | "
            f"{row['path_images_per_s']:,.0f} |"
        )
    return lines


def _mlp(work: Path) -> list[str]:
    f = work / "mlp.json"
    if not f.exists():
        return ["(no result: skipped without CUDA)"]
    benches = json.loads(f.read_text()).get("benchmarks", [])
    if not benches:
        return ["(no result: skipped without CUDA)"]
    lines = ["| benchmark | median s | extra |", "|---|---|---|"]
    for b in benches:
        extra = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in b.get("extra_info", {}).items()
        )
        lines.append(f"| {b['name']} | {b['stats']['median']:.4f} | {extra} |")
    return lines


def _end_to_end(work: Path) -> list[str]:
    runs = [p for p in (work / "runs").glob("*") if (p / "manifest.json").exists()]
    if not runs:
        return ["(no run folder)"]
    m = json.loads((runs[0] / "manifest.json").read_text())
    lines = [f"Run {runs[0].name}: trained on {m.get('train_device', '?')}."]
    for task, t in m.get("tasks", {}).items():
        timings = t.get("timings_s", {})
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        lines.append(f"- task {task}: {parts}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dry", type=int, default=0)
    ap.add_argument("--seconds", type=int, default=0)
    a = ap.parse_args()
    steps = _steps(a.work)
    missing = (a.work / "missing").read_text().split() if (a.work / "missing").exists() else []
    head = "GPU check" + (" — DRY RUN on CPU (not GPU figures)" if a.dry else "")
    lines = [
        f"# {head} — {a.out.stem.removeprefix('gpu-check-')}",
        "",
        f"`benchmarks/gpu_check.sh{' --dry' if a.dry else ''}` on {platform.node()} "
        f"({platform.machine()}), {a.seconds} s in all. Python packages missing: "
        f"{', '.join(missing) or 'none'}.",
        "",
        "| step | exit | seconds | last line |",
        "|---|---|---|---|",
    ]
    for name, rc, secs, last in steps:
        verdict = "ok" if _ok(name, rc) else "FAILED"
        lines.append(
            f"| {STEPS[name]} | {rc} ({verdict}) | {secs} | {last.replace('|', '/')[:160]} |"
        )
    lines += ["", "## ResNet-18 student", "", *_resnet(a.work)]
    lines += ["", "## Grouped small-MLP students", "", *_mlp(a.work)]
    lines += ["", "## End to end", "", *_end_to_end(a.work), ""]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))
    sys.exit(0 if all(_ok(name, rc) for name, rc, _, _ in steps) else 1)


if __name__ == "__main__":
    main()
