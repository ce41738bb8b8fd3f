"""Report figures in two layers: ``*_data`` computes exactly what is plotted (a DataFrame,
tested on fixture tables); ``draw_*`` only draws it on an ``Axes`` and returns it. Nothing
here calls ``plt.show()``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench import fmt
from bench.decision import law as capacity_law
from bench.decision.recommend import Recommendation, candidates
from bench.stats import pareto_mask

__all__ = [
    "capacity_data",
    "draw_capacity",
    "draw_history",
    "draw_importances",
    "draw_kd_gain",
    "draw_pareto",
    "draw_temperature_map",
    "history_data",
    "kd_gain_data",
    "pareto_data",
    "temperature_map_data",
]

DISTILLED, SCRATCH, FRONT, FADED, ENSEMBLE, MEMBER, PICK = (
    "#1f77b4",
    "#ff7f0e",
    "#d62728",
    "#b0b0b0",
    "#2ca02c",
    "#9467bd",
    "#000000",
)
GENERALIST = "#8c564b"


# ---------------------------------------------------------------------- frames
def frame_limits(
    values: np.ndarray, low: np.ndarray, high: np.ndarray, include: float | None = 0.0
) -> tuple[float, float]:
    """A y-range showing every point (never cut) and the intervals unless a few of them would
    flatten the plot: bars are kept while the frame stays within 4× the points' own spread."""
    points = np.asarray(values, float)
    points = points[np.isfinite(points)]
    if include is not None:
        points = np.append(points, include)
    if points.size == 0:
        return -1.0, 1.0
    p_lo, p_hi = float(points.min()), float(points.max())
    spread = max(p_hi - p_lo, 0.5)
    lo_all = np.nanmin(np.append(np.asarray(low, float), p_lo))
    hi_all = np.nanmax(np.append(np.asarray(high, float), p_hi))
    lo = max(lo_all, p_lo - 1.5 * spread)
    hi = min(hi_all, p_hi + 1.5 * spread)
    pad = 0.06 * (hi - lo) + 0.05
    return lo - pad, hi + pad


def mark_clipped(ax: Axes, x: Any, low: Any, high: Any, ylim: tuple[float, float]) -> int:
    """Arrows where an interval runs past the frame; returns how many were clipped."""
    x, low, high = (np.asarray(v, float) for v in (x, low, high))
    over, under = high > ylim[1], low < ylim[0]
    if over.any():
        ax.scatter(x[over], np.full(over.sum(), ylim[1]), marker="^", color=PICK, s=25, zorder=6)
    if under.any():
        ax.scatter(x[under], np.full(under.sum(), ylim[0]), marker="v", color=PICK, s=25, zorder=6)
    n = int(over.sum() + under.sum())
    if n:
        ax.annotate(
            f"{n} interval(s) clipped at the frame (arrows)",
            xy=(0.01, 0.01),
            xycoords="axes fraction",
            fontsize=7,
            color=PICK,
        )
    return n


# ---------------------------------------------------------------------- Pareto front
def pareto_data(
    trials: pd.DataFrame, cost: str, recommended_trial: int | None = None
) -> pd.DataFrame:
    """Gap (pp) against a cost: one row per completed student, with its interval, whether it is
    on the front (minimising the cost and the recipe gap's *upper bound*) and whether it is the
    recommended one (a certified student: the decision is made by certification, this plot
    only describes)."""
    c = candidates(trials)
    c = c[c[cost].notna()]
    gap = c["acc_gap"] * 100
    lo = (c["acc_gap_ci_low"] * 100).where(c["acc_gap_ci_low"].notna(), gap)
    hi = (c["acc_gap_ci_high"] * 100).where(c["acc_gap_ci_high"].notna(), gap)
    data = pd.DataFrame(
        {
            "trial": c["trial"].astype(int),
            "cost": c[cost].astype(float),
            "gap_pp": gap.astype(float),
            "gap_low_pp": lo.astype(float),
            "gap_high_pp": hi.astype(float),
        }
    )
    data["on_front"] = (
        pareto_mask(data["cost"].to_numpy(), data["gap_high_pp"].to_numpy()) if len(data) else []
    )
    data["recommended"] = (
        data["trial"] == recommended_trial if recommended_trial is not None else False
    )
    return data.sort_values("cost").reset_index(drop=True)


