"""The capacity law, checked on real sweeps: (1) the held-out check — fit on the smaller
two-thirds of the sizes, predict the larger third — on every default-strategy run; (2)
``[search] strategy = "predict"`` against the default search: the certified student's size
and the search's training compute, per sampler seed; (3) the band's coverage on synthetic
sweeps drawn from a known law. Writes ``results/benchmarks/capacity-law-<UTC>.md``.

    .venv/bin/python benchmarks/capacity_law.py                       # ~75 min on 2 cores
    .venv/bin/python benchmarks/capacity_law.py --suites seed --seeds 0
    .venv/bin/python benchmarks/capacity_law.py --work /tmp/law          # continue there

Each suite runs at its own tolerance (:data:`MAX_GAPS`, else :data:`MAX_GAP`): one where the
default search certifies a student, or there is nothing to compare. 'Within one step' is
judged on the default run's validation frontier as certification sees it (within
validation's noise); the summary also counts the predict runs certified at most one step
larger than the default's, and — the yardstick's own noise — how often a default run is
within one step of the default runs of the other sampler seeds.

Compute is the search phase's training cost: the sum over its trial rows (pruned ones
included) of ``trial_time_s × train_threads`` — CPU-seconds of the trials' training groups,
measured in the same session on the same machine for both strategies.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.decision import law as capacity_law  # noqa: E402 — after the path is set
from bench.decision.protocol import validation_frontier  # noqa: E402 — after the path is set
from bench.decision.recommend import Constraints, recommend  # noqa: E402 — after the path is set
from bench.records import load_run  # noqa: E402 — after the path is set

MAX_GAP = 0.005
# Digits has 1,797 images (about 360 test): a test bound's own margin is about 2 pp there, so
# 0.5 pp certifies nothing under either strategy and compares nothing.
MAX_GAPS = {"digits": 0.03, "cnn_digits": 0.03}


def _gap(suite: str) -> float:
    return MAX_GAPS.get(suite, MAX_GAP)


def _variant(text: str, seed: int, strategy: str) -> str:
    text = re.sub(r"(?m)^sampler_seed = \d+", f"sampler_seed = {seed}", text)
    if "sampler_seed" not in text:
        text = re.sub(r"(?m)^\[budget\]$", f"[budget]\nsampler_seed = {seed}", text)
    if strategy != "sample":
        text = re.sub(r"(?m)^\[search\]$", f'[search]\nstrategy = "{strategy}"', text)
    return text


COLLECT: list[bool] = [False]  # --collect: summarise the runs already in the work folder


def _finished(folder: Path) -> Path | None:
    """The finished run in ``folder`` (its manifest says so), if any."""
    for p in sorted(folder.glob("*/manifest.json")):
        if '"status": "complete"' in p.read_text():
            return p.parent
    return None


def _run(work: Path, suite: str, seed: int, strategy: str) -> Path:
    done = work / f"r-{suite}-{strategy}-{seed}"
    if (found := _finished(done)) is not None:  # --work: a finished run is not run again
        return found
    if COLLECT[0]:
        raise LookupError(f"no finished run in {done}")
    if done.exists():  # an unfinished run of an interrupted invocation: start it afresh
        shutil.rmtree(done)
    path = work / f"{suite}-{strategy}-{seed}.toml"
    path.write_text(_variant((ROOT / "suites" / f"{suite}.toml").read_text(), seed, strategy))
    out = work / f"r-{suite}-{strategy}-{seed}"
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench", "run", str(path), "--workers", "2",
            "--max-gap", str(_gap(suite) * 100), "--out", str(out), "--cache", str(work / "cache"),
            "--reports", str(work / "p"), "-q",
        ],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{path.name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return next(p for p in out.iterdir() if (p / "manifest.json").is_file())


def _summary(run_dir: Path, max_gap: float) -> dict:
    run = load_run(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    n_val = next(iter(manifest["tasks"].values()))["sizes"]["val"]
    t = run.trials
    search = t[t["phase"] == "search"]
    compute = float((search["trial_time_s"] * search["train_threads"]).sum())
    rec = recommend(t, Constraints(max_gap=max_gap), None, run.seeds)
    chosen = rec.chosen
    # the frontier certification chooses from: within validation's noise
    front = validation_frontier(search[search["state"] == "complete"], n_val)
    kd = capacity_law.fit_law(
        capacity_law.law_points(
            t, run.seeds, size_param=capacity_law.size_param_of(str(t["family"].iloc[0]))
        )
    )
    hold = capacity_law.holdout(kd.points) if kd is not None else None
    return {
        "run": run_dir.name,
        "started": manifest["created_utc"][:16].replace("T", " "),
        "trials": len(search),
        "compute": compute,
        "certified": int(chosen["student_params"]) if chosen else None,
        "arch": chosen["arch"] if chosen else "—",
        "frontier": sorted(int(v) for v in front["student_params"]),
        "holdout": hold,
        "law": rec.law,
        "contradicted": rec.law_contradicted,
    }


def _steps(ref: int, frontier: list[int]) -> tuple[int, int]:
    """The sizes one step below and above ``ref`` on ``frontier`` (``ref`` itself at an
    end)."""
    frontier = sorted({*frontier, ref})
    i = frontier.index(ref)
    return frontier[max(i - 1, 0)], frontier[min(i + 1, len(frontier) - 1)]


def _within_step(size: int | None, ref: int | None, frontier: list[int]) -> str:
    """Whether ``size`` lies within one step of ``ref`` on the default run's frontier."""
    if size is None or ref is None:
        return "—"
    lo, hi = _steps(ref, frontier)
    return "yes" if lo <= size <= hi else "no"


