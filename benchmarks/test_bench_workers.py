"""Trials per minute with 1 and 2 local workers (issue #8), on the same configurations.

The seed suite restricted to small students (width 4-64, log; depth 1-4), 40 trials, 2 seeds
(each trial trains 2 distilled students and, for new architectures, their scratch baselines),
certification off, the teacher cached. The 1-worker run samples; the 2-worker run replays its
configurations, so both do the same work. Recorded: the whole run's wall time, and the
search phase alone (from the manifest's timings) — trials per minute for both.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bench.config.suite import load_suite
from bench.records import read_trials
from bench.run.options import RunOptions
from bench.run.sweep import run_suite
from bench.threads import all_cores
from bench.validation import Range

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 40


@pytest.fixture(scope="module")
def worker_runs(tmp_path_factory) -> dict[str, object]:
    return {"root": tmp_path_factory.mktemp("workers")}


def _small_suite():
    suite = load_suite(ROOT / "suites" / "seed_classic.toml")
    search = dataclasses.replace(
        suite.search, arch=(("width", Range(4, 64, True)), ("depth", Range(1, 4)))
    )
    return dataclasses.replace(
        suite,
        search=search,
        budget=dataclasses.replace(suite.budget, trials=TRIALS, seeds=2),
        certify=dataclasses.replace(suite.certify, candidates=0),
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_trials_per_minute(benchmark, seed_setup, worker_runs, workers: int) -> None:
    replay = worker_runs.get(1)
    if workers > 1 and replay is None:
        pytest.skip("needs the 1-worker run first")
    out = worker_runs["root"] / f"w{workers}"
    cache = ROOT / "results" / "teachers"
    run_dir = benchmark.pedantic(
        lambda: run_suite(
            _small_suite(),
            RunOptions(out_root=out, cache_dir=cache, workers=workers, replay=replay),
        ),
        rounds=1,
        iterations=1,
    )
    worker_runs[workers] = run_dir
    trials = read_trials(run_dir)
    timings = json.loads((run_dir / "manifest.json").read_text())["tasks"]["seed"]["timings_s"]
    wall = benchmark.stats.stats.median
    benchmark.extra_info.update(
        workers=workers,
        threads_per_worker=max(1, all_cores() // workers),
        trials=len(trials),
        trials_per_minute=len(trials) / wall * 60,
        search_phase_s=timings["search_and_certify"],
        search_trials_per_minute=len(trials) / timings["search_and_certify"] * 60,
        configs=sorted(trials["arch"] + " T" + trials["temperature"].round(4).astype(str)),
    )
    if replay is not None:
        first = read_trials(replay)
        assert sorted(first["arch"]) == sorted(trials["arch"])  # the same work
