"""The statistics of the certified decision, measured by simulation through the real code, at
more draws than the tests use; writes ``results/benchmarks/decision-checks-<UTC>.md``.

* the level of the certification bound at a true gap equal to the tolerance, on the grid of
  issue #33, for Newcombe's paired limit (used before) and Tango's score bound with its
  continuity correction (used now);
* the guarantee: how often a run ships a student at the tolerance (the real file choice,
  bound, marking and recommendation), for the real bound, a lenient 16 % mutant, and the old
  rule "the cheapest size whose own bound passes, chosen on the test split";
* the distillation verdict: how often "needed" is said with no KD effect, and with scratch
  missing the tolerance by 1.5 pp and 0.5 pp.

    .venv/bin/python benchmarks/decision_checks.py      # about 2 minutes on 2 cores
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.decision.protocol import fixed_sequence  # noqa: E402 — after the path is set
from bench.group import rows as group_rows  # noqa: E402 — after the path is set
from bench.stats import TANGO_CC, newcombe_paired, paired_bound, tango_limit, z_of  # noqa: E402 — after the path is set
from tests.bench_tests import test_stats as grid  # noqa: E402 — the tests' own simulations
from tests.bench_tests.decision import test_guarantee as sim  # noqa: E402 — the same

DRAWS = 20_000


def level_grid() -> list[str]:
    z = z_of(0.90)

    def tango(counts: np.ndarray, n: int) -> np.ndarray:
        return np.asarray(tango_limit(counts[:, 1], counts[:, 2], n, z, upper=True, cc=TANGO_CC))

    def tango_plain(counts: np.ndarray, n: int) -> np.ndarray:
        return np.asarray(tango_limit(counts[:, 1], counts[:, 2], n, z, upper=True, cc=0.0))

    def newcombe(counts: np.ndarray, n: int) -> np.ndarray:
        return np.array([newcombe_paired(*row, z=z)[1] for row in counts])

    lines = [
        "| n | p_ens | tolerance pp | student-only % | Newcombe % | Tango % | Tango (cc ½) % |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = {"newcombe": (0.0, None), "plain": (0.0, None), "tango": (0.0, None)}
    for i, cell in enumerate(grid.GRID):
        rates = {
            name: grid.false_certification_rate(f, *cell, DRAWS, i)
            for name, f in (("newcombe", newcombe), ("plain", tango_plain), ("tango", tango))
        }
        for name, r in rates.items():
            if r > worst[name][0]:
                worst[name] = (r, cell)
        n, p_ens, tol, only = cell
        lines.append(
            f"| {n} | {p_ens} | {tol * 100:g} | {only * 100:g} | {rates['newcombe'] * 100:.2f} "
            f"| {rates['plain'] * 100:.2f} | {rates['tango'] * 100:.2f} |"
        )
    se = math.sqrt(0.05 * 0.95 / DRAWS)
    return [
        f"{DRAWS:,} draws per cell (Monte-Carlo standard error {se * 100:.2f} pp at 5 %); "
        f"nominal one-sided level 5 %. Worst cell: Newcombe {worst['newcombe'][0] * 100:.2f} % "
        f"at {worst['newcombe'][1]}, Tango {worst['plain'][0] * 100:.2f} % at "
        f"{worst['plain'][1]}, Tango with the continuity correction (used) "
        f"{worst['tango'][0] * 100:.2f} % at {worst['tango'][1]}. Cells are "
        "(n, p_ens, tolerance, student-only rate).",
        "",
        *power(z),
        "",
        *lines,
    ]


def power(z: float, draws: int = 20_000) -> list[str]:
    """What the continuity correction costs: a file 0.25 pp inside a 0.5 pp tolerance."""
    rng = np.random.default_rng(36)
    n, only, gap = 4000, 0.005, 0.0025
    p12, p21 = only + gap, only
    counts = rng.multinomial(n, [p12, p21, 1 - p12 - p21], size=draws)
    rates = {
        cc: float(
            np.mean(
                np.asarray(tango_limit(counts[:, 0], counts[:, 1], n, z, upper=True, cc=cc))
                <= 0.005
            )
        )
        for cc in (TANGO_CC, 0.0)
    }
    return [
        f"Power: a file whose true gap is 0.25 pp, tolerance 0.5 pp, {n:,} test examples "
        f"(student alone right on 0.5 %), {draws:,} draws: certified in "
        f"{rates[TANGO_CC] * 100:.1f} % with the correction, {rates[0.0] * 100:.1f} % without.",
    ]


def old_test_curve(draws: int = 4000) -> list[str]:
    """The capacity curve of the guarantee test kdbench had before issue #33 (six small sizes
    0.01–0.06 pp above a 0.5 pp tolerance, four larger ones below it; 4,000 test examples),
    every size tested alone with Newcombe's two-sided 95 % interval on the test split: how
    often the cheapest passing size misses the tolerance (the real old rule) and how often the
    largest passing one does (what that test counted)."""
    rng = np.random.default_rng(19)
    tol, n = 0.005, 4000
    gaps = [0.0056, 0.0055, 0.0054, 0.0053, 0.0052, 0.0051, 0.004, 0.003, 0.002, 0.001]
    cheapest = largest = 0
    for _ in range(draws):
        passing = [
            g
            for g in gaps
            if newcombe_paired(*rng.multinomial(n, [0.95 - g - 0.01, g + 0.01, 0.01, 0.04]))[1]
            <= tol
        ]
        cheapest += bool(passing and passing[0] > tol)
        largest += bool(passing and passing[-1] > tol)
    return [
        f"- on the old test's capacity curve (ten sizes, six just above the tolerance; "
        f"{draws:,} runs): the cheapest passing size misses the tolerance in "
        f"{cheapest / draws * 100:.2f} % of runs (the real old rule), the largest passing "
        f"size in {largest / draws * 100:.2f} % (what the old test counted)",
    ]


def guarantee(draws: int = 4000) -> list[str]:
    real = sim.shipped_true_gaps(np.random.default_rng(33), draws)
    rate = np.mean([not math.isnan(g) and g >= sim.TOL for g in real])
    real_bound = group_rows.paired_bound
    group_rows.paired_bound = lambda a, b, n, level, upper=True: real_bound(  # type: ignore[assignment]
        a, b, n, 0.84, upper=upper
    )
    try:
        mutant = sim.shipped_true_gaps(np.random.default_rng(34), draws // 4)
    finally:
        group_rows.paired_bound = real_bound
    mutant_rate = np.mean([not math.isnan(g) and g >= sim.TOL for g in mutant])
    rng, old = np.random.default_rng(35), 0
    z = z_of(0.90)
    for _ in range(draws):
        ens = rng.random(sim.N_TEST) < sim.P_ENS
        passing = []
        for _params, gap in sim.CANDIDATES:
            lose = (gap + sim.STUDENT_ONLY) / sim.P_ENS
            win = sim.STUDENT_ONLY / (1 - sim.P_ENS)
            s = np.where(ens, rng.random(sim.N_TEST) >= lose, rng.random(sim.N_TEST) < win)
            table = (ens & s, ens & ~s, ~ens & s, ~ens & ~s)
            if newcombe_paired(*(int(c.sum()) for c in table), z=z)[1] <= sim.TOL:
                passing.append(gap)
        old += bool(passing and passing[-1] >= sim.TOL)
    se = math.sqrt(rate * (1 - rate) / draws)
    return [
        f"Five candidates, largest first: two with a true gap of −0.4 pp, then three exactly "
        f"at the 0.5 pp tolerance; {sim.N_TEST:,} test examples, ensemble accuracy "
        f"{sim.P_ENS:.0%}, three fresh seeds each, round 0 (level alpha / 2 = {sim.LEVEL}).",
        "",
        f"- fixed-sequence testing, the real bound: a student at the tolerance shipped in "
        f"**{rate * 100:.2f} % ± {se * 100:.2f}** of {draws:,} runs (something certified in "
        f"{np.mean([not math.isnan(g) for g in real]) * 100:.1f} %)",
        f"- the same with a lenient bound (one-sided 16 %): {mutant_rate * 100:.1f} % of "
        f"{draws // 4:,} runs",
        f"- the old rule (every size tested alone, Newcombe's one-sided 95 % bound, the "
        f"cheapest passing shipped): {old / draws * 100:.2f} % of {draws:,} runs",
        *old_test_curve(),
    ]


def verdicts(draws: int = 4000) -> list[str]:
    rng = np.random.default_rng(8)
    same = [0.0, 0.001, 0.003, sim.TOL]
    out = [
        "Four candidates (largest first), 4,000 test examples, the round's level alpha / 2; "
        f"{draws:,} runs each; the verdict of the real recommendation:",
        "",
    ]
    for label, distilled, scratch in (
        ("no KD effect (each twin's true gap = its file's: 0, 0.1, 0.3, 0.5 pp)", same, same),
        ("scratch misses the tolerance by 1.5 pp", [-0.004, -0.004, -0.002, 0.0], [0.02] * 4),
        ("scratch misses the tolerance by 0.5 pp", [-0.004, -0.004, -0.002, 0.0], [0.01] * 4),
    ):
        counts = Counter(sim._verdict_run(rng, distilled, scratch) for _ in range(draws))
        shares = ", ".join(f"{k} {v / draws * 100:.1f} %" for k, v in sorted(counts.items()))
        out.append(f"- {label}: {shares}")
    said, recommending = old_verdict(same, draws)
    out.append(
        f'- the verdict replaced in issue #33 ("needed" whenever no scratch twin of at most '
        f"the shipped size is certified; Newcombe's one-sided 95 % bounds, the cheapest "
        f'certified file shipped), no KD effect: "needed" in {said / draws * 100:.1f} % of '
        f"runs, {said / max(recommending, 1) * 100:.1f} % of the {recommending:,} that "
        "recommend"
    )
    return out


def old_verdict(gaps: list[float], draws: int) -> tuple[int, int]:
    """The old verdict with no KD effect (each twin's true gap = its file's), re-enacted: the
    code is gone, so this is its rule written out. Returns (runs saying "needed", runs that
    recommend)."""
    rng = np.random.default_rng(9)
    z = z_of(0.90)
    said = recommending = 0
    for _ in range(draws):
        bounds = {"file": [], "twin": []}
        for gap in gaps:
            for name in bounds:
                only = sim.STUDENT_ONLY
                # both right, only the ensemble right, only the student right, both wrong
                probs = [sim.P_ENS - gap - only, gap + only, only, 1 - sim.P_ENS - only]
                table = rng.multinomial(sim.N_TEST, probs)
                bounds[name].append(newcombe_paired(*(int(c) for c in table), z=z)[1])
        files = fixed_sequence(bounds["file"], sim.TOL)
        twins = fixed_sequence(bounds["twin"], sim.TOL)
        if not any(files):
            continue
        recommending += 1
        shipped = max(k for k, ok in enumerate(files) if ok)  # the cheapest certified
        said += not any(twins[k] for k in range(shipped, len(gaps)))  # none no larger
    return said, recommending


def main() -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = "\n".join(
        [
            f"# The certified decision's statistics — {stamp}",
            "",
            "`python benchmarks/decision_checks.py`; simulation through kdbench's own code "
            "(bench.stats, bench.group.rows, bench.decision); seeds fixed, so a rerun gives the "
            "same numbers.",
            "",
            "## The bound's level at a true gap equal to the tolerance",
            "",
            *level_grid(),
            "",
            "## The guarantee",
            "",
            *guarantee(),
            "",
            "## Is distillation needed?",
            "",
            *verdicts(),
            "",
            f"(A one-sided bound at {paired_bound(30, 10, 4000, 0.95) * 100:.3f} pp for "
            "30 / 10 discordant pairs of 4,000, as a spot value.)",
            "",
        ]
    )
    out = ROOT / "results" / "benchmarks" / f"decision-checks-{stamp}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