def draw_pareto(
    data: pd.DataFrame,
    ax: Axes,
    *,
    xlabel: str,
    best_member_gap_pp: float | None = None,
    max_gap: float | None = None,
) -> Axes:
    dom, front = data[~data["on_front"]], data[data["on_front"]]

    def yerr(d):
        return [d["gap_pp"] - d["gap_low_pp"], d["gap_high_pp"] - d["gap_pp"]]

    ax.errorbar(
        dom["cost"],
        dom["gap_pp"],
        yerr=yerr(dom),
        fmt="o",
        color=FADED,
        alpha=0.5,
        ms=4,
        label="dominated",
    )
    ax.errorbar(
        front["cost"],
        front["gap_pp"],
        yerr=yerr(front),
        fmt="o-",
        color=FRONT,
        ms=5,
        label="Pareto front",
    )
    pick = data[data["recommended"]]
    if len(pick):
        ax.scatter(
            pick["cost"],
            pick["gap_pp"],
            s=220,
            facecolors="none",
            edgecolors=PICK,
            linewidths=2,
            label="recommended",
            zorder=5,
        )
    ax.axhline(0.0, color=ENSEMBLE, lw=1.5, label="ensemble (gap 0)")
    if best_member_gap_pp is not None and not math.isnan(best_member_gap_pp):
        ax.axhline(best_member_gap_pp, color=MEMBER, ls="--", lw=1.2, label="best single teacher")
    if max_gap is not None:
        tol_pp = max_gap * 100  # the plot's axis is in percentage points
        ax.axhline(tol_pp, color=PICK, ls=":", lw=1, label=f"tolerance {tol_pp:g} pp")
    log_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy gap to ensemble (pp, lower is better)")
    if len(data):  # every point shown; intervals that would flatten the plot are clipped, marked
        ylim = frame_limits(data["gap_pp"], data["gap_low_pp"], data["gap_high_pp"], 0.0)
        if max_gap is not None:
            ylim = (ylim[0], max(ylim[1], max_gap * 100 + 0.1))
        ax.set_ylim(*ylim)
        mark_clipped(ax, data["cost"], data["gap_low_pp"], data["gap_high_pp"], ylim)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


