r"""The capacity law: how the validation error of the search's students falls with their size.

**The model.** For the students of one *shape* ``g`` (the family's architecture parameters
other than the one that scales width — an MLP's depth, a CNN's blocks) the validation error at
``N`` parameters (or FLOPs) is the saturating power law of Rosenfeld et al. (ICLR 2020) at a
fixed data size,

.. math:: \mathrm{err}_g(N) = c_\infty + a_g\,(N / N_\mathrm{ref})^{-\alpha},

with the exponent ``α`` and the floor ``c∞`` shared by every shape and one amplitude ``a_g``
per shape (a depth term: deeper students of the same size sit on a parallel curve). The
distilled students and their scratch twins get one law each.

**The points.** One per completed search trial: ``y = 1 − student_val_acc`` (the mean over the
trial's seeds), with the standard error ``se = s / √S`` of that mean, ``s`` the seed-to-seed
standard deviation pooled over every trial of the sweep (two seeds per trial make each trial's
own estimate too noisy to weight by). Every point shares one validation split, so the split's
own sampling error is common to all of them and to the ensemble they are compared with; what
differs between points is the training seed — and the configuration: trials of the same size
differ in T, alpha and shape. That extra scatter is a variance ``τ²`` estimated with the fit
(Paule–Mandel: ``Σ r_i² / (se_i² + τ²) = n − p``), so each point weighs ``1 / (se_i² + τ²)``.

**The band.** A parametric bootstrap: ``B`` sweeps are drawn from the fitted law with each
point's variance ``se_i² + τ²``, refitted (``τ²`` re-estimated), and the law's value at ``N``
is read from every refit. Its quantiles are the *curve's* interval; adding one draw of a new
point's noise (``se² + τ*²``, the sweep's median ``se``) gives the *prediction* band for the
validation error of a trial not yet trained, which is what the held-out check scores. Refits
are bounded least squares from the fitted values, so none is dropped. The coverage of both is
measured by simulation from a known law (``tests/bench_tests/decision/test_law.py``,
``benchmarks/capacity_law.py``) and on sizes each real sweep never saw (:func:`holdout`).

Everything here reads validation columns only; the certified answer is certification's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BAND",
    "BELOW",
    "CapacityLaw",
    "Crossing",
    "Holdout",
    "LawPoints",
    "SizePrediction",
    "crossing",
    "fit_law",
    "holdout",
    "law_points",
    "predict_size",
    "shape_label",
]

BAND = 0.90  # the nominal coverage of every band and interval this module reports
MIN_SIZES = 4  # distinct sizes a fit needs: the law's three parameters, plus one to spare
_GRID = 400  # log-spaced sizes the solvers scan
# A shape's curve is used down to its own smallest trained size / BELOW, not further: a shape
# trained only where the curve is flat has an unidentified amplitude (any small one fits), and
# its curve continued downwards would claim small students of that shape at the floor.
BELOW = 2.0


@dataclass(frozen=True)
class LawPoints:
    """One point per completed search trial: size ``x``, validation error ``y``, its standard
    error ``se``, the trial's shape label ``group`` and trial number."""

    x: np.ndarray
    y: np.ndarray
    se: np.ndarray
    group: tuple[str, ...]
    trial: np.ndarray
    curve: str = "distilled"
    axis: str = "params"

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, mask: np.ndarray) -> LawPoints:
        keep = np.asarray(mask, bool)
        return LawPoints(
            self.x[keep],
            self.y[keep],
            self.se[keep],
            tuple(g for g, k in zip(self.group, keep, strict=True) if k),
            self.trial[keep],
            self.curve,
            self.axis,
        )


def shape_label(row: pd.Series, shape_cols: list[str]) -> str:
    """A row's shape as the law labels it, e.g. ``"depth 2"`` (``"all"``: one shape)."""
    return ", ".join(f"{c.removeprefix('arch_')} {row[c]:g}" for c in shape_cols) or "all"