def _not_larger(size: int | None, ref: int | None, frontier: list[int]) -> bool:
    """Whether ``size`` was certified and is at most one step above ``ref`` (a smaller
    certified student is within the same tolerance at the same family-wise error)."""
    return size is not None and (ref is None or size <= _steps(ref, frontier)[1])


def _simulate(n_sweeps: int) -> list[str]:
    """Coverage of the 90 % bands on synthetic sweeps from a known law (3 shapes, 28
    points, seeds' error 0.3 pp and configuration scatter 0.2 pp)."""
    rng = np.random.default_rng(2026)
    amp = np.array([0.5, 0.8, 1.2])
    curve, new, hold = [], [], []
    for rep in range(n_sweeps):
        x = np.exp(rng.uniform(np.log(200), np.log(7000), 28))
        g = rng.integers(0, 3, 28)
        truth = 0.012 + amp[g] * (x / 200) ** -0.9
        y = truth + rng.normal(0, np.hypot(0.003, 0.002), 28)
        pts = capacity_law.LawPoints(
            x, y, np.full(28, 0.003), tuple(f"g{k}" for k in g), np.arange(28)
        )
        law = capacity_law.fit_law(pts, n_boot=200, seed=rep)
        xs = np.array([300.0, 1000.0, 5000.0, 14000.0])
        for k in range(3):
            if f"g{k}" not in law.groups:
                continue
            tv = 0.012 + amp[k] * (xs / 200) ** -0.9
            lo, hi = law.band(xs, f"g{k}", new_point=False)
            curve += list((tv >= lo) & (tv <= hi))
            nv = tv + rng.normal(0, np.hypot(0.003, 0.002), len(xs))
            lo, hi = law.band(xs, f"g{k}", new_point=True)
            new += list((nv >= lo) & (nv <= hi))
        h = capacity_law.holdout(pts, n_boot=200)
        if h is not None:
            hold += [h.covered, h.n]
    covered, n = sum(hold[::2]), sum(hold[1::2])
    return [
        f"Synthetic sweeps ({n_sweeps}, a known law err = 1.2 % + a_g·(N/200)^-0.9, 3 shapes, "
        "28 log-uniform sizes in 200–7,000, noise 0.3 pp seeds + 0.2 pp scatter): 90 % bands "
        f"cover the true curve at 300–14,000 params in {np.mean(curve) * 100:.1f} % of "
        f"{len(curve)} cases, a new trial's error in {np.mean(new) * 100:.1f} % of {len(new)}, "
        f"and the held-out larger third in {covered / n * 100:.1f} % of {n}.",
    ]


