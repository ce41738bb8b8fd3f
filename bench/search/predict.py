"""``[search] strategy = "predict"``: the capacity law chooses which sizes to train.

The default strategy lets the sampler draw every trial's architecture across the whole range,
so most of the compute goes to students far larger than the answer. Here the architectures
come from :mod:`bench.decision.law`; the sampler still draws each trial's T and alpha:

1. **Explore.** Every shape of the family's range (an MLP's depths, a CNN's block counts: at
   most :data:`MAX_SHAPES`, evenly spread) at the cheap end of the log-size range, from its
   bottom to :data:`EXPLORE` of the way up, at as few sizes as leave the law :data:`SPARE`
   degrees of freedom (:func:`explore_positions`: 2 sizes for 4 shapes, 3 for 2–3 shapes).
2. **Aim.** Fit the law to the completed search trials; predict the smallest size whose
   fitted validation gap meets round 0's tolerance; train that size and its neighbours
   (:data:`NEIGHBOURS`), skipping architectures already trained. They are at and above it:
   the prediction is where the *mean* validation gap meets the tolerance, while
   certification needs the test bound within it and tests the frontier largest first. The
   shape is the one whose trained students near that size are most accurate on validation
   (:func:`_aim_shape`): the law's shapes share an exponent, real shapes cross.
   A tolerance the law puts out of reach (so far) trains the shape at :data:`UPWARD` times
   the largest size trained: a march up the range, not a jump to its top.
3. **Anchor.** Certification tests the frontier largest first and stops at the first
   failure, so it needs a first student that validation says is safely within the tolerance
   (:func:`bench.decision.protocol.certify_order`'s *safe* student: validation gap plus
   certification's margin within the tolerance). Until one is trained, each batch also trains
   the size where the law's gap clears the tolerance by that margin (out of the law's reach:
   4 × the largest trained; trained and still not safe: 2 ×), up to the range's top. Where
   no student in the range is safe, that is where certification starts.
4. **Ladder.** Once the prediction has settled and no anchor is pending, every gap wider
   than :data:`LADDER` (a factor) between the trained sizes from the prediction up to the
   smallest safe student (none: the largest trained) gets its geometric middle (:func:`ladder`): certification steps
   down that ladder, and where a rung is missing its answer jumps by the gap.
5. **Stop** when the prediction moved less than :data:`SETTLED` (a factor) from the one made
   before the last batch, no anchor is pending and the ladder is whole, when every aimed
   architecture was already trained, or when the trial budget is spent; then certification
   runs as it always does, on the validation frontier of what was trained.

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
from bench.decision.protocol import certify_margin, claim_level
from bench.search.context import TaskContext
from bench.validation import Range
from kdcore import get_family
from kdcore.families import arch_for_size

__all__ = [
    "EXPLORE",
    "MAX_SHAPES",
    "NEIGHBOURS",
    "SETTLED",
    "SPARE",
    "UPWARD",
    "explore_positions",
    "plan_batch",
]

EXPLORE = 0.4  # the first batch trains each shape up to this fraction of the log-size range
SPARE = 2  # degrees of freedom the first batch leaves the law beyond its parameters
NEIGHBOURS = (1.0, 1.5)  # the sizes trained at and above a prediction
LADDER = 2.25  # the widest size ratio left untrained between the prediction and the anchor
UPWARD = (2.0, 4.0)  # while the tolerance looks out of reach: the largest trained size times
SETTLED = 1.25  # a prediction that moved less than this factor has settled
MAX_SHAPES = 4  # shapes explored (evenly spread over the range when it has more)


def explore_positions(n_shapes: int) -> tuple[float, ...]:
    """Where on the log-size range the first batch trains each of ``n_shapes`` shapes: ``k``
    positions evenly from the bottom to :data:`EXPLORE`, with ``k`` the fewest (at least 2)
    that leave the law (``2 + n_shapes`` parameters: the floor, the exponent, one amplitude
    per shape) :data:`SPARE` degrees of freedom — 2 positions for 4 shapes, 3 for 2 or 3, 5
    for one."""
    k = max(2, math.ceil((n_shapes + 2 + SPARE) / n_shapes))
    return tuple(float(v) for v in np.linspace(0.0, EXPLORE, k))


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


def _shape_cols(rows: pd.DataFrame, ctx: TaskContext) -> tuple[list[str], list[str]]:
    """The family's shape parameters (every architecture parameter but the size one) and the
    row columns of those that vary in ``rows`` (what the law labels a shape by)."""
    fam = get_family(ctx.suite.student.family)
    names = [n for n in ctx.suite.search.arch_names if n != fam.size_param]
    cols = [f"arch_{n}" for n in names if f"arch_{n}" in rows and rows[f"arch_{n}"].nunique() > 1]
    return names, cols


def _shape_of(rows: pd.DataFrame, label: str, ctx: TaskContext) -> dict[str, float]:
    """The shape parameters of the rows whose law label is ``label``."""
    names, cols = _shape_cols(rows, ctx)
    for _, r in rows.iterrows():
        if capacity_law.shape_label(r, cols) == label:
            return {n: float(r[f"arch_{n}"]) for n in names}
    return {}


def tolerance(ctx: TaskContext) -> float:
    """The tolerance the prediction aims at: round 0's (the suite's, else the default)."""
    if ctx.certify_rounds:
        return float(ctx.certify_rounds[0])
    return ctx.suite.certify.max_gap or DEFAULT_MAX_GAP


def _margin(ctx: TaskContext, done: pd.DataFrame, student_val_acc: Any) -> Any:
    """Certification's margin (:func:`bench.decision.protocol.certify_margin`) at round 0's
    level for students of validation accuracy ``student_val_acc``."""
    suite = ctx.suite
    level = claim_level(suite.certify.alpha, 0, len(suite.ship.forms))
    n_test = float(pd.to_numeric(done["n_test"]).max())
    ens = float(done["ensemble_val_acc"].iloc[0])
    return certify_margin(student_val_acc, ens, n_test, float(len(ctx.task.y_val)), level)


def _safe(ctx: TaskContext, done: pd.DataFrame) -> np.ndarray:
    """Which trained students certification would count *safe* (test first): validation gap
    plus certification's margin within the tolerance
    (:func:`bench.decision.protocol.certify_order`). Without one, fixed-sequence testing
    starts at a student validation already doubts, and one failure there certifies nothing."""
    acc = done["student_val_acc"].to_numpy(float)
    gap = float(done["ensemble_val_acc"].iloc[0]) - acc
    return np.asarray(gap + _margin(ctx, done, acc) <= tolerance(ctx) + 1e-14, dtype=bool)


def prediction(
    ctx: TaskContext, rows: pd.DataFrame, margin: bool = False
) -> tuple[float, str] | None:
    """The law's smallest size for the tolerance (``inf`` when out of reach) and its shape,
    from the completed search rows ``rows``; None when too few to fit. ``margin``: the
    smallest size whose fitted gap clears the tolerance by certification's margin (the
    anchor's size)."""
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
    gap = tolerance(ctx)
    if margin:  # at the target's own accuracy, ens − gap: a conservative (larger) margin
        gap -= float(_margin(ctx, done, ens_val - max(gap, 0.0)))
    p = capacity_law.predict_size(law, ens_val, gap)
    return p.size, p.group