def law_points(
    frame: pd.DataFrame,
    seeds: pd.DataFrame | None = None,
    curve: str = "distilled",
    axis: str = "params",
    size_param: str | None = None,
) -> LawPoints:
    """The points of one task's sweep: completed search rows (pruned trials stopped early and
    duplicates repeat another row, so neither is a point). ``curve``: ``"distilled"``
    (``student_val_acc``) or ``"scratch"`` (``scratch_val_acc``); ``axis``: ``"params"`` or
    ``"flops"``; ``size_param``: the family's width parameter (every other ``arch_*`` column
    that varies defines the shape). ``seeds`` (the per-seed table) gives the pooled seed
    standard deviation; without it ``se`` is 0 and ``τ²`` carries all the scatter."""
    if curve not in ("distilled", "scratch"):
        raise ValueError(f"curve must be 'distilled' or 'scratch', got {curve!r}")
    col = "student_val_acc" if curve == "distilled" else "scratch_val_acc"
    xcol = {"params": "student_params", "flops": "student_flops"}[axis]
    rows = frame[(frame["phase"] == "search") & (frame["state"] == "complete")]
    rows = rows[np.isfinite(rows[col].to_numpy(float)) & (rows[xcol].to_numpy(float) > 0)]
    shape_cols = [
        c
        for c in rows.columns
        if c.startswith("arch_")
        and c != f"arch_{size_param}"
        and rows[c].notna().all()
        and rows[c].nunique() > 1
    ]
    n_seeds = rows["n_seeds"].to_numpy(float) if "n_seeds" in rows else np.ones(len(rows))
    sd = _pooled_seed_sd(seeds, rows["trial"], col) if seeds is not None else 0.0
    return LawPoints(
        x=rows[xcol].to_numpy(float),
        y=1.0 - rows[col].to_numpy(float),
        se=sd / np.sqrt(np.maximum(n_seeds, 1.0)),
        group=tuple(shape_label(r, shape_cols) for _, r in rows.iterrows()),
        trial=rows["trial"].to_numpy(int),
        curve=curve,
        axis=axis,
    )


def _pooled_seed_sd(seeds: pd.DataFrame, trials: pd.Series, col: str) -> float:
    """The seed-to-seed standard deviation of ``col``, pooled over the given search trials."""
    s = seeds[(seeds["phase"] == "search") & seeds["trial"].isin(set(trials))]
    ss, dof = 0.0, 0
    for _, g in s.groupby("trial"):
        v = g[col].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v) > 1:
            ss += float(((v - v.mean()) ** 2).sum())
            dof += len(v) - 1
    return math.sqrt(ss / dof) if dof else 0.0


