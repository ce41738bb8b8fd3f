"""The validation capacity curve, descriptively: its knee, and where a power law fitted to the
search rows' upper gap bounds would reach a tolerance. Nothing is chosen from either; the
decision is certification's (:mod:`bench.decision.protocol`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.decision.protocol import validation_frontier

__all__ = ["capacity_fit", "extrapolate", "knee"]


def capacity_fit(params: np.ndarray, error: np.ndarray) -> tuple[float, float, float] | None:
    """Least-squares fit of error = a · params^(−b) + c (b > 0, c ≥ 0); None if it fails."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(params, float), np.asarray(error, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 4:
        return None
    scale = x.min()

    def f(p: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a * (p / scale) ** (-b) + c

    try:
        (a, b, c), _ = curve_fit(
            f,
            x,
            y,
            p0=(max(y.max() - y.min(), 1e-3), 0.5, max(y.min(), 0.0)),
            bounds=([0.0, 1e-3, 0.0], [np.inf, 5.0, 1.0]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError):
        return None
    return float(a) * scale ** float(b), float(b), float(c)


def knee(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The knee of the *validation* capacity frontier (one configuration per architecture,
    :func:`bench.decision.protocol.validation_frontier`): the point farthest from the chord
    joining its smallest and largest student, on validation accuracy against log(params)
    (Kneedle-style). Test columns are not read."""
    env = validation_frontier(frame[frame["phase"] == "search"]) if len(frame) else frame
    if len(env) < 3:
        return env.iloc[-1].to_dict() if len(env) else None
    x = np.log10(env["student_params"].to_numpy(float))
    y = env["student_val_acc"].to_numpy(float)
    xn = (x - x[0]) / (x[-1] - x[0]) if x[-1] > x[0] else x * 0
    yn = (y - y[0]) / (y[-1] - y[0]) if y[-1] > y[0] else y * 0
    return env.iloc[int(np.argmax(yn - xn))].to_dict()


def extrapolate(frame: pd.DataFrame, max_gap: float, n_boot: int = 200) -> dict[str, Any]:
    """The size at which the capacity curve of validation-chosen configurations (one per
    architecture on the validation frontier; their search rows' test bounds) reaches the
    tolerance ``max_gap``: fit ``err_hi = a · params^(−b) + c`` to the upper error bound
    ``1 − ensemble_acc + acc_gap_ci_high`` and solve for ``1 − ensemble_acc + max_gap``; a
    bootstrap over the points (``n_boot`` refits) gives its 95 % interval. Descriptive only:
    nothing is chosen from it. Returns the numbers (``params_needed`` None when the fit
    cannot reach the tolerance; ``level`` the accuracy the fitted bound levels off at)."""
    front = validation_frontier(frame[frame["phase"] == "search"])
    n = len(front)
    out: dict[str, Any] = {"params_needed": None, "n_points": n, "max_gap": max_gap}
    if n < 4:
        return out
    ens = float(front["ensemble_acc"].iloc[0])
    x = front["student_params"].to_numpy(float)
    y = (1 - ens + front["acc_gap_ci_high"]).to_numpy(float)
    target = 1 - ens + max_gap

    def solve(xx: np.ndarray, yy: np.ndarray) -> float | None:
        fit = capacity_fit(xx, yy)
        if fit is None or target <= fit[2]:
            return None
        a, b, c = fit
        return float((a / (target - c)) ** (1 / b))

    needed = solve(x, y)
    lo, hi = float(x.min()), float(x.max())
    if needed is None:
        fit = capacity_fit(x, y)
        return out | {"level": 1 - fit[2] if fit is not None else math.nan, "target": 1 - target}
    rng = np.random.default_rng(0)
    boots = [solve(x[i], y[i]) for i in (rng.integers(0, n, n) for _ in range(n_boot))]
    got = np.array([b for b in boots if b is not None], float)
    ci = (
        (float(np.percentile(got, 2.5)), float(np.percentile(got, 97.5)))
        if len(got) >= 20
        else (math.nan, math.nan)
    )
    where = "below" if needed < lo else "above" if needed > hi else "inside"
    return out | {
        "params_needed": needed,
        "params_needed_ci": list(ci),
        "times_largest": needed / hi,
        "extrapolated": where != "inside",
        "position": where,
        "trained_range": [lo, hi],
    }
