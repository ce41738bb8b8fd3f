from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.decision.protocol import certify_seeds
from bench.group.rows import arch_cells
from bench.records import SCHEMA_VERSION, to_frame

TINY_SUITE = """
name = "tiny"

[task]
kind = "synthetic"
name = "tiny"
n_samples = 1200
n_features = 8
n_informative = 6
n_redundant = 0
n_classes = 3
n_clusters_per_class = 1
seed = 0

[teacher]
members = 2
epochs = 3
batch_size = 128

[student]
epochs = 3
batch_size = 128

[search]
width = { low = 4, high = 32, log = true }
depth = { low = 1, high = 2 }
temperature = { low = 1.0, high = 8.0, log = true }
alpha = { low = 0.5, high = 1.0 }

[budget]
trials = 3
seeds = 2

[measure]
device = "cpu"
batch = 16
min_run_time = 0.005
warmup = 1
multi_thread = false
runtimes = ["torch"]  # onnxruntime timing: its own tests (0.5 s of export per model)

[certify]
candidates = 0
"""
OFF = "[certify]\ncandidates = 0\n"


def assert_refused(code: int, out: str, err: str, expected: str, results: Path) -> None:
    """Bad input: exit 2, one line naming ``expected`` on stderr, no traceback, no run folder
    and no cached teacher under ``results``."""
    assert code == 2, (out, err)
    assert expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    runs = [p for p in results.iterdir() if p.name != "teachers"] if results.exists() else []
    assert not runs, f"a run folder was created: {runs}"
    assert not (results / "teachers").exists() or not any((results / "teachers").iterdir())


def with_certify(suite: str, body: str) -> str:
    """``suite`` (the tiny suite's text) with its ``[certify]`` table (off) replaced."""
    assert OFF in suite
    return suite.replace(OFF, "[certify]\n" + body)


@pytest.fixture
def tiny_suite(tmp_path: Path):
    """Write the tiny suite (optionally with text appended or replaced) and return its path."""

    def make(
        extra: str = "", replace: dict[str, str] | None = None, name: str = "tiny.toml"
    ) -> Path:
        text = TINY_SUITE
        for old, new in (replace or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / name
        path.write_text(text + extra)
        return path

    return make


def make_row(**kw: Any) -> dict[str, Any]:
    """A completed trial row with plausible defaults; override any column."""
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": "fixture",
        "task": "t",
        "trial": 0,
        "phase": "search",
        "state": "complete",
        "fail_reason": "",
        "family": "mlp",
        "width": 8,
        "depth": 1,
        "temperature": 4.0,
        "alpha": 0.9,
        "n_seeds": 3,
        "seed": 0,
        "student_params": 1000,
        "ensemble_params": 100_000,
        "student_flops": 2000,
        "ensemble_flops": 200_000,
        "student_acc": 0.95,
        "ensemble_acc": 0.97,
        "best_member_acc": 0.96,
        "mean_member_acc": 0.955,
        "scratch_acc": 0.94,
        "student_val_acc": 0.95,
        "ensemble_val_acc": 0.97,
        "latency_cpu_b1_p50_ms": 0.05,
        "n_test": 4000,
        "ensemble_loop_latency_cpu_b1_p50_ms": 0.5,
        "ensemble_fused_latency_cpu_b1_p50_ms": 0.2,
    }
    row.update(kw)
    if row["family"] == "mlp":
        arch = {"width": row.pop("width"), "depth": row.pop("depth")}
        row.update(arch_cells("mlp", arch))
    row.setdefault("param_ratio", row["student_params"] / row["ensemble_params"])
    row.setdefault("flops_ratio", row["student_flops"] / row["ensemble_flops"])
    row.setdefault("acc_gap", row["ensemble_acc"] - row["student_acc"])
    row.setdefault("kd_gain", row["student_acc"] - row["scratch_acc"])
    half = row.pop("half_ci", 0.002 if row["n_seeds"] >= 2 else math.nan)
    for col, centre in (
        ("acc_gap", row["acc_gap"]),
        ("kd_gain", row["kd_gain"]),
        ("student_acc", row["student_acc"]),
    ):
        row.setdefault(f"{col}_ci_low", centre - half)
        row.setdefault(f"{col}_ci_high", centre + half)
    row.setdefault("acc_gap_pi_low", row["acc_gap"] - 2 * half)
    row.setdefault("acc_gap_pi_high", row["acc_gap"] + 2 * half)
    row.setdefault("speedup_cpu_b1", 0.2 / row["latency_cpu_b1_p50_ms"])
    row.setdefault("val_gap", row["ensemble_val_acc"] - row["student_val_acc"])
    if row["phase"] == "certify":  # the shipped file: the recipe's mean, the same half-width
        row.setdefault("certify_round", 0)
        row.setdefault("certify_rank", row["trial"])
        row.setdefault("certify_max_gap", 0.005)
        row.setdefault("certify_alpha", 0.05)
        row.setdefault("file_seed", 1000)
        row.setdefault("file_acc", row["student_acc"])
        row.setdefault("file_gap", row["ensemble_acc"] - row["file_acc"])
        row.setdefault("file_gap_ci_low", row["file_gap"] - half)
        row.setdefault("file_gap_ci_high", row["file_gap"] + half)
        row.setdefault("certify_bound", row["file_gap"] + half)
        row.setdefault("scratch_file_seed", 1000)
        row.setdefault("scratch_file_acc", row["scratch_acc"])
        row.setdefault("scratch_file_gap", row["ensemble_acc"] - row["scratch_acc"])
        row.setdefault("scratch_certify_bound", row["scratch_file_gap"] + half)
        to_best = row["best_member_acc"] - row["file_acc"]
        row.setdefault("certify_bound_best_member", to_best + half)
        row.setdefault(
            "scratch_certify_bound_best_member", row["best_member_acc"] - row["scratch_acc"] + half
        )
        row.setdefault(
            "certify_seeds",
            ",".join(map(str, certify_seeds(int(row["certify_round"]), int(row["n_seeds"])))),
        )
        n, file, twin = int(row["n_test"]), row["file_acc"], row["scratch_acc"]
        ens, best = row["ensemble_acc"], row["best_member_acc"]
        for first, second, acc1, acc2 in (
            ("ens", "file", ens, file),
            ("best", "file", best, file),
            ("ens", "twin", ens, twin),
            ("best", "twin", best, twin),
            ("file", "twin", file, twin),
        ):
            a, b = discordant_counts(acc1 - acc2, n, row.get("disagree", 0.004))
            row.setdefault(f"{first}_not_{second}", a)
            row.setdefault(f"{second}_not_{first}", b)
    if row["state"] == "complete":
        a, b = discordant_counts(row["ensemble_acc"] - row["best_member_acc"], int(row["n_test"]))
        row.setdefault("ens_not_best", a)
        row.setdefault("best_not_ens", b)
    row.pop("disagree", None)
    return row