# ---------------------------------------------------------------------- capacity curve
def capacity_data(trials: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against parameters. Per architecture (student_params), the distilled student at
    its best temperature — the configuration with the best *validation* accuracy — with its
    interval, and the scratch student of the same architecture (same seeds); with a specialist
    teacher also the same configuration taught by the generalist alone ("generalist-taught",
    band = the paired interval of the specialist gain)."""
    c = candidates(trials)
    if c.empty:
        return pd.DataFrame(
            columns=["student_params", "kind", "acc", "acc_low", "acc_high", "temperature"]
        )
    best = (
        c.sort_values(["student_val_acc", "n_seeds"], ascending=False)
        .groupby("student_params", as_index=False)
        .head(1)
    )
    dist = pd.DataFrame(
        {
            "student_params": best["student_params"].astype(int),
            "kind": "distilled",
            "line": _line_labels(best),
            "acc": best["student_acc"],
            "acc_low": best["student_acc_ci_low"].fillna(best["student_acc"]),
            "acc_high": best["student_acc_ci_high"].fillna(best["student_acc"]),
            "temperature": best["temperature"],
        }
    )
    sc_acc = best["scratch_acc"]
    half = (best["kd_gain_ci_high"] - best["kd_gain"]).fillna(0.0)  # paired interval width as band
    scratch = pd.DataFrame(
        {
            "student_params": best["student_params"].astype(int),
            "kind": "scratch",
            "acc": sc_acc,
            "acc_low": sc_acc - half,
            "acc_high": sc_acc + half,
            "temperature": np.nan,
        }
    )
    parts = [dist, scratch]
    if "generalist_taught_acc" in best and best["generalist_taught_acc"].notna().any():
        g_acc = best["generalist_taught_acc"]
        g_half = (best["specialist_gain_ci_high"] - best["specialist_gain"]).fillna(0.0)
        parts.append(
            pd.DataFrame(
                {
                    "student_params": best["student_params"].astype(int),
                    "kind": "generalist-taught",
                    "acc": g_acc,
                    "acc_low": g_acc - g_half,
                    "acc_high": g_acc + g_half,
                    "temperature": best["temperature"],
                }
            )
        )
    out = pd.concat(parts)
    out["line"] = out["line"].fillna("")
    return out.sort_values(["kind", "line", "student_params"]).reset_index(drop=True)


def _line_labels(rows: pd.DataFrame) -> pd.Series:
    """Which capacity line a row belongs to: its architecture less the family's size
    parameter (an MLP's depth), so that one line never joins students of different depths."""
    from kdcore import get_family

    family = str(rows["family"].iloc[0]) if len(rows) and "family" in rows else ""
    try:
        size = get_family(family).size_param
    except Exception:  # an unknown family (a plug-in not imported): one line
        size = None
    cols = [c for c in rows.columns if c.startswith("arch_") and c != f"arch_{size}"]
    if size is None or not cols:
        return pd.Series("", index=rows.index)
    return rows[cols].apply(
        lambda r: ", ".join(f"{c.removeprefix('arch_')} {_plain_value(v)}" for c, v in r.items()),
        axis=1,
    )


def _plain_value(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def log_axis(ax: Axes) -> None:
    """A log x axis with labels at the decades only (minor labels like "3×10²4×10²" overlap)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def draw_capacity(
    data: pd.DataFrame,
    ax: Axes,
    *,
    ensemble_acc: float,
    best_member_acc: float,
    recommended: tuple[float, float] | None = None,
) -> Axes:
    specialists = bool((data["kind"] == "generalist-taught").any())
    labels = {
        "distilled": "taught by generalist + specialists" if specialists else "distilled student",
        "generalist-taught": "taught by the generalist alone",
        "scratch": "scratch student",
    }
    for kind, color in (
        ("distilled", DISTILLED),
        ("generalist-taught", GENERALIST),
        ("scratch", SCRATCH),
    ):
        d = data[data["kind"] == kind].sort_values("student_params")
        if d.empty:
            continue
        lines = list(dict.fromkeys(d["line"])) if "line" in d else [""]
        for line, style in zip(lines, itertools.cycle(["o-", "s--", "^-.", "D:"]), strict=False):
            part = d[d["line"] == line] if "line" in d else d
            label = labels[kind] + (f", {line}" if line and kind == "distilled" else "")
            ax.plot(
                part["student_params"], part["acc"] * 100, style, color=color, ms=4, label=label
            )
            ax.fill_between(
                part["student_params"],
                part["acc_low"] * 100,
                part["acc_high"] * 100,
                color=color,
                alpha=0.15,
            )
    ax.axhline(
        ensemble_acc * 100, color=ENSEMBLE, lw=1.5, label=f"ensemble {fmt.pct(ensemble_acc)} %"
    )
    ax.axhline(
        best_member_acc * 100,
        color=MEMBER,
        ls="--",
        lw=1.2,
        label=f"best single teacher {fmt.pct(best_member_acc)} %",
    )
    if recommended is not None:
        ax.scatter(
            [recommended[0]],
            [recommended[1] * 100],
            marker="*",
            s=260,
            color=FRONT,
            edgecolors=PICK,
            zorder=6,
            label=f"recommended ({fmt.count(recommended[0])} params)",
        )
    log_axis(ax)
    ax.set_xlabel("student parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    # Every student shown, also those above the ensemble's line (the frame was capped there once).
    accs = np.append(data["acc"].to_numpy(float) * 100, [ensemble_acc * 100, best_member_acc * 100])
    ylim = frame_limits(accs, data["acc_low"] * 100, data["acc_high"] * 100, None)
    ax.set_ylim(max(ylim[0], 0.0), min(ylim[1], 100.5))
    mark_clipped(
        ax, data["student_params"], data["acc_low"] * 100, data["acc_high"] * 100, ax.get_ylim()
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax


# ---------------------------------------------------------------------- temperature map
def temperature_map_data(trials: pd.DataFrame, n_t_bins: int = 5) -> pd.DataFrame:
    """Mean accuracy gap (pp) over (student size, temperature bin): rows = parameter-count bins
    (powers of 4), columns = temperature bins (log-spaced over the sampled range)."""
    c = candidates(trials)
    if c.empty:
        return pd.DataFrame()
    t = c["temperature"].astype(float)
    edges = (
        np.geomspace(t.min(), t.max() * (1 + 1e-9), n_t_bins + 1)
        if t.max() > t.min()
        else np.array([t.min(), t.min() * 1.0001])
    )
    labels: list[str] = []
    for digits in range(1, 8):  # enough decimals for distinct labels of close temperatures
        labels = [f"{a:.{digits}f}–{b:.{digits}f}" for a, b in itertools.pairwise(edges)]
        if len(set(labels)) == len(labels):
            break
    t_bin = pd.cut(t, edges, include_lowest=True, labels=labels)
    size_bin = (4 ** np.floor(np.log(c["student_params"].astype(float)) / np.log(4))).astype(int)
    return (
        c.assign(size_bin=size_bin, t_bin=t_bin, gap_pp=c["acc_gap"] * 100)
        .groupby(["size_bin", "t_bin"], observed=False)["gap_pp"]
        .mean()
        .unstack("t_bin")
        .sort_index()
    )


def draw_temperature_map(data: pd.DataFrame, ax: Axes) -> Axes:
    values = data.to_numpy(float)
    finite = values[np.isfinite(values)]
    vmax = float(np.percentile(finite, 95)) if finite.size else 1.0
    im = ax.imshow(
        values,
        aspect="auto",
        origin="lower",
        cmap="viridis_r",
        vmin=min(0.0, finite.min()) if finite.size else 0,
        vmax=vmax,
    )
    ax.set_xticks(range(values.shape[1]), [str(c) for c in data.columns], rotation=30, fontsize=8)
    ax.set_yticks(
        range(values.shape[0]),
        [f"{fmt.count(w)}–{fmt.count(4 * w - 1)}" for w in data.index],
        fontsize=8,
    )
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{fmt.fixed(values[i, j], 2)}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if values[i, j] > vmax / 2 else "black",
                )
    ax.set_xlabel("temperature T")
    ax.set_ylabel("student parameters (bin)")
    ax.figure.colorbar(im, ax=ax, label="mean gap to ensemble (pp, lower is better)")
    return ax


# ---------------------------------------------------------------------- KD gain
def kd_gain_data(trials: pd.DataFrame) -> pd.DataFrame:
    """KD gain (pp) per completed student against its parameters, with the paired interval."""
    c = candidates(trials).sort_values("student_params")
    gain = c["kd_gain"] * 100
    return pd.DataFrame(
        {
            "trial": c["trial"].astype(int),
            "student_params": c["student_params"].astype(int),
            "kd_gain_pp": gain,
            "kd_gain_low_pp": (c["kd_gain_ci_low"] * 100).fillna(gain),
            "kd_gain_high_pp": (c["kd_gain_ci_high"] * 100).fillna(gain),
            "temperature": c["temperature"],
        }
    ).reset_index(drop=True)


def draw_kd_gain(data: pd.DataFrame, ax: Axes) -> Axes:
    """Colours by the interval, not the mean: it helps only where the whole 95 % interval is
    above 0, hurts where it is below, and is not distinguishable from 0 otherwise."""
    helps = data["kd_gain_low_pp"] > 0
    hurts = data["kd_gain_high_pp"] < 0
    for mask, color, label in (
        (helps, DISTILLED, "KD helps (interval above 0)"),
        (hurts, SCRATCH, "KD hurts (interval below 0)"),
        (~helps & ~hurts, FADED, "no clear difference"),
    ):
        d = data[mask]
        if d.empty:
            continue
        ax.errorbar(
            d["student_params"],
            d["kd_gain_pp"],
            yerr=[d["kd_gain_pp"] - d["kd_gain_low_pp"], d["kd_gain_high_pp"] - d["kd_gain_pp"]],
            fmt="o",
            color=color,
            ms=4,
            alpha=0.8,
            label=label,
        )
    ax.axhline(0, color="black", lw=1)
    if len(data):  # one ±45 pp interval must not flatten the others: clip and mark it
        ylim = frame_limits(
            data["kd_gain_pp"], data["kd_gain_low_pp"], data["kd_gain_high_pp"], 0.0
        )
        ax.set_ylim(*ylim)
        mark_clipped(
            ax, data["student_params"], data["kd_gain_low_pp"], data["kd_gain_high_pp"], ylim
        )
    log_axis(ax)
    ax.set_xlabel("student parameters (log scale)")
    ax.set_ylabel("KD gain over scratch (pp)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


# ---------------------------------------------------------------------- Optuna's view
def history_data(trials: pd.DataFrame) -> pd.DataFrame:
    """Optimisation history of the search phase: validation accuracy (the study's objective)
    per trial number, and the best so far."""
    s = trials[(trials["phase"] == "search")].sort_values("trial")
    val = s["student_val_acc"].where(s["state"] == "complete") * 100
    return pd.DataFrame(
        {
            "trial": s["trial"].astype(int).to_numpy(),
            "val_acc_pct": val.to_numpy(float),
            "best_so_far_pct": val.cummax().ffill().to_numpy(float),
            "state": s["state"].astype(str).to_numpy(),
        }
    )


def draw_history(data: pd.DataFrame, ax: Axes) -> Axes:
    ok = data[data["state"] == "complete"]
    ax.plot(ok["trial"], ok["val_acc_pct"], "o", color=DISTILLED, ms=4, label="trial (validation)")
    ax.plot(data["trial"], data["best_so_far_pct"], "-", color=FRONT, label="best so far")
    bad = data[data["state"] != "complete"]
    if len(bad):
        ymin = np.nanmin(data["val_acc_pct"]) if np.isfinite(data["val_acc_pct"]).any() else 0
        ax.plot(bad["trial"], [ymin] * len(bad), "x", color="black", label="failed / pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel("student validation accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def draw_importances(data: pd.DataFrame, ax: Axes) -> Axes:
    ax.barh(data["param"], data["importance"], color=DISTILLED)
    ax.invert_yaxis()
    ax.set_xlabel("importance for validation accuracy (fANOVA, sums to 1)")
    return ax


def new_axes(width: float = 7.0, height: float = 4.5) -> tuple[Figure, Axes]:
    """A figure not registered with pyplot (no global backend state, nothing to close)."""
    fig = Figure(figsize=(width, height), dpi=110)
    return fig, fig.add_subplot()


def law_data(trials: pd.DataFrame, seeds: pd.DataFrame | None, rec: Recommendation) -> pd.DataFrame:
    """The capacity law's points (one per completed search trial: ``x``, ``y`` = validation
    error, ``se``, ``held_out``) with the fitted laws in ``attrs`` (``kd``, ``scratch``, the
    held-out check ``holdout``, the decision's ``law`` facts). Empty when the law cannot be
    fitted."""
    kd = capacity_law.fit_task(trials, seeds, "distilled")
    if kd is None:
        return pd.DataFrame(columns=["x", "y", "se", "held_out"])
    pts = kd.points
    hold = capacity_law.holdout(pts, n_boot=200)
    cut = hold.cut if hold is not None else math.inf
    out = pd.DataFrame({"x": pts.x, "y": pts.y, "se": pts.se, "held_out": pts.x > cut})
    out.attrs = {
        "kd": kd,
        "scratch": capacity_law.fit_task(trials, seeds, "scratch"),
        "holdout": hold,
        "law": rec.law if rec.law_contradicted is None else None,
    }
    return out


def draw_law(data: pd.DataFrame, ax: Axes) -> Axes:
    """Draw :func:`law_data` (the caption in the report states the encoding)."""
    kd, scratch, hold, facts = (data.attrs[k] for k in ("kd", "scratch", "holdout", "law"))
    fit = data[~data["held_out"]]
    ax.errorbar(
        fit["x"],
        fit["y"] * 100,
        yerr=fit["se"] * 100,
        fmt="o",
        ms=3,
        color=DISTILLED,
        alpha=0.8,
        label="search trials (fit)",
    )
    if hold is not None:
        ax.errorbar(
            hold.x,
            hold.measured * 100,
            yerr=[
                (hold.measured - hold.low).clip(0) * 100,
                (hold.high - hold.measured).clip(0) * 100,
            ],
            fmt="o",
            ms=4,
            color=SCRATCH,
            label=f"held out: {hold.covered} of {hold.n} in the 90 % band",
        )
    grid = np.geomspace(kd.points.x.min() / 2, kd.points.x.max() * 2, 200)
    env, shapes = kd.envelope(grid)
    ax.plot(grid, env * 100, color=DISTILLED, lw=1.5, label=f"law, err = c + a·N^-{kd.alpha:.2f}")
    lows, highs = [], []
    for x, g in zip(grid, shapes, strict=True):
        lo, hi = kd.band(x, g, new_point=False)
        lows.append(lo[0])
        highs.append(hi[0])
    ax.fill_between(grid, np.array(lows) * 100, np.array(highs) * 100, color=DISTILLED, alpha=0.15)
    if scratch is not None:
        ax.plot(
            grid,
            scratch.envelope(grid)[0] * 100,
            "--",
            color=MEMBER,
            lw=1.2,
            label="scratch twins' law",
        )
    if facts is not None:
        p = facts["prediction"]
        ax.axhline(
            p["target_val_error"] * 100,
            color=ENSEMBLE,
            lw=1,
            label=f"tolerance on validation ({fmt.pct(facts['max_gap'])} pp)",
        )
        if math.isfinite(p["size"]):
            ax.axvline(p["size"], color=PICK, lw=1, label=f"predicted size {fmt.count(p['size'])}")
        x = facts.get("crossing")
        if x is not None and math.isfinite(x["size"]):
            ax.axvline(
                x["size"], color=PICK, ls=":", lw=1, label=f"laws cross ({fmt.count(x['size'])})"
            )
    top = float(np.max(data["y"] + data["se"]))
    if hold is not None:
        top = max(top, float(np.max(hold.high)))
    ax.set_ylim(0, top * 100 * 1.3)  # the points; the law's curve runs on above them
    log_axis(ax)
    ax.set_xlabel(f"student {kd.points.axis} (log scale)")
    ax.set_ylabel("validation error (%)")
    ax.legend(fontsize=7)
    return ax
