"""``[search] strategy = "predict"``: the capacity law chooses which sizes to train.

The default strategy lets the sampler draw every trial's architecture across the whole range,
so most of the compute goes to students far larger than the answer. Here the architectures
come from :mod:`bench.decision.law`; the sampler still draws each trial's T and alpha:

1. **Explore.** Every shape of the family's range (an MLP's depths, a CNN's block counts: at
   most :data:`MAX_SHAPES`, evenly spread) at the sizes :data:`EXPLORE` of the way up the
   log-size range — the cheap end, where the law's curvature is.
2. **Aim.** Fit the law to the completed search trials; predict the smallest size whose
   fitted validation gap meets round 0's tolerance; train that size and its neighbours
   (:data:`NEIGHBOURS`, in the predicted shape), skipping architectures already trained.
   They are at and above it: the prediction is where the *mean* validation gap meets the
   tolerance, while certification needs the test bound within it — a margin of the test
   split's error — and tests the frontier largest first, so the students worth having are
   the predicted one and the next larger.
   A tolerance the law puts out of reach (so far) trains the predicted shape at
   :data:`UPWARD` times the largest size trained: a march up the range, not a jump to its
   top (the largest students cost the most).
3. **Stop** when the prediction moved less than :data:`SETTLED` (a factor) from the one made
   before the last batch, when every aimed architecture was already trained, or when the
   trial budget is spent; then certification runs as it always does, on the validation
   frontier of what was trained.

Every trial trains its full epochs (successive halving and pruning are off): a trial stopped
at epoch 3 measures another curve than the law's. Each step is a function of the completed
rows only (the previous prediction is refitted from the rows of the earlier batches), so the
search is the same for any number of workers and after a crash.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.config import DEFAULT_MAX_GAP
from bench.decision import law as capacity_law
from bench.search.context import TaskContext
from bench.validation import Range
from kdcore import get_family
from kdcore.families import arch_for_size

__all__ = ["EXPLORE", "MAX_SHAPES", "NEIGHBOURS", "SETTLED", "UPWARD", "plan_batch"]

EXPLORE = (0.0, 0.2, 0.4)  # where on the log-size range the first batch trains each shape
NEIGHBOURS = (1.0, 1.5, 2.25)  # the sizes trained at and above a prediction
UPWARD = (2.0, 4.0)  # while the tolerance looks out of reach: the largest trained size times
SETTLED = 1.25  # a prediction that moved less than this factor has settled
MAX_SHAPES = 4  # shapes explored (evenly spread over the range when it has more)


def _levels(r: Range, kind: type) -> list[float]:
    """The values of one shape parameter to explore."""
    if kind is int:
        values = list(range(int(r.low), int(r.high) + 1))
        if len(values) <= MAX_SHAPES:
            return [float(v) for v in values]
        idx = np.linspace(0, len(values) - 1, MAX_SHAPES).round().astype(int)
        return [float(values[i]) for i in sorted(set(idx))]
    return [float(r.low), float(r.high)] if r.low != r.high else [float(r.low)]


def shapes(ctx: TaskContext) -> list[dict[str, float]]:
    """The shapes the first batch explores (every combination, at most :data:`MAX_SHAPES`)."""
    space, family = ctx.suite.search, ctx.suite.student.family
    fam = get_family(family)
    width = fam.size_param
    names = [n for n in space.arch_names if n != width]
    grids = [_levels(dict(space.arch)[n], fam.param(n).kind) for n in names]
    combos = [dict(zip(names, c, strict=True)) for c in itertools.product(*grids)]
    if len(combos) > MAX_SHAPES:
        idx = np.linspace(0, len(combos) - 1, MAX_SHAPES).round().astype(int)
        combos = [combos[i] for i in sorted(set(idx))]
    return combos


def _pin(ctx: TaskContext, shape: dict[str, float], where: float) -> dict[str, Any]:
    """The params pinning ``shape`` at fraction ``where`` of the log-size range."""
    space, family = ctx.suite.search, ctx.suite.student.family
    fam = get_family(family)
    kinds = {n: fam.param(n).kind for n in shape}
    out: dict[str, Any] = {n: kinds[n](v) for n, v in shape.items()}
    if space.size is not None:
        r = space.size
        out["size"] = _along(r, where)
    else:
        name = _width(ctx)
        out[name] = fam.param(name).kind(_along(dict(space.arch)[name], where))
    return out


def _width(ctx: TaskContext) -> str:
    """The family's size parameter (the suite refuses ``predict`` for a family without)."""
    name = get_family(ctx.suite.student.family).size_param
    assert name is not None, "strategy 'predict' needs a family with a size parameter"
    return name


def _along(r: Range, where: float) -> float:
    if r.log:
        return float(math.exp(math.log(r.low) + where * (math.log(r.high) - math.log(r.low))))
    return float(r.low + where * (r.high - r.low))