def discordant_counts(gap: float, n: int, disagree: float = 0.004) -> tuple[int, int]:
    """Discordant counts (first right only, second right only) of ``n`` pairs whose accuracy
    difference is ``gap``, the two models disagreeing on ``disagree`` + |gap| of them."""
    d = disagree + abs(gap)
    return round(n * (d + gap) / 2), round(n * (d - gap) / 2)


def make_table(*rows: dict[str, Any]) -> pd.DataFrame:
    """Fixture rows as a trial table; certification rows get ``certified`` as a run's do
    (fixed-sequence testing per complete round, :func:`bench.decision.protocol.round_marks`)."""
    from bench.decision.protocol import round_marks

    full = [make_row(**r) for r in rows]
    rounds: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in full:
        if r["phase"] == "certify":
            rounds.setdefault((r["task"], int(r["certify_round"])), []).append(r)
    for part in rounds.values():
        marks = round_marks(part, 1 + max(int(r["certify_rank"]) for r in part))
        for r in part:
            r.update(marks.get(int(r["trial"]), {}))
    return to_frame(full)


def make_run_dir(
    root: Path, name: str, rows: list[dict[str, Any]], tasks: tuple[str, ...] = ("t",)
) -> Path:
    """A valid run folder from fixture rows: manifest, trials, and one seed row per seed."""
    from bench.records import SEED_COLUMNS, Manifest, write_trials

    run = root / name
    run.mkdir()
    table = make_table(*rows)
    write_trials(table, run)
    seeds = []
    seed_names = [c.name for c in SEED_COLUMNS]
    for _, r in table[table["state"] == "complete"].iterrows():
        for s in range(int(r["n_seeds"])):
            seeds.append({**{k: r[k] for k in seed_names if k in r.index}, "seed": s})
    write_trials(to_frame(seeds, SEED_COLUMNS), run, "seeds")
    Manifest(
        run_id=name,
        status="complete",
        suite={"name": name, "tasks": [{"name": t} for t in tasks]},
        suite_sha256="0" * 64,
        created_utc="2026-01-01T00:00:00+00:00",
    ).write(run)
    return run