def plan_batch(
    ctx: TaskContext, rows: pd.DataFrame, last_batch: int | None
) -> list[dict[str, Any]]:
    """The pinned params of the next batch's groups (empty: the search is done). ``rows``:
    every recorded search row; ``last_batch``: the first trial number of the latest batch
    (None before the first)."""
    if last_batch is None or rows.empty:
        todo = shapes(ctx)
        return [_pin(ctx, s, where) for s in todo for where in explore_positions(len(todo))]
    now = prediction(ctx, rows)
    if now is None:  # too few completed points: fill the explored shapes' range upwards
        return [_pin(ctx, s, 0.75) for s in shapes(ctx)] if last_batch == 0 else []
    size, label = now
    before = prediction(ctx, rows[rows["trial"] < last_batch])
    settled = (
        before is not None
        and math.isfinite(size)
        and math.isfinite(before[0])
        and abs(math.log(size / before[0])) < math.log(SETTLED)
    )
    done = rows[(rows["phase"] == "search") & (rows["state"] == "complete")]
    cols = [f"arch_{n}" for n in ctx.suite.search.arch_names]
    known = rows.dropna(subset=[c for c in cols if c in rows])
    trained = {_arch_key(ctx, r) for _, r in known.iterrows()}
    shape = _shape_of(done, _aim_shape(done, size, label, ctx), ctx)
    largest = float(done["student_params"].max())
    safe = _safe(ctx, done)
    anchor = None if safe.any() else _anchor(ctx, rows, shape, size, largest)
    if anchor is not None and _arch_key(ctx, anchor) in trained:
        anchor = None  # the march reached the range's top: certification starts there
    pins = []
    if not math.isfinite(size):  # out of reach so far: march up from the largest trained
        pins += [_pin_size(ctx, shape, largest * f) for f in UPWARD]
    elif not settled:
        pins += [_pin_size(ctx, shape, size * f) for f in NEIGHBOURS]
    elif anchor is None:
        params = done["student_params"].to_numpy(float)
        top = float(params[safe].min()) if safe.any() else largest
        pins += [_pin_size(ctx, shape, at) for at in ladder(params, size, top)]
    pins += [] if anchor is None else [anchor]
    fresh: dict[tuple[Any, ...], dict[str, Any]] = {}
    for pin in pins:
        key = _arch_key(ctx, pin)
        if key not in trained:
            fresh.setdefault(key, pin)
    return list(fresh.values())