# ---------------------------------------------------------------------- the fit
@dataclass
class CapacityLaw:
    """A fitted law: ``theta`` = (``log a_g`` per group, ``α``, ``c∞``), ``tau`` (the extra
    scatter's standard deviation), ``draws`` (the bootstrap refits, one ``theta`` per row),
    ``tau_draws``, and ``se_new`` (the noise of one new point: the sweep's median ``se``)."""

    points: LawPoints
    groups: tuple[str, ...]
    theta: np.ndarray
    tau: float
    draws: np.ndarray
    tau_draws: np.ndarray
    x_ref: float
    se_new: float
    rng_seed: int = 0
    dof: int = field(default=0)

    def _reach(self, x: np.ndarray, group: str) -> np.ndarray:
        """Where shape ``group``'s curve is used: from its smallest trained size / BELOW."""
        m = np.array([g == group for g in self.points.group], bool)
        return np.asarray(x, float) >= float(self.points.x[m].min()) / BELOW

    @property
    def alpha(self) -> float:
        return float(self.theta[-2])

    @property
    def floor(self) -> float:
        """``c∞``: the error the law levels off at."""
        return float(self.theta[-1])

    def amplitude(self, group: str) -> float:
        return float(np.exp(self.theta[self.groups.index(group)]))

    def _value(self, theta: np.ndarray, x: np.ndarray, group: str) -> np.ndarray:
        g = self.groups.index(group)
        theta = np.atleast_2d(theta)
        return theta[:, -1:] + np.exp(theta[:, g : g + 1]) * (
            np.asarray(x, float)[None, :] / self.x_ref
        ) ** (-theta[:, -2:-1])

    def mean(self, x: np.ndarray | float, group: str) -> np.ndarray:
        """The fitted validation error at size(s) ``x`` for shape ``group``."""
        return self._value(self.theta, np.atleast_1d(x), group)[0]

    def envelope(self, x: np.ndarray | float) -> tuple[np.ndarray, list[str]]:
        """The best shape's fitted error at each size (each shape where it is used:
        :data:`BELOW`; ``inf`` where none is), and which shape it is."""
        x = np.atleast_1d(np.asarray(x, float))
        vals = np.stack([np.where(self._reach(x, g), self.mean(x, g), np.inf) for g in self.groups])
        best = vals.argmin(axis=0)
        return vals.min(axis=0), [self.groups[i] for i in best]

    def band(
        self, x: np.ndarray | float, group: str, new_point: bool = True, se: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The central :data:`BAND` interval at ``x``: of the validation error of one new
        trial there (``new_point``, with the point's ``se`` or the sweep's median), else of the
        curve itself."""
        x = np.atleast_1d(np.asarray(x, float))
        vals = self._value(self.draws, x, group)
        if new_point:
            rng = np.random.default_rng(self.rng_seed + 1)
            s = self.se_new if se is None else float(se)
            sd = np.sqrt(s**2 + self.tau_draws**2)[:, None]
            vals = vals + sd * rng.standard_normal(vals.shape)
        q = (1 - BAND) / 2
        return np.quantile(vals, q, axis=0), np.quantile(vals, 1 - q, axis=0)

    def envelope_draws(self, x: np.ndarray) -> np.ndarray:
        """The best shape's error at each size in every bootstrap refit (draws × sizes)."""
        return np.min(
            np.stack(
                [
                    np.where(self._reach(x, g)[None, :], self._value(self.draws, x, g), np.inf)
                    for g in self.groups
                ]
            ),
            axis=0,
        )


def _design(points: LawPoints, groups: tuple[str, ...]) -> np.ndarray:
    return np.array([groups.index(g) for g in points.group], int)


def _model(theta: np.ndarray, lx: np.ndarray, gi: np.ndarray) -> np.ndarray:
    return theta[-1] + np.exp(theta[gi] - theta[-2] * lx)


def _solve(
    lx: np.ndarray, y: np.ndarray, var: np.ndarray, gi: np.ndarray, k: int, starts: list[np.ndarray]
) -> np.ndarray:
    """Weighted bounded least squares from each start; the best fit's parameters."""
    from scipy.optimize import least_squares

    w = 1.0 / np.sqrt(var)
    lo, hi = _bounds(k)
    rows = np.arange(len(y))

    def jac(t: np.ndarray) -> np.ndarray:
        e = np.exp(t[gi] - t[-2] * lx)
        j = np.zeros((len(y), k + 2))
        j[rows, gi] = e
        j[:, -2] = -lx * e
        j[:, -1] = 1.0
        return -j * w[:, None]

    best, cost = starts[0], math.inf
    for s in starts:
        r = least_squares(
            lambda t: (y - _model(t, lx, gi)) * w,
            np.clip(s, lo + 1e-9, hi - 1e-9),
            jac=jac,
            bounds=(lo, hi),
        )
        if r.cost < cost:
            best, cost = r.x, float(r.cost)
    return best


_LOW = (-30.0, 0.02, 0.0)  # bounds of log a_g, α, c∞
_HIGH = (10.0, 4.0, 1.0)


def _bounds(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.full(k, _LOW[0]), _LOW[1:]], np.r_[np.full(k, _HIGH[0]), _HIGH[1:]]


def _model_all(theta: np.ndarray, lx: np.ndarray, gi: np.ndarray) -> np.ndarray:
    """:func:`_model` for many parameter vectors at once (rows of ``theta``)."""
    return theta[:, -1:] + np.exp(theta[:, gi] - theta[:, -2:-1] * lx[None, :])


def _refit_all(
    lx: np.ndarray, ys: np.ndarray, w: np.ndarray, gi: np.ndarray, k: int, theta0: np.ndarray
) -> np.ndarray:
    """Refit every bootstrap sweep (rows of ``ys``) at once: Levenberg–Marquardt from the
    fit ``theta0``, steps projected onto the bounds, each sweep with its own damping; 60
    iterations settle refits that start this close (the same minimum scipy's bounded
    least squares finds, to 1e-6 on the tests' sweeps)."""
    lo, hi = _bounds(k)
    b, n, p = ys.shape[0], len(lx), k + 2
    theta = np.tile(theta0, (b, 1))
    lam = np.full(b, 1e-3)
    rows = np.arange(n)

    def cost(t: np.ndarray) -> np.ndarray:
        return np.sum(((ys - _model_all(t, lx, gi)) * w) ** 2, axis=1)

    now = cost(theta)
    for _ in range(60):
        e = np.exp(theta[:, gi] - theta[:, -2:-1] * lx[None, :])  # (b, n)
        jac = np.zeros((b, n, p))
        jac[:, rows, gi] = e
        jac[:, :, -2] = -lx[None, :] * e
        jac[:, :, -1] = 1.0
        jac *= w[None, :, None]
        r = (ys - (theta[:, -1:] + e)) * w
        a = np.einsum("bnp,bnq->bpq", jac, jac)
        g = np.einsum("bnp,bn->bp", jac, r)
        diag = np.einsum("bpp->bp", a)
        damped = a + (lam[:, None] * diag + 1e-12)[:, :, None] * np.eye(p)[None]
        step = np.linalg.solve(damped, g[:, :, None])[:, :, 0]
        trial = np.clip(theta + step, lo, hi)
        new = cost(trial)
        better = new < now
        theta[better], now[better] = trial[better], new[better]
        lam = np.where(better, lam / 3, lam * 4).clip(1e-9, 1e9)
    return theta


def _tau2_all(r: np.ndarray, se2: np.ndarray, dof: int) -> np.ndarray:
    """:func:`_tau2` for every row of residuals ``r`` at once (bisection, vectorised)."""
    if dof <= 0:
        return np.mean(r**2, axis=1)
    se2 = np.maximum(se2, 1e-12)[None, :]

    def q(t: np.ndarray) -> np.ndarray:
        return np.sum(r**2 / (se2 + t[:, None]), axis=1) - dof

    lo, hi = np.zeros(len(r)), np.sum(r**2, axis=1) + 1e-12
    for _ in range(60):
        mid = (lo + hi) / 2
        up = q(mid) > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return np.where(q(np.zeros(len(r))) <= 0, 0.0, (lo + hi) / 2)


def _tau2(r: np.ndarray, se2: np.ndarray, dof: int) -> float:
    """Paule–Mandel: the ``τ² ≥ 0`` with ``Σ r² / (se² + τ²) = dof`` (0 when the seeds'
    error alone explains the residuals)."""
    if dof <= 0:
        return float(np.mean(r**2))
    se2 = np.maximum(se2, 1e-12)

    def q(t: float) -> float:
        return float(np.sum(r**2 / (se2 + t))) - dof

    if q(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, float(np.sum(r**2)) + 1e-12
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if q(mid) > 0 else (lo, mid)
    return (lo + hi) / 2


def _fit_once(
    lx: np.ndarray, y: np.ndarray, se2: np.ndarray, gi: np.ndarray, k: int, starts: list[np.ndarray]
) -> tuple[np.ndarray, float]:
    """Alternate the weighted fit and Paule–Mandel's ``τ²`` (three rounds settle it)."""
    dof = len(y) - (k + 2)
    tau2 = 0.0
    theta = starts[0]
    for _ in range(3):
        theta = _solve(lx, y, se2 + tau2 + 1e-12, gi, k, starts)
        starts = [theta]
        tau2 = _tau2(y - _model(theta, lx, gi), se2, dof)
    return theta, tau2


def fit_law(points: LawPoints, n_boot: int = 300, seed: int = 0) -> CapacityLaw | None:
    """Fit the law (module docstring) and its bootstrap; None when the points span fewer than
    :data:`MIN_SIZES` distinct sizes. Shapes with a single size cannot place their own
    amplitude and are left out."""
    sizes_of: dict[str, set[float]] = {}
    for g, x in zip(points.group, points.x, strict=True):
        sizes_of.setdefault(g, set()).add(float(x))
    groups = tuple(sorted(g for g, s in sizes_of.items() if len(s) >= 2))
    pts = points.subset(np.array([g in groups for g in points.group], bool))
    if len(np.unique(pts.x)) < MIN_SIZES or len(pts) < len(groups) + 3:
        return None
    x_ref = float(np.exp(np.mean(np.log(pts.x))))
    lx = np.log(pts.x / x_ref)
    gi = _design(pts, groups)
    k = len(groups)
    se2 = pts.se**2
    c0 = max(0.0, float(pts.y.min()) * 0.8)
    starts = []
    for a in (0.3, 1.0, 2.0):
        amp = [math.log(max(float(np.mean(pts.y[gi == j])) - c0, 1e-4)) for j in range(k)]
        starts.append(np.r_[amp, a, c0])
    theta, tau2 = _fit_once(lx, pts.y, se2, gi, k, starts)
    rng = np.random.default_rng(seed)
    fitted = _model(theta, lx, gi)
    dof = len(pts.y) - (k + 2)
    # residuals of a fit of p parameters to n points are smaller than the noise by about
    # sqrt(dof / n): the bootstrap draws its sweeps from the inflated scatter
    inflate = math.sqrt(len(pts.y) / max(dof, 1))
    sd = np.sqrt(se2 + tau2) * inflate
    ys = fitted + sd * rng.standard_normal((n_boot, len(fitted)))
    draws = _refit_all(lx, ys, 1.0 / np.sqrt(se2 + tau2 + 1e-12), gi, k, theta)
    taus = np.sqrt(_tau2_all(ys - _model_all(draws, lx, gi), se2, dof))
    return CapacityLaw(
        points=pts,
        groups=groups,
        theta=theta,
        tau=math.sqrt(tau2),
        draws=draws,
        tau_draws=taus,
        x_ref=x_ref,
        se_new=float(np.median(pts.se)) if len(pts) else 0.0,
        rng_seed=seed,
        dof=dof,
    )


# ---------------------------------------------------------------------- the answers
def _grid(law: CapacityLaw) -> np.ndarray:
    """The sizes the solvers scan: the smallest trained size / :data:`BELOW` to 16 × the
    largest (a size the law puts below that range is reported as the range's start)."""
    lo, hi = float(law.points.x.min()), float(law.points.x.max())
    return np.geomspace(lo / BELOW, hi * 16, _GRID)


def _first_below(grid: np.ndarray, vals: np.ndarray, target: float) -> float:
    """The smallest size of ``grid`` whose value is at most ``target`` (log-interpolated
    between grid points); ``inf`` when none is."""
    ok = vals <= target
    if not ok.any():
        return math.inf
    i = int(np.argmax(ok))
    if i == 0:
        return float(grid[0])
    x0, x1, v0, v1 = math.log(grid[i - 1]), math.log(grid[i]), vals[i - 1], vals[i]
    t = (v0 - target) / (v0 - v1) if v0 != v1 else 1.0
    return float(math.exp(x0 + t * (x1 - x0)))


@dataclass(frozen=True)
class SizePrediction:
    """The smallest size whose fitted validation gap meets the tolerance (``size``; ``inf``
    when the law levels off above it), its :data:`BAND` interval (``low``, ``high``; ``high``
    is ``inf`` when more than the band's upper share of refits never reach it; ``low`` is
    the scanned range's start, ``trained[0] / BELOW``, when the refits reach below it), the shape it
    is predicted for, ``reach``: the share of refits that reach the tolerance, and whether
    the size lies beyond the trained range."""

    size: float
    low: float
    high: float
    group: str
    target_error: float
    floor: float
    reach: float
    trained: tuple[float, float]

    @property
    def extrapolated(self) -> bool:
        return math.isfinite(self.size) and not (self.trained[0] <= self.size <= self.trained[1])

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "interval": [self.low, self.high],
            "shape": self.group,
            "target_val_error": self.target_error,
            "floor_val_error": self.floor,
            "reach": self.reach,
            "trained_range": list(self.trained),
            "extrapolated": self.extrapolated,
        }


def predict_size(law: CapacityLaw, ensemble_val_acc: float, max_gap: float) -> SizePrediction:
    """The smallest student (on the law's axis) whose *fitted* validation error is within
    ``max_gap`` of the ensemble's: ``min_N err(N) ≤ 1 − ensemble_val_acc + max_gap`` over the
    shapes; its interval from the bootstrap refits (each refit's own smallest size)."""
    target = 1.0 - float(ensemble_val_acc) + float(max_gap)
    grid = _grid(law)
    env, shape = law.envelope(grid)
    size = _first_below(grid, env, target)
    got = np.array([_first_below(grid, d, target) for d in law.envelope_draws(grid)])
    q = (1 - BAND) / 2
    low = float(np.quantile(got, q, method="inverted_cdf")) if len(got) else math.nan
    high = float(np.quantile(got, 1 - q, method="inverted_cdf")) if len(got) else math.nan
    at = shape[int(np.argmin(np.abs(grid - size)))] if math.isfinite(size) else shape[-1]
    return SizePrediction(
        size=size,
        low=low,
        high=high,
        group=at,
        target_error=target,
        floor=law.floor,
        reach=float(np.isfinite(got).mean()) if len(got) else math.nan,
        trained=(float(law.points.x.min()), float(law.points.x.max())),
    )


@dataclass(frozen=True)
class Crossing:
    """Where the distilled and scratch laws cross (Busbridge et al.'s threshold on this task).

    ``size``: the first size of the scanned range (the smallest trained size / :data:`BELOW`
    to 4 × the largest) at which the fitted validation gain of distillation over scratch changes
    sign (``nan`` when it never does); ``helps_below``: whether distillation helps below it
    (the literature's usual case) or above it; ``low``/``high``: its :data:`BAND` interval
    over paired refits (a refit without a sign change counts at the end of the range its gain
    points to: 0 or ``inf``); ``gain_at``: the fitted gain at the smallest and largest trained
    sizes."""

    size: float
    low: float
    high: float
    helps_below: bool
    gain_at: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "interval": [self.low, self.high],
            "helps_below": self.helps_below,
            "gain_at_trained_ends": list(self.gain_at),
        }


