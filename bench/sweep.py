"""The Optuna sweep: suite → run folder of trial records.

Per task: load data → prepare the teacher (trained once or reused; outputs cached once per
split) → an Optuna study (seeded sampler; journal file in the run folder unless an RDB URL is
given) → trials via ask/tell. Each trial trains, in ONE group, the distilled student for every
replicate seed and the scratch baseline for every seed not trained before for that
architecture; objective values come from the validation split. After every trial the tables
are rewritten atomically, so a crash loses at most the trial in flight and ``--resume``
continues where the run stopped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from scipy import stats

from bench.ensemble import PreparedTeacher, prepare_teacher
from bench.measure import all_cores, ensemble_latency_columns, speedups, student_latency_columns
from bench.provenance import CONVENTIONS, git_info, machine_info, package_versions
from bench.records import (
    SCHEMA_VERSION,
    SEED_COLUMNS,
    atomic_write_text,
    read_trials,
    require_run_dir,
    to_frame,
    write_trials,
)
from bench.suite import Range, Suite, SuiteError, suite_from_dict
from bench.tasks import TaskData, load_task
from kdcore import (
    Distiller,
    Member,
    agreement,
    count_flops,
    count_params,
    expected_calibration_error,
    kl_to_teacher,
    select_device,
)

__all__ = ["Progress", "RunContext", "new_run_id", "run_suite", "summarise_seeds"]

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Progress:
    """What the CLI shows after each trial."""

    task: str
    done: int
    total: int
    elapsed_s: float
    row: dict[str, Any]
    best: dict[str, Any] | None
    phase: str = "search"


def new_run_id(suite_name: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}_{suite_name}"


def summarise_seeds(values: list[float]) -> tuple[float, float, float, float]:
    """mean, sample std, and the 95 % Student-t interval of the mean (NaN for n < 2)."""
    clean = [v for v in values if not math.isnan(v)]
    n = len(clean)
    if n == 0:
        return (math.nan,) * 4
    mean = sum(clean) / n
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


@dataclass
class RunContext:
    suite: Suite
    run_dir: Path
    run_id: str
    cache_root: Path
    train_device: str
    gpu: torch.device | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    seed_rows: list[dict[str, Any]] = field(default_factory=list)
    on_progress: Callable[[Progress], None] | None = None
    started: float = field(default_factory=time.perf_counter)
    replay: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def save(self) -> None:
        write_trials(to_frame(self.rows), self.run_dir, "trials")
        write_trials(to_frame(self.seed_rows, SEED_COLUMNS), self.run_dir, "seeds")


# ---------------------------------------------------------------------- Optuna plumbing
def _distribution(r: Range, kind: type) -> optuna.distributions.BaseDistribution:
    if kind is int:
        return optuna.distributions.IntDistribution(int(r.low), int(r.high), log=r.log)
    return optuna.distributions.FloatDistribution(r.low, r.high, log=r.log)


def _search_distributions(suite: Suite) -> dict[str, optuna.distributions.BaseDistribution]:
    s = suite.search
    return {
        "width": _distribution(s.width, int),
        "depth": _distribution(s.depth, int),
        "temperature": _distribution(s.temperature, float),
        "alpha": _distribution(s.alpha, float),
    }


def _storage(suite: Suite, run_dir: Path) -> optuna.storages.BaseStorage | str:
    if suite.budget.storage:
        return suite.budget.storage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))


def _make_study(suite: Suite, run_dir: Path, task: str, run_id: str) -> optuna.Study:
    b = suite.budget
    if b.sampler == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=b.sampler_seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=b.sampler_seed)
    kwargs: dict[str, Any] = {}
    if b.objective == "pareto":
        kwargs["directions"] = ["maximize", "minimize"]  # val accuracy, FLOPs
    else:
        kwargs["direction"] = "maximize"
        if b.prune:
            kwargs["pruner"] = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    return optuna.create_study(
        storage=_storage(suite, run_dir),
        sampler=sampler,
        study_name=f"{run_id}:{task}",
        load_if_exists=True,
        **kwargs,
    )


# ---------------------------------------------------------------------- one trial
class _ScratchCache:
    """Scratch baselines per (family, width, depth, seed): trained once, reused by trials."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, float]] = (
            json.loads(path.read_text()) if path.is_file() else {}
        )

    @staticmethod
    def key(family: str, width: int, depth: int, seed: int) -> str:
        return f"{family}:{width}:{depth}:{seed}"

    def get(self, *args: Any) -> dict[str, float] | None:
        return self.data.get(self.key(*args))

    def put(self, value: dict[str, float], *args: Any) -> None:
        self.data[self.key(*args)] = value
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