def _pin_size(ctx: TaskContext, shape: dict[str, float], params: float) -> dict[str, Any]:
    """The params pinning ``shape`` at about ``params`` student parameters, inside the
    searched range."""
    space, family = ctx.suite.search, ctx.suite.student.family
    fam = get_family(family)
    out: dict[str, Any] = {n: fam.param(n).kind(v) for n, v in shape.items()}
    if space.size is not None:
        r = space.size
        out["size"] = float(np.clip(params / ctx.teacher.params, r.low, r.high))
        return out
    name = _width(ctx)
    arch = arch_for_size(family, ctx.task.input_shape, ctx.task.num_classes, params, **out)
    r = dict(space.arch)[name]
    out[name] = fam.param(name).kind(np.clip(arch[name], r.low, r.high))
    return out


def _shape_of(rows: pd.DataFrame, label: str, ctx: TaskContext) -> dict[str, float]:
    """The shape parameters of the rows whose law label is ``label``."""
    fam = get_family(ctx.suite.student.family)
    names = [n for n in ctx.suite.search.arch_names if n != fam.size_param]
    for _, r in rows.iterrows():
        cols = [
            f"arch_{n}" for n in names if f"arch_{n}" in rows and rows[f"arch_{n}"].nunique() > 1
        ]
        if capacity_law.shape_label(r, cols) == label:
            return {n: float(r[f"arch_{n}"]) for n in names}
    return {}


def tolerance(ctx: TaskContext) -> float:
    """The tolerance the prediction aims at: round 0's (the suite's, else the default)."""
    if ctx.certify_rounds:
        return float(ctx.certify_rounds[0])
    return ctx.suite.certify.max_gap or DEFAULT_MAX_GAP


def prediction(ctx: TaskContext, rows: pd.DataFrame) -> tuple[float, str] | None:
    """The law's smallest size for the tolerance (``inf`` when out of reach) and its shape,
    from the completed search rows ``rows``; None when too few to fit."""
    done = rows[(rows["phase"] == "search") & (rows["state"] == "complete")]
    if done.empty:
        return None
    width = get_family(ctx.suite.student.family).size_param
    pts = capacity_law.law_points(done, None, "distilled", "params", width)
    law = capacity_law.fit_law(pts, n_boot=0)
    if law is None:
        return None
    ens_val = float(done["ensemble_val_acc"].iloc[0])
    if not math.isfinite(ens_val):
        return None
    p = capacity_law.predict_size(law, ens_val, tolerance(ctx))
    return p.size, p.group


def plan_batch(
    ctx: TaskContext, rows: pd.DataFrame, last_batch: int | None
) -> list[dict[str, Any]]:
    """The pinned params of the next batch's groups (empty: the search is done). ``rows``:
    every recorded search row; ``last_batch``: the first trial number of the latest batch
    (None before the first)."""
    if last_batch is None or rows.empty:
        return [_pin(ctx, s, where) for s in shapes(ctx) for where in EXPLORE]
    now = prediction(ctx, rows)
    if now is None:  # too few completed points: fill the explored shapes' range upwards
        return [_pin(ctx, s, 0.75) for s in shapes(ctx)] if last_batch == 0 else []
    size, label = now
    before = prediction(ctx, rows[rows["trial"] < last_batch])
    if (
        before is not None
        and math.isfinite(size)
        and math.isfinite(before[0])
        and abs(math.log(size / before[0])) < math.log(SETTLED)
    ):
        return []
    done = rows[(rows["phase"] == "search") & (rows["state"] == "complete")]
    shape = _shape_of(done, label, ctx)
    if not math.isfinite(size):  # out of reach so far: march up from the largest trained
        largest = float(done["student_params"].max())
        pins = [_pin_size(ctx, shape, largest * f) for f in UPWARD]
    else:
        pins = [_pin_size(ctx, shape, size * f) for f in NEIGHBOURS]
    cols = [f"arch_{n}" for n in ctx.suite.search.arch_names]
    known = rows.dropna(subset=[c for c in cols if c in rows])
    trained = {_arch_key(ctx, r) for _, r in known.iterrows()}
    fresh: dict[tuple[Any, ...], dict[str, Any]] = {}
    for pin in pins:
        key = _arch_key(ctx, pin)
        if key not in trained:
            fresh.setdefault(key, pin)
    return list(fresh.values())


def _arch_key(ctx: TaskContext, values: Any) -> tuple[Any, ...]:
    """An architecture as a comparable key, from pinned params or a recorded row."""
    space, family = ctx.suite.search, ctx.suite.student.family
    fam = get_family(family)
    if isinstance(values, pd.Series):
        arch = {n: values[f"arch_{n}"] for n in space.arch_names}
    else:
        arch = {**values, **ctx.sizer.derive(values)}
    return tuple(fam.param(n).kind(arch[n]) for n in space.arch_names)
