"""The certified decision's guarantee, by simulation through the real code: the file choice
(validation), the bound (bench.group.rows → bench.stats.paired_bound), the round's marks
(fixed-sequence testing) and the recommendation. Candidates that surely pass come first and
candidates exactly at the tolerance follow, so every run tests a true null."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench.decision.protocol import certify_seeds, round_level, round_marks
from bench.decision.recommend import Constraints, recommend
from bench.group import rows as group_rows
from bench.group.evaluate import Evaluation
from bench.group.plan import GroupPlan, GroupSpec, TrialConfig
from bench.group.rows import GroupRows
from bench.group.scratch import ScratchStore
from bench.stats import paired_bound
from tests.bench_tests.conftest import make_row

TOL, N_TEST, ALPHA = 0.005, 4000, 0.05
LEVEL = round_level(ALPHA, 0)  # the round's level: alpha / 2
SEEDS = certify_seeds(0, 3)
# largest first, as validation orders them: two sure passes, then three at the tolerance
CANDIDATES = [(8000, -0.004), (4000, -0.004), (2000, TOL), (1000, TOL), (500, TOL)]
P_ENS, STUDENT_ONLY = 0.98, 0.005  # the ensemble's accuracy; P(student right, ensemble wrong)


def _file_cells(
    rng: np.random.Generator, trial: int, true_gap: float, ens: np.ndarray
) -> dict[str, object]:
    """One candidate trained on the round's fresh seeds: each seed's test predictions drawn
    around ``true_gap``, its validation accuracy noise; the real code chooses the file and
    computes its bound."""
    n = len(ens)
    lose = (true_gap + STUDENT_ONLY) / P_ENS  # P(student wrong | ensemble right)
    win = STUDENT_ONLY / (1 - P_ENS)  # P(student right | ensemble wrong)
    right = np.where(ens, rng.random((len(SEEDS), n)) >= lose, rng.random((len(SEEDS), n)) < win)
    plan = GroupPlan.build([TrialConfig(trial, 4.0, 0.9)], SEEDS, [])
    distiller = SimpleNamespace(val_acc_=list(0.97 + rng.normal(0, 0.002, len(SEEDS))))
    ev = Evaluation(
        distiller, None, right, None, ens, np.zeros(n), ens, np.zeros(n, bool), [], None
    )  # type: ignore[arg-type]
    spec = GroupSpec(
        "sim", None, None, "mlp", {"width": trial}, tuple(SEEDS), "certify", level=LEVEL
    )  # type: ignore[arg-type]
    return GroupRows(spec, plan, ScratchStore(), ev).file_cells(TrialConfig(trial, 4.0, 0.9))


def shipped_true_gaps(rng: np.random.Generator, draws: int) -> list[float]:
    """The true gap of the file each simulated run ships (NaN: nothing certified)."""
    out = []
    for _ in range(draws):
        ens = rng.random(N_TEST) < P_ENS
        rows = []
        for rank, (params, gap) in enumerate(CANDIDATES):
            cells = _file_cells(rng, rank, gap, ens)
            rows.append(
                {
                    "trial": rank,
                    "phase": "certify",
                    "certify_rank": rank,
                    "certify_alpha": LEVEL,
                    "n_seeds": len(SEEDS),
                    "student_params": params,
                    "student_flops": 2 * params,
                    "width": rank + 4,
                    "student_acc": cells["file_acc"],
                    "ensemble_acc": float(ens.mean()),
                    "best_member_acc": float(ens.mean()),
                    "n_test": N_TEST,
                    **{k: v for k, v in cells.items() if not k.startswith("scratch")},
                }
            )
        rec = recommend(marked_table(rows), Constraints(max_gap=TOL))
        out.append(CANDIDATES[int(rec.chosen["trial"])][1] if rec.chosen else math.nan)
    return out


def marked_table(rows: list[dict[str, object]]) -> pd.DataFrame:
    """The round's rows completed as a run's are (``make_row``), marked by the real
    fixed-sequence test (``round_marks``), as a frame (untyped: the typing of the result
    files is not what this tests, and costs most of a draw)."""
    full = [make_row(**r) for r in rows]
    marks = round_marks(full, len(full))
    return pd.DataFrame([r | marks[int(r["trial"])] for r in full])


def check_guarantee(gaps: list[float], level: float) -> float:
    """The rate of shipping a student whose true gap is at least the tolerance: at most the
    round's level, with three Monte-Carlo standard errors of slack."""
    rate = float(np.mean([not math.isnan(g) and g >= TOL for g in gaps]))
    assert rate <= level + 3 * math.sqrt(level * (1 - level) / len(gaps)), rate
    return rate