def _sign_change(grid: np.ndarray, gain: np.ndarray) -> float:
    """The first size at which ``gain`` changes sign (log-interpolated); nan if it never
    does."""
    s = np.sign(gain)
    change = np.flatnonzero(s[1:] * s[:-1] < 0)
    if not len(change):
        return math.nan
    i = int(change[0])
    t = gain[i] / (gain[i] - gain[i + 1])
    return float(math.exp(math.log(grid[i]) + t * (math.log(grid[i + 1]) - math.log(grid[i]))))


def crossing(kd: CapacityLaw, scratch: CapacityLaw) -> Crossing:
    """The size at which the scratch law's best shape (the envelope over shapes) becomes as
    good as the distilled law's, or stops being so, with its interval."""
    lo = float(min(kd.points.x.min(), scratch.points.x.min()))
    hi = float(max(kd.points.x.max(), scratch.points.x.max()))
    grid = np.geomspace(lo / BELOW, hi * 4, _GRID)
    gain = scratch.envelope(grid)[0] - kd.envelope(grid)[0]
    size = _sign_change(grid, gain)
    helps_below = bool(gain[0] > 0)
    n = min(len(kd.draws), len(scratch.draws))
    gd = scratch.envelope_draws(grid)[:n] - kd.envelope_draws(grid)[:n]
    sizes = []
    for g in gd:
        c = _sign_change(grid, g)
        if math.isnan(c):  # no change: the whole range is on one side of the threshold
            c = math.inf if (g[0] > 0) == helps_below else 0.0
        sizes.append(c)
    q = (1 - BAND) / 2
    ends = scratch.envelope(np.array([lo, hi]))[0] - kd.envelope(np.array([lo, hi]))[0]
    return Crossing(
        size=size,
        low=float(np.quantile(sizes, q, method="inverted_cdf")),
        high=float(np.quantile(sizes, 1 - q, method="inverted_cdf")),
        helps_below=helps_below,
        gain_at=(float(ends[0]), float(ends[1])),
    )