def _strategy_table(
    work: Path, suite: str, seeds: list[int], held: list[tuple[str, int, Any]]
) -> list[str]:
    """Both strategies on ``suite`` per sampler seed: the table and its summary line (the
    default runs' held-out checks are appended to ``held``)."""
    lines = [
        f"## `suites/{suite}.toml` (tolerance {_gap(suite) * 100:g} pp)",
        "",
        "| sampler seed | strategy | trials | compute (CPU-s) | certified | params | "
        "within one step | law: predicted size [90 %] | contradicted | run started (UTC) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios, same, smaller, bases, certs = [], [], [], [], []
    for seed in seeds:
        try:
            got = {
                s: _summary(_run(work, suite, seed, s), _gap(suite)) for s in ("sample", "predict")
            }
        except LookupError as exc:
            lines.append(f"| {seed} | — | not run: {exc} | | | | | | | |")
            continue
        base = got["sample"]
        held.append((suite, seed, base["holdout"]))
        for s, r in got.items():
            p = (r["law"] or {}).get("prediction")
            pred = (
                f"{p['size']:,.0f} [{p['interval'][0]:,.0f}, {p['interval'][1]:,.0f}]" if p else "—"
            )
            step = (
                _within_step(r["certified"], base["certified"], base["frontier"])
                if s == "predict"
                else "—"
            )
            lines.append(
                f"| {seed} | {s} | {r['trials']} | {r['compute']:.1f} | {r['arch']} | "
                f"{r['certified'] if r['certified'] is not None else '—'} | {step} | "
                f"{pred} | {'yes' if r['contradicted'] else 'no'} | {r['started']} |"
            )
            if s == "predict":
                same.append(step)
                smaller.append(_not_larger(r["certified"], base["certified"], base["frontier"]))
                certs.append(r["certified"])
        bases.append(base)
        ratios.append(got["predict"]["compute"] / max(base["compute"], 1e-9))
    # the yardstick's own noise: a default run against the default runs of the other seeds
    own = [
        _within_step(b["certified"], a["certified"], a["frontier"])
        for a in bases
        for b in bases
        if a is not b
    ]
    known = [c for c in certs if c is not None]
    ref = [b["certified"] for b in bases if b["certified"] is not None]
    medians = ""
    if known and ref and len(known) == len(certs) and len(ref) == len(bases):
        mid = bases[int(np.argsort([b["certified"] for b in bases])[len(bases) // 2])]
        medians = (
            f" Medians over the sampler seeds: predict {np.median(known):,.0f}, default "
            f"{np.median(ref):,.0f} params (within one step of the median default run's: "
            f"{_within_step(int(np.median(known)), mid['certified'], mid['frontier'])})."
        )
    return [
        *lines,
        "",
        f"Predict's compute as a share of the default's: "
        f"{', '.join(f'{r * 100:.0f} %' for r in ratios)} (median "
        f"{np.median(ratios) * 100:.0f} %); certified within one step of the default: "
        f"{same.count('yes')} of {len(same)}; certified and at most one step larger: "
        f"{sum(smaller)} of {len(smaller)}. The default against its own runs of the other "
        f"sampler seeds, within one step: {own.count('yes')} of {len(own)}.{medians}",
        "",
    ]


def _header(args: argparse.Namespace, stamp: str) -> list[str]:
    """The result file's title and how its runs were made."""
    return [
        f"# The capacity law on real sweeps — {stamp}",
        "",
        f"`.venv/bin/python benchmarks/capacity_law.py --suites {' '.join(args.suites)} --seeds "
        f"{' '.join(map(str, args.seeds))} --holdout-suites {' '.join(args.holdout_suites)}"
        f"{f' --collect {args.collect}' if args.collect else ''}"
        f"{f' --work {args.work}' if args.work and not args.collect else ''}` on {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.machine()}), CPU only; every run `--workers 2 --max-gap {MAX_GAP * 100:g}` (digits: "
        f"{MAX_GAPS['digits'] * 100:g}). "
        "Compute = Σ trial_time_s × train_threads over the search phase's rows (CPU-seconds "
        "of training, pruned trials included). 'Within one step': the predict run's "
        "certified size lies between the neighbours of the default run's certified size on "
        "the default run's validation frontier (the one certification chooses from: within "
        "validation's noise).",
        "",
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suites", nargs="+", default=["seed", "seed_classic", "digits"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument(
        "--holdout-suites",
        nargs="*",
        default=["cnn_digits", "mnist"],
        help="suites run once (default strategy, sampler seed 0) for the held-out check only",
    )
    ap.add_argument("--sweeps", type=int, default=100)
    ap.add_argument(
        "--work",
        type=Path,
        help="the work folder (default: a new temporary one); its finished runs are reused, "
        "so an interrupted invocation continues where it stopped",
    )
    ap.add_argument(
        "--collect",
        type=Path,
        help="summarise the finished runs of an earlier invocation's work folder instead of "
        "running (pairs not finished there are left out)",
    )
    args = ap.parse_args()
    COLLECT[0] = args.collect is not None
    work = args.collect or args.work or Path(tempfile.mkdtemp(prefix="law-"))
    work.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    t0 = datetime.now(UTC)
    lines = _header(args, stamp)
    held: list[tuple[str, int, capacity_law.Holdout | None]] = []
    for suite in args.suites:
        lines += _strategy_table(work, suite, args.seeds, held)
    for suite in args.holdout_suites:
        try:
            held.append(
                (suite, 0, _summary(_run(work, suite, 0, "sample"), _gap(suite))["holdout"])
            )
        except LookupError:
            lines.append(f"Held-out suite `{suite}`: not run.")
    lines += [
        "## Held-out check (default-strategy runs)",
        "",
        "| suite | sampler seed | fit on sizes ≤ | held out | covered by the 90 % band | "
        "median abs. error (pp) |",
        "|---|---|---|---|---|---|",
    ]
    tot_c = tot_n = 0
    for suite, seed, h in held:
        if h is None:
            lines.append(f"| {suite} | {seed} | — | — | too few sizes | — |")
            continue
        tot_c, tot_n = tot_c + h.covered, tot_n + h.n
        lines.append(
            f"| {suite} | {seed} | {h.cut:,.0f} | {h.n} | {h.covered} | "
            f"{np.median(h.abs_error) * 100:.2f} |"
        )
    if tot_n:
        lines += ["", f"In aggregate: {tot_c} of {tot_n} ({tot_c / tot_n * 100:.1f} %).", ""]
    lines += ["## Simulation", "", *_simulate(args.sweeps), ""]
    minutes = (datetime.now(UTC) - t0).total_seconds() / 60
    lines.append(f"Wall time {minutes:.1f} min.")
    out = ROOT / "results" / "benchmarks" / f"capacity-law-{stamp}.md"
    out.write_text("\n".join(lines) + "\n")
    print(out)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