def _anchor(
    ctx: TaskContext, rows: pd.DataFrame, shape: dict[str, float], size: float, largest: float
) -> dict[str, Any] | None:
    """The next anchor to train (none while the prediction is out of reach: the march up
    is the anchor then): the size where the law's gap clears the tolerance by
    certification's margin; out of the law's reach, 4 × the largest trained; trained there
    and still not safe, 2 ×."""
    if not math.isfinite(size):
        return None
    safe = prediction(ctx, rows, margin=True)
    at = safe[0] if safe is not None else math.inf
    if not math.isfinite(at):  # out of the law's reach: a march up, not the range's top
        at = largest * UPWARD[-1]
    elif at <= largest:  # trained there and still not safe: the next step up
        at = largest * UPWARD[0]
    return _pin_size(ctx, shape, at)


def ladder(trained: np.ndarray, size: float, top: float) -> list[float]:
    """The sizes still to train between the prediction ``size`` and ``top`` — the smallest
    safe student, or (none) the largest trained, where certification starts: the geometric
    middle of every gap wider than a factor :data:`LADDER` between the ``trained`` sizes
    there. Certification steps down from ``top`` towards validation's guess and certifies
    the last student that passes; where it has no student to step to, its answer jumps by the
    gap."""
    if not math.isfinite(size) or top <= size:
        return []
    inside = trained[(trained > size) & (trained < top)]
    sizes = np.unique(np.concatenate([[size, top], inside]))
    wide = sizes[1:] / sizes[:-1] > LADDER
    return [float(v) for v in np.sqrt(sizes[1:] * sizes[:-1])[wide]]


def _aim_shape(done: pd.DataFrame, size: float, label: str, ctx: TaskContext) -> str:
    """The shape to train at the predicted ``size``: the shape of the most accurate trained
    student (on validation) within a factor ``NEIGHBOURS[-1]`` of it, else the law's
    ``label``. The law's shapes share one exponent, so its curves are parallel and their
    order is set mostly by the small, cheap students; real shapes cross (a deep MLP is worse
    than a shallow one at 200 parameters and better at 900), and near the answer the trained
    students say which is better."""
    if not math.isfinite(size):
        return label
    params = done["student_params"].to_numpy(float)
    near = done[(params >= size / NEIGHBOURS[-1]) & (params <= size * NEIGHBOURS[-1])]
    if near.empty:
        return label
    best = near.sort_values(["student_val_acc", "trial"], ascending=[False, True]).iloc[0]
    return capacity_law.shape_label(best, _shape_cols(done, ctx)[1])


def _arch_key(ctx: TaskContext, values: Any) -> tuple[Any, ...]:
    """An architecture as a comparable key, from pinned params or a recorded row."""
    space, family = ctx.suite.search, ctx.suite.student.family
    fam = get_family(family)
    if isinstance(values, pd.Series):
        arch = {n: values[f"arch_{n}"] for n in space.arch_names}
    else:
        arch = {**values, **ctx.sizer.derive(values)}
    return tuple(fam.param(n).kind(arch[n]) for n in space.arch_names)