# ---------------------------------------------------------------------- the held-out check
@dataclass(frozen=True)
class Holdout:
    """Fit on the smaller two-thirds of the distinct sizes, predict the larger third:
    per held-out point its measured and predicted validation error and the :data:`BAND`
    prediction band; ``covered`` counts the points inside."""

    cut: float
    trial: np.ndarray
    x: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def covered(self) -> int:
        return int(((self.measured >= self.low) & (self.measured <= self.high)).sum())

    @property
    def abs_error(self) -> np.ndarray:
        return np.abs(self.predicted - self.measured)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fit_sizes_up_to": self.cut,
            "held_out": self.n,
            "covered": self.covered,
            "coverage": self.covered / self.n if self.n else math.nan,
            "median_abs_error": float(np.median(self.abs_error)) if self.n else math.nan,
            "points": [
                {
                    "trial": int(t),
                    "size": float(x),
                    "measured": float(m),
                    "predicted": float(p),
                    "band": [float(lo), float(hi)],
                }
                for t, x, m, p, lo, hi in zip(
                    self.trial,
                    self.x,
                    self.measured,
                    self.predicted,
                    self.low,
                    self.high,
                    strict=True,
                )
            ],
        }


def holdout(points: LawPoints, fraction: float = 2 / 3, n_boot: int = 300) -> Holdout | None:
    """The held-out check: the law fitted on the points at the smaller ``fraction`` of the
    distinct sizes predicts each point above them (its own shape's curve, the band with the
    point's own ``se``). None when either side is too small to fit or to score."""
    sizes = np.unique(points.x)
    if len(sizes) < MIN_SIZES + 2:
        return None
    cut = float(sizes[max(MIN_SIZES, math.floor(len(sizes) * fraction)) - 1])
    law = fit_law(points.subset(points.x <= cut), n_boot=n_boot)
    if law is None:
        return None
    test = points.subset((points.x > cut) & np.isin(np.array(points.group), law.groups))
    if not len(test):
        return None
    pred, lo, hi = [], [], []
    for x, g, se in zip(test.x, test.group, test.se, strict=True):
        pred.append(float(law.mean(x, g)[0]))
        b = law.band(x, g, new_point=True, se=se)
        lo.append(float(b[0][0]))
        hi.append(float(b[1][0]))
    return Holdout(cut, test.trial, test.x, test.y, np.array(pred), np.array(lo), np.array(hi))