@pytest.mark.slow
def test_the_guarantee_holds_for_the_real_bound_and_fails_for_a_lenient_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2,000 runs: the real bound ships a student at the tolerance in at most alpha / 2 of
    them (round 0's level); the same check fails for a mutant bound at a 16 % level, so the
    test can tell a bound that breaks the guarantee from one that keeps it."""
    draws = 2000
    real = shipped_true_gaps(np.random.default_rng(33), draws)
    rate = check_guarantee(real, LEVEL)
    assert sum(not math.isnan(g) for g in real) > 0.9 * draws  # the sure passes do pass

    def lenient(n12: int, n21: int, n: int, level: float, *, upper: bool = True) -> float:
        return paired_bound(n12, n21, n, 0.84, upper=upper)  # one-sided 16 %

    monkeypatch.setattr(group_rows, "paired_bound", lenient)
    mutant = shipped_true_gaps(np.random.default_rng(33), draws // 4)
    with pytest.raises(AssertionError):
        check_guarantee(mutant, LEVEL)
    assert rate < 0.04


def test_the_file_is_chosen_on_validation_only() -> None:
    """The test predictions never choose the file: the seed with the best validation accuracy
    is shipped even when another seed is better on test."""
    rng = np.random.default_rng(0)
    ens = rng.random(N_TEST) < P_ENS
    right = np.stack([ens, ens, ~ens])  # seed 2 is worst on test
    plan = GroupPlan.build([TrialConfig(0, 4.0, 0.9)], SEEDS, [])
    val = SimpleNamespace(val_acc_=[0.90, 0.91, 0.99])  # … and best on validation
    ev = Evaluation(
        val, None, right, None, ens, np.zeros(N_TEST), ens, np.zeros(N_TEST, bool), [], None
    )  # type: ignore[arg-type]
    spec = GroupSpec("sim", None, None, "mlp", {"width": 4}, tuple(SEEDS), "certify", level=LEVEL)  # type: ignore[arg-type]
    cells = GroupRows(spec, plan, ScratchStore(), ev).file_cells(TrialConfig(0, 4.0, 0.9))
    assert cells["file_seed"] == SEEDS[2] and cells["file_acc"] == pytest.approx(1 - ens.mean())
    assert pd.isna(cells.get("scratch_file_seed"))


def _verdict_run(rng: np.random.Generator, distilled: list[float], scratch: list[float]) -> str:
    """One round of four candidates (largest first) with the given true gaps of the shipped
    files and of their scratch twins: counts drawn, rows marked, the real recommendation's
    verdict (``none``: nothing recommended)."""
    rows = []
    sizes = (8000, 4000, 2000, 1000)
    for rank, (params, d_gap, s_gap) in enumerate(zip(sizes, distilled, scratch, strict=True)):
        counts = {}
        for name, gap in (("file", d_gap), ("twin", s_gap)):
            probs = [gap + STUDENT_ONLY, STUDENT_ONLY, 1 - gap - 2 * STUDENT_ONLY]
            ens_only, own_only, _ = rng.multinomial(N_TEST, probs)
            counts |= {f"ens_not_{name}": ens_only, f"{name}_not_ens": own_only}
        file_gap = (counts["ens_not_file"] - counts["file_not_ens"]) / N_TEST
        rows.append(
            {
                "trial": rank,
                "phase": "certify",
                "certify_rank": rank,
                "certify_alpha": LEVEL,
                "n_seeds": 3,
                "student_params": params,
                "student_flops": 2 * params,
                "width": rank + 4,
                "ensemble_acc": P_ENS,
                "student_acc": P_ENS - file_gap,
                "n_test": N_TEST,
                "certify_bound": paired_bound(
                    counts["ens_not_file"], counts["file_not_ens"], N_TEST, 1 - LEVEL
                ),
                **counts,
            }
        )
    rec = recommend(marked_table(rows), Constraints(max_gap=TOL))
    return rec.verdict.kind if rec.verdict is not None else "none"


@pytest.mark.slow
def test_the_needed_verdict_is_wrong_at_most_alpha_and_found_when_true() -> None:
    """2,000 runs each. With no KD effect (every scratch twin as good as its distilled file,
    the smallest at the tolerance itself) "needed" is a wrong verdict: at most the round's
    level. With scratch missing the tolerance by 1.5 pp it is the true one: found in at least
    80 % of the runs that recommend a student."""
    rng = np.random.default_rng(8)
    draws = 2000
    same = [0.0, 0.001, 0.003, TOL]  # no KD effect: the twins' true gaps are the files'
    no_effect = [_verdict_run(rng, same, same) for _ in range(draws)]
    wrong = np.mean([v == "needed" for v in no_effect])
    assert wrong <= LEVEL + 3 * math.sqrt(LEVEL * (1 - LEVEL) / draws), wrong
    shipped = [-0.004, -0.004, -0.002, 0.0]
    missing = [TOL + 0.015] * 4
    verdicts = [_verdict_run(rng, shipped, missing) for _ in range(draws)]
    recommended = [v for v in verdicts if v != "none"]
    assert len(recommended) > 0.9 * draws
    assert np.mean([v == "needed" for v in recommended]) >= 0.8