@dataclass(frozen=True)
class _Config:
    trial: int
    temperature: float
    alpha: float


def _run_group(
    ctx: RunContext,
    task: TaskData,
    teacher: PreparedTeacher,
    ensemble_cols: dict[str, Any],
    scratch: _ScratchCache,
    arch: tuple[int, int],
    configs: list[_Config],
    seeds: list[int],
    phase: str,
    on_epoch: Callable[[int, torch.Tensor], None] | None = None,
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Train one group — every (config, seed) distilled student plus the scratch baseline of
    each seed not trained before for this architecture — then evaluate on test and measure.
    Returns one (row, per-seed rows) per config; a config whose member diverged gets a
    failed row."""
    suite = ctx.suite
    st = suite.student
    width, depth = arch
    members = [Member(s, c.temperature, c.alpha) for c in configs for s in seeds]
    need_scratch = [s for s in seeds if scratch.get(st.family, width, depth, s) is None]
    members += [Member(s, 1.0, 0.0) for s in need_scratch]
    started = time.perf_counter()
    distiller = Distiller(
        family=st.family,
        arch={"width": width, "depth": depth},
        epochs=st.epochs,
        batch_size=st.batch_size,
        lr=st.lr,
        weight_decay=st.weight_decay,
        patience=st.patience or None,
        device=ctx.train_device,
        grouped=st.grouped,
    ).fit(
        task.x_train,
        task.y_train,
        task.x_val,
        task.y_val,
        members,
        teacher=teacher.targets["train"].to(ctx.train_device),
        on_epoch=on_epoch,
    )
    logits = distiller.predict_logits(task.x_test)
    test_lp = teacher.targets["test"].log_probs(1.0)
    y = task.y_test
    n_distilled = len(configs) * len(seeds)
    for j, s in enumerate(need_scratch):
        g = n_distilled + j
        if g in distiller.failed_:
            continue
        scratch.put(
            {
                "scratch_acc": float((logits[g].argmax(-1) == y).float().mean()),
                "scratch_val_acc": distiller.val_acc_[g],
            },
            st.family,
            width,
            depth,
            s,
        )
    model = distiller.models_[0]
    x1 = task.x_train[:1]
    flops = count_flops(model, x1)
    n_params = count_params(model)
    latency = student_latency_columns(model, task.input_dim, suite.measure, ctx.gpu)
    per_trial_time = (time.perf_counter() - started) / len(configs)
    out = []
    for ci, cfg in enumerate(configs):
        params = {
            "width": width,
            "depth": depth,
            "temperature": cfg.temperature,
            "alpha": cfg.alpha,
        }
        indices = [ci * len(seeds) + k for k in range(len(seeds))]
        failures = [distiller.failed_[g] for g in indices if g in distiller.failed_]
        if failures:
            out.append(
                (
                    _failed_row(
                        ctx, task, teacher, params, cfg.trial, seeds, phase, "fail", failures[0]
                    ),
                    [],
                )
            )
            continue
        base = {
            "run_id": ctx.run_id,
            "task": task.name,
            "trial": cfg.trial,
            "phase": phase,
            **params,
        }
        seed_rows = []
        for g, s in zip(indices, seeds, strict=True):
            sc = scratch.get(st.family, width, depth, s) or {}
            acc = float((logits[g].argmax(-1) == y).float().mean())
            seed_rows.append(
                {
                    **base,
                    "seed": s,
                    "student_acc": acc,
                    "scratch_acc": sc.get("scratch_acc", math.nan),
                    "kd_gain": acc - sc.get("scratch_acc", math.nan),
                    "student_val_acc": distiller.val_acc_[g],
                    "scratch_val_acc": sc.get("scratch_val_acc", math.nan),
                    "agreement": agreement(logits[g], test_lp),
                    "kl_to_teacher": kl_to_teacher(test_lp, logits[g]),
                    "student_ece": expected_calibration_error(logits[g], y),
                    "best_epoch": distiller.best_epoch_[g],
                }
            )
        row = _complete_row(base, seed_rows, teacher, st.family, seeds, n_params, flops)
        row |= latency
        row |= ensemble_cols
        row |= speedups(row)
        row["train_time_s"] = distiller.train_time_s_
        row["group_members"] = len(members)
        row["trial_time_s"] = per_trial_time
        row["datetime_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        out.append((row, seed_rows))
    return out


def _complete_row(
    base: dict[str, Any],
    seed_rows: list[dict[str, Any]],
    teacher: PreparedTeacher,
    family: str,
    seeds: list[int],
    n_params: int,
    flops: int,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        **base,
        "schema_version": SCHEMA_VERSION,
        "state": "complete",
        "fail_reason": "",
        "family": family,
        "n_seeds": len(seeds),
        "seed": seeds[0],
        "student_params": n_params,
        "ensemble_params": teacher.params,
        "param_ratio": n_params / teacher.params,
        "student_flops": flops,
        "student_macs": flops // 2,
        "ensemble_flops": teacher.flops,
        "flops_ratio": flops / teacher.flops,
        "ensemble_acc": teacher.ensemble_acc,
        "best_member_acc": teacher.best_member_acc,
        "mean_member_acc": teacher.mean_member_acc,
        "ensemble_ece": teacher.ensemble_ece,
        "teacher_mean_max_prob": teacher.mean_max_prob_train,
        "ensemble_val_acc": teacher.ensemble_val_acc,
    }
    acc = [r["student_acc"] for r in seed_rows]
    m, sd, lo, hi = summarise_seeds(acc)
    row |= {
        "student_acc": m,
        "student_acc_std": sd,
        "student_acc_ci_low": lo,
        "student_acc_ci_high": hi,
    }
    g_m, _, g_lo, g_hi = summarise_seeds([teacher.ensemble_acc - a for a in acc])
    row |= {"acc_gap": g_m, "acc_gap_ci_low": g_lo, "acc_gap_ci_high": g_hi}
    k_m, _, k_lo, k_hi = summarise_seeds([r["kd_gain"] for r in seed_rows])
    row |= {"kd_gain": k_m, "kd_gain_ci_low": k_lo, "kd_gain_ci_high": k_hi}
    scratch_acc = summarise_seeds([r["scratch_acc"] for r in seed_rows])[0]
    row["scratch_acc"] = scratch_acc
    row["gap_to_best_member"] = teacher.best_member_acc - m
    row["gap_closed"] = _share(m - scratch_acc, teacher.ensemble_acc - scratch_acc)
    row["ensemble_gain_kept"] = _share(
        m - teacher.best_member_acc, teacher.ensemble_acc - teacher.best_member_acc
    )
    for col in (
        "agreement",
        "kl_to_teacher",
        "student_ece",
        "student_val_acc",
        "scratch_val_acc",
        "best_epoch",
    ):
        row[col] = summarise_seeds([float(r[col]) for r in seed_rows])[0]
    row["val_gap"] = teacher.ensemble_val_acc - row["student_val_acc"]
    return row


def _share(num: float, den: float) -> float:
    return num / den if den > 0 and not math.isnan(num) else math.nan


def _failed_row(
    ctx: RunContext,
    task: TaskData,
    teacher: PreparedTeacher,
    params: dict[str, Any],
    trial_number: int,
    seeds: list[int],
    phase: str,
    state: str,
    reason: str,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": ctx.run_id,
        "task": task.name,
        "trial": trial_number,
        "phase": phase,
        "state": state,
        "fail_reason": reason,
        "family": ctx.suite.student.family,
        "width": int(params.get("width", 0)),
        "depth": int(params.get("depth", 0)),
        "temperature": float(params.get("temperature", math.nan)),
        "alpha": float(params.get("alpha", math.nan)),
        "n_seeds": len(seeds),
        "seed": seeds[0],
        "ensemble_params": teacher.params,
        "ensemble_flops": teacher.flops,
        "ensemble_acc": teacher.ensemble_acc,
        "best_member_acc": teacher.best_member_acc,
        "mean_member_acc": teacher.mean_member_acc,
        "datetime_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------- the run
def _write_manifest(ctx: RunContext, status: str, extra: dict[str, Any]) -> None:
    suite = ctx.suite
    manifest = {
        "run_id": ctx.run_id,
        "status": status,
        "schema_version": SCHEMA_VERSION,
        "created_utc": extra.get("created_utc"),
        "updated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": suite.to_dict(),
        "suite_sha256": suite.digest(),
        "suite_source": suite.source,
        "packages": package_versions(),
        "machine": machine_info(torch.get_num_threads(), suite.measure.threads, ctx.gpu),
        "git": git_info(),
        "conventions": CONVENTIONS,
        "train_device": ctx.train_device,
        "tasks": extra.get("tasks", {}),
        "study_storage": suite.budget.storage or "study.journal",
    }
    atomic_write_text(ctx.run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = require_run_dir(run_dir, "The RUN_DIR argument of --resume") / "manifest.json"
    return json.loads(path.read_text())


def run_suite(
    suite: Suite | None,
    *,
    out_root: Path = Path("results"),
    trials: int | None = None,
    resume: Path | None = None,
    replay: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Path:
    """Run (or resume) a suite; return the run folder.

    ``replay``: a run folder whose search configurations (width, depth, T, alpha, in trial
    order) this run evaluates instead of sampling — the same workload under other settings
    or code, for ``compare`` and for timing."""
    if replay is not None and resume is not None:
        raise SuiteError(
            "The '--replay' option must not be combined with --resume. Got both instead."
        )
    replay_configs = _replay_configs(Path(replay)) if replay is not None else {}
    if resume is not None:
        run_dir = Path(resume)
        manifest = _read_manifest(run_dir)
        suite = suite_from_dict(manifest["suite"])
        run_id = manifest["run_id"]
        created = manifest.get("created_utc")
        cache_root = run_dir.parent
        tasks_meta: dict[str, Any] = manifest.get("tasks", {})
    else:
        if suite is None:
            raise SuiteError(
                "The SUITE argument of run must be a suite file unless --resume is given. Got none instead."
            )
        out_root = Path(out_root)
        out_root.mkdir(parents=True, exist_ok=True)
        run_id = new_run_id(suite.name)
        run_dir = out_root / run_id
        suffix = 1
        while True:
            try:
                run_dir.mkdir(parents=False, exist_ok=False)  # never overwrite a run folder
                break
            except FileExistsError:
                suffix += 1
                run_id = f"{new_run_id(suite.name)}-{suffix}"
                run_dir = out_root / run_id
        created = datetime.now(UTC).isoformat(timespec="seconds")
        cache_root = out_root
        tasks_meta = {}
    n_trials = trials if trials is not None else suite.budget.trials
    try:
        train_device = str(select_device(suite.measure.device))
    except RuntimeError as exc:
        raise SuiteError(
            f"The 'device' parameter of [measure] must name an available device. Got {suite.measure.device!r} instead ({exc})."
        ) from None
    gpu = torch.device(train_device) if train_device.startswith("cuda") else None
    train_threads = suite.measure.train_threads or all_cores()
    torch.set_num_threads(train_threads)
    ctx = RunContext(suite, run_dir, run_id, cache_root, train_device, gpu, on_progress=on_progress)
    ctx.replay = replay_configs
    if resume is not None and (
        (run_dir / "trials.parquet").is_file() or (run_dir / "trials.csv").is_file()
    ):
        ctx.rows = [dict(r) for r in read_trials(run_dir).to_dict("records")]
        if (run_dir / "seeds.parquet").is_file():
            ctx.seed_rows = [
                dict(r) for r in pd.read_parquet(run_dir / "seeds.parquet").to_dict("records")
            ]
        ctx.rows = [_clean(r) for r in ctx.rows]
        ctx.seed_rows = [_clean(r) for r in ctx.seed_rows]
    meta = {"created_utc": created, "tasks": tasks_meta, "n_trials": n_trials}
    _write_manifest(ctx, "running", meta)
    for task_cfg in suite.tasks:
        task = load_task(task_cfg)
        teacher = prepare_teacher(task, suite.teacher, cache_root, train_device)
        ens_cols, ens_detail = ensemble_latency_columns(
            teacher.ensemble, task.input_dim, suite.measure, gpu
        )
        tasks_meta[task.name] = {
            "config": task_cfg.__dict__,
            "sizes": task.sizes(),
            "num_classes": task.num_classes,
            "input_dim": task.input_dim,
            "teacher": teacher.summary(),
            "ensemble_latency": ens_detail,
        }
        _write_manifest(ctx, "running", meta)
        _sweep_task(ctx, task, teacher, ens_cols, n_trials)
        _confirm_task(ctx, task, teacher, ens_cols)
    _write_manifest(ctx, "complete", meta)
    return run_dir


def _replay_configs(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    require_run_dir(run_dir, "The '--replay' option")
    trials = read_trials(run_dir)
    search = trials[trials["phase"] == "search"].sort_values("trial")
    out: dict[str, list[dict[str, Any]]] = {}
    for _, r in search.iterrows():
        out.setdefault(str(r["task"]), []).append(
            {
                "width": int(r["width"]),
                "depth": int(r["depth"]),
                "temperature": float(r["temperature"]),
                "alpha": float(r["alpha"]),
            }
        )
    return out


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if v is pd.NA else v) for k, v in row.items()}


def _sweep_task(
    ctx: RunContext,
    task: TaskData,
    teacher: PreparedTeacher,
    ens_cols: dict[str, Any],
    n_trials: int,
) -> None:
    suite = ctx.suite
    study = _make_study(suite, ctx.run_dir, task.name, ctx.run_id)
    dists = _search_distributions(suite)
    scratch = _ScratchCache(ctx.run_dir / f"scratch_{task.name}.json")
    seeds = list(range(suite.budget.seeds))
    recorded = {
        r["trial"]: r for r in ctx.rows if r["task"] == task.name and r["phase"] == "search"
    }
    # Trials left RUNNING by an interrupted run: finish them from the record, or retry them.
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number in recorded:
            _tell(study, t.number, recorded[t.number], suite)
        else:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params)
    done = len(recorded)
    queue = [dict(p) for p in ctx.replay.get(task.name, [])]
    if ctx.replay:
        n_trials = min(n_trials, len(queue))
    while done < n_trials:
        trials = _ask_group(study, dists, min(suite.budget.group_size, n_trials - done), queue)
        arch = (int(trials[0].params["width"]), int(trials[0].params["depth"]))
        configs = [
            _Config(t.number, float(t.params["temperature"]), float(t.params["alpha"]))
            for t in trials
        ]
        on_epoch = _pruning_callback(trials[0], len(seeds)) if suite.budget.prune else None
        try:
            results = _run_group(
                ctx, task, teacher, ens_cols, scratch, arch, configs, seeds, "search", on_epoch
            )
        except optuna.TrialPruned as exc:
            results = [
                (
                    _failed_row(
                        ctx, task, teacher, t.params, t.number, seeds, "search", "pruned", str(exc)
                    ),
                    [],
                )
                for t in trials
            ]
        except Exception as exc:  # a failing trial is recorded and the sweep goes on
            log.warning("trials %s failed: %s", [t.number for t in trials], exc)
            reason = f"{type(exc).__name__}: {exc}"
            results = [
                (
                    _failed_row(
                        ctx, task, teacher, t.params, t.number, seeds, "search", "fail", reason
                    ),
                    [],
                )
                for t in trials
            ]
        for row, seed_rows in results:
            ctx.rows.append(row)
            ctx.seed_rows.extend(seed_rows)
        ctx.save()
        for row, _ in results:
            _tell(study, row["trial"], row, suite)
            done += 1
            _progress(ctx, task.name, done, n_trials, row, "search")


def _ask_group(
    study: optuna.Study,
    dists: dict[str, optuna.distributions.BaseDistribution],
    size: int,
    queue: list[dict[str, Any]],
) -> list[optuna.Trial]:
    """Ask one trial freely, then ``size - 1`` more with its architecture enqueued, so the
    sampler chooses their temperature and alpha and all train as one same-shape group.
    With a replay ``queue`` the next configurations come from it instead (consecutive ones of
    the same architecture share a group)."""
    if queue:
        batch = [queue.pop(0)]
        same = (batch[0]["width"], batch[0]["depth"])
        while len(batch) < size and queue and (queue[0]["width"], queue[0]["depth"]) == same:
            batch.append(queue.pop(0))
        asked = []
        for params in batch:
            study.enqueue_trial(params)
            asked.append(study.ask(dists))
        return asked
    first = study.ask(dists)
    group = [first]
    for _ in range(size - 1):
        study.enqueue_trial({"width": first.params["width"], "depth": first.params["depth"]})
        group.append(study.ask(dists))
    return group


def _pruning_callback(trial: optuna.Trial, n_seeds: int) -> Callable[[int, torch.Tensor], None]:
    def on_epoch(epoch: int, val_acc: torch.Tensor) -> None:
        trial.report(float(val_acc[:n_seeds].mean()), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} on validation accuracy")

    return on_epoch


def _tell(study: optuna.Study, number: int, row: dict[str, Any], suite: Suite) -> None:
    if row["state"] == "complete":
        values: Any = (
            [row["student_val_acc"], row["student_flops"]]
            if suite.budget.objective == "pareto"
            else row["student_val_acc"]
        )
        study.tell(number, values)
    elif row["state"] == "pruned":
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(number, state=optuna.trial.TrialState.FAIL)


def _progress(
    ctx: RunContext, task: str, done: int, total: int, row: dict[str, Any], phase: str
) -> None:
    if ctx.on_progress is None:
        return
    complete = [r for r in ctx.rows if r["task"] == task and r["state"] == "complete"]
    # "Best so far" is judged on validation accuracy, like the study itself.
    best = max(complete, key=lambda r: r["student_val_acc"]) if complete else None
    ctx.on_progress(
        Progress(task, done, total, time.perf_counter() - ctx.started, row, best, phase)
    )


def _confirm_task(
    ctx: RunContext, task: TaskData, teacher: PreparedTeacher, ens_cols: dict[str, Any]
) -> None:
    """Re-run the top-k configurations (validation Pareto front, cheapest first) with more seeds."""
    cfg = ctx.suite.confirm
    if cfg.top_k <= 0:
        return
    frame = pd.DataFrame([r for r in ctx.rows if r["task"] == task.name])
    already = set(frame.loc[frame["phase"] == "confirm", "trial"]) if len(frame) else set()
    search = (
        frame[(frame["phase"] == "search") & (frame["state"] == "complete")]
        if len(frame)
        else frame
    )
    if search.empty:
        return
    chosen = select_confirm(search, cfg.top_k, cfg.max_val_gap_pp)
    scratch = _ScratchCache(ctx.run_dir / f"scratch_{task.name}.json")
    seeds = list(range(cfg.seeds))
    for i, (_, src) in enumerate(chosen.iterrows(), start=1):
        if src["trial"] in already:
            continue
        arch = (int(src["width"]), int(src["depth"]))
        configs = [_Config(int(src["trial"]), float(src["temperature"]), float(src["alpha"]))]
        try:
            results = _run_group(
                ctx, task, teacher, ens_cols, scratch, arch, configs, seeds, "confirm"
            )
        except Exception as exc:
            params = {k: src[k] for k in ("width", "depth", "temperature", "alpha")}
            reason = f"{type(exc).__name__}: {exc}"
            results = [
                (
                    _failed_row(
                        ctx,
                        task,
                        teacher,
                        params,
                        int(src["trial"]),
                        seeds,
                        "confirm",
                        "fail",
                        reason,
                    ),
                    [],
                )
            ]
        for row, seed_rows in results:
            ctx.rows.append(row)
            ctx.seed_rows.extend(seed_rows)
            ctx.save()
            _progress(ctx, task.name, i, len(chosen), row, "confirm")


def select_confirm(search: pd.DataFrame, top_k: int, max_val_gap_pp: float) -> pd.DataFrame:
    """Configurations to confirm, chosen on validation data only: the ``top_k`` cheapest (by
    FLOPs) completed students whose validation gap to the ensemble is within
    ``max_val_gap_pp``; if fewer qualify, the rest by smallest validation gap."""
    ranked = search.assign(_near=search["val_gap"] * 100 <= max_val_gap_pp)
    near = ranked[ranked["_near"]].sort_values(["student_flops", "val_gap"])
    rest = ranked[~ranked["_near"]].sort_values(["val_gap", "student_flops"])
    return pd.concat([near, rest]).head(top_k).drop(columns="_near")


def pareto_mask(cost_a: Any, cost_b: Any) -> Any:
    """Boolean mask of points not dominated when minimising both costs."""
    import numpy as np

    a, b = np.asarray(cost_a, float), np.asarray(cost_b, float)
    mask = np.ones(len(a), dtype=bool)
    for i in range(len(a)):
        dominated = (a <= a[i]) & (b <= b[i]) & ((a < a[i]) | (b < b[i]))
        mask[i] = not dominated.any()
    return mask