# ---------------------------------------------------------------------- one task's facts
def size_param_of(family: str) -> str | None:
    """The family's width parameter (None when the registry does not know the family)."""
    from kdcore import get_family

    try:
        return get_family(family).size_param
    except Exception:
        return None


def fit_task(
    frame: pd.DataFrame,
    seeds: pd.DataFrame | None = None,
    curve: str = "distilled",
    axis: str = "params",
    n_boot: int = 200,
) -> CapacityLaw | None:
    """The law of one task's search rows (``frame``: that task's trial rows)."""
    if frame.empty or not bool(
        ((frame["phase"] == "search") & (frame["state"] == "complete")).any()
    ):  # no point at all (an empty table, a certification round alone): no law
        return None
    size_param = size_param_of(str(frame["family"].iloc[0]))
    return fit_law(law_points(frame, seeds, curve, axis, size_param), n_boot=n_boot)


def facts(
    frame: pd.DataFrame,
    seeds: pd.DataFrame | None,
    max_gap: float,
    n_boot: int = 200,
    axis: str = "params",
) -> dict[str, Any] | None:
    """What the law says about one task, as plain values (the decision's record of it): the
    fitted parameters, the predicted smallest size for ``max_gap`` on validation, and the
    crossing with the scratch law. None when the sweep has too few sizes to fit."""
    kd = fit_task(frame, seeds, "distilled", axis, n_boot=n_boot)
    if kd is None:
        return None
    rows = frame[(frame["phase"] == "search") & (frame["state"] == "complete")]
    ens_val = float(rows["ensemble_val_acc"].iloc[0])
    if not math.isfinite(ens_val):  # no validation accuracy of the ensemble to aim at
        return None
    scratch = fit_task(frame, seeds, "scratch", axis, n_boot=n_boot)
    return {
        "axis": kd.points.axis,
        "n_points": len(kd.points),
        "shapes": list(kd.groups),
        "exponent": kd.alpha,
        "floor_val_error": kd.floor,
        "scatter": kd.tau,
        "max_gap": max_gap,
        "prediction": predict_size(kd, ens_val, max_gap).as_dict(),
        "crossing": crossing(kd, scratch).as_dict() if scratch is not None else None,
    }
