"""The sweep, orchestration only: suite → run folder of trial records.

1. Validate everything a run needs *before* anything is written: the suite (already parsed),
   the data of every task, the teacher files, the device. A problem is an
   :class:`~bench.errors.InputError` (exit 2) and no run folder is created.
2. Per task: prepare the teacher (trained once or reused; outputs cached once per split), open
   the Optuna study (``bench.study``), and ask trials in groups that share an architecture
   (``bench.trial``); objective values come from the validation split.
3. After every group the tables are rewritten atomically, so a crash loses at most the group
   in flight and ``--resume`` continues where the run stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

from bench.errors import InputError
from bench.measure import all_cores, ensemble_latency_columns
from bench.plugins import loaded_plugins
from bench.provenance import CONVENTIONS, git_info, machine_info, package_versions
from bench.records import (
    SEED_COLUMNS,
    Manifest,
    read_seeds,
    read_trials,
    require_run_dir,
    to_frame,
    write_trials,
)
from bench.rundir import atomic_write_text, inside
from bench.space import arch_of, distributions
from bench.study import make_study, pruning_callback
from bench.suite import Suite, suite_from_dict
from bench.tasks import TaskData, load_task
from bench.teacher import LoadedTeacher, PreparedTeacher, load_teacher, prepare_teacher
from bench.trial import GroupResult, ScratchStore, TrialConfig, failed_row, run_group
from kdcore import select_device

__all__ = ["Progress", "RunContext", "new_run_id", "run_suite", "select_confirm"]

log = logging.getLogger(__name__)


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


@dataclass
class RunContext:
    suite: Suite
    run_dir: Path
    run_id: str
    cache_dir: Path
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

    def commit(self, result: GroupResult, scratch: ScratchStore, task: str) -> None:
        for row, seed_rows in result.rows:
            self.rows.append(row)
            self.seed_rows.extend(seed_rows)
        if result.scratch:
            atomic_write_text(
                inside(self.run_dir, f"scratch_{task}.json"),
                json.dumps(scratch.data, indent=1, sort_keys=True),
            )
        self.save()


def _read_scratch(run_dir: Path, task: str) -> ScratchStore:
    path = inside(run_dir, f"scratch_{task}.json")
    return ScratchStore(json.loads(path.read_text()) if path.is_file() else None)


# ---------------------------------------------------------------------- the run
def _select_train_device(suite: Suite) -> str:
    try:
        return str(select_device(suite.measure.device))
    except RuntimeError as exc:
        raise InputError(
            f"The 'device' parameter of [measure] must name an available device. Got "
            f"{suite.measure.device!r} instead ({exc})."
        ) from None


def _data_sha256(task: TaskData) -> str:
    return str(task.source.get("sha256") or task.fingerprint())


def _preflight(suite: Suite, cache_dir: Path) -> list[tuple[TaskData, LoadedTeacher | None]]:
    """Load and validate every task's data and teacher files; write nothing."""
    out = []
    for cfg in suite.tasks:
        task = load_task(cfg)
        out.append((task, load_teacher(task, suite.teacher, cache_dir)))
    return out


def _manifest(
    ctx: RunContext, status: str, created: str, tasks: dict[str, Any], n_trials: int
) -> Manifest:
    suite = ctx.suite
    return Manifest(
        run_id=ctx.run_id,
        status=status,
        suite=suite.to_dict(),
        suite_sha256=suite.digest(),
        created_utc=created,
        updated_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        suite_source=suite.source,
        packages=package_versions(),
        machine=machine_info(torch.get_num_threads(), suite.measure.threads, ctx.gpu),
        git=git_info(),
        conventions=CONVENTIONS,
        train_device=ctx.train_device,
        tasks=tasks,
        study_storage=suite.budget.storage or "study.journal",
        plugins=loaded_plugins(),
        n_trials=n_trials,
    )


def _new_run_dir(out_root: Path, suite_name: str) -> tuple[Path, str]:
    out_root.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(suite_name)
    run_dir = inside(out_root, run_id)
    suffix = 1
    while True:
        try:
            run_dir.mkdir(parents=False, exist_ok=False)  # never overwrite a run folder
            return run_dir, run_id
        except FileExistsError:
            suffix += 1
            run_id = f"{new_run_id(suite_name)}-{suffix}"
            run_dir = inside(out_root, run_id)


def run_suite(
    suite: Suite | None,
    *,
    out_root: Path = Path("results"),
    trials: int | None = None,
    resume: Path | None = None,
    replay: Path | None = None,
    cache_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Path:
    """Run (or resume) a suite; return the run folder.

    ``replay``: a run folder whose search configurations (architecture, T, alpha, in trial
    order) this run evaluates instead of sampling — the same workload under other settings
    or code, for ``compare`` and for timing. ``cache_dir``: where trained teachers are kept
    (default ``<out_root>/teachers``)."""
    if replay is not None and resume is not None:
        raise InputError(
            "The '--replay' option must not be combined with --resume. Got both instead."
        )
    replay_configs = _replay_configs(Path(replay)) if replay is not None else {}
    previous: Manifest | None = None
    if resume is not None:
        run_dir = require_run_dir(resume, "The RUN_DIR argument of --resume")
        previous = Manifest.read(run_dir)
        suite = suite_from_dict(previous.suite)
        out_root = run_dir.parent
    elif suite is None:
        raise InputError(
            "The SUITE argument of run must be a suite file unless --resume is given. Got none instead."
        )
    cache = Path(cache_dir) if cache_dir is not None else Path(out_root) / "teachers"
    n_trials = trials if trials is not None else suite.budget.trials
    train_device = _select_train_device(suite)
    prepared = _preflight(suite, cache)
    if previous is not None:
        _check_unchanged(previous, prepared, run_dir)
        run_id, created = previous.run_id, previous.created_utc
        tasks_meta: dict[str, Any] = dict(previous.tasks)
    else:
        run_dir, run_id = _new_run_dir(Path(out_root), suite.name)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        tasks_meta = {}
    gpu = torch.device(train_device) if train_device.startswith("cuda") else None
    torch.set_num_threads(suite.measure.train_threads or all_cores())
    ctx = RunContext(suite, run_dir, run_id, cache, train_device, gpu, on_progress=on_progress)
    ctx.replay = replay_configs
    if previous is not None and (
        (run_dir / "trials.parquet").is_file() or (run_dir / "trials.csv").is_file()
    ):
        ctx.rows = [_clean(r) for r in read_trials(run_dir).to_dict("records")]
        ctx.seed_rows = [_clean(r) for r in read_seeds(run_dir).to_dict("records")]
    _manifest(ctx, "running", created, tasks_meta, n_trials).write(run_dir)
    for task, loaded in prepared:
        teacher = prepare_teacher(task, suite.teacher, cache, train_device, loaded)
        ens_cols, ens_detail = ensemble_latency_columns(
            teacher.cost_model, task.input_shape, suite.measure, gpu
        )
        tasks_meta[task.name] = {
            "config": _jsonable(task.config),
            "sizes": task.sizes(),
            "num_classes": task.num_classes,
            "class_names": list(task.class_names),
            "input_shape": list(task.input_shape),
            "data_sha256": _data_sha256(task),
            "data_source": task.source,
            "teacher": teacher.summary(),
            "ensemble_latency": ens_detail,
        }
        if previous is not None:
            _check_teacher_unchanged(previous, task.name, teacher)
        _manifest(ctx, "running", created, tasks_meta, n_trials).write(run_dir)
        _sweep_task(ctx, task, teacher, ens_cols, n_trials)
        _confirm_task(ctx, task, teacher, ens_cols)
    _manifest(ctx, "complete", created, tasks_meta, n_trials).write(run_dir)
    return run_dir


def _jsonable(cfg: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(cfg), default=list))


def _check_unchanged(
    previous: Manifest, prepared: list[tuple[TaskData, LoadedTeacher | None]], run_dir: Path
) -> None:
    """--resume refuses a run whose data changed since it started."""
    for task, _ in prepared:
        before = previous.tasks.get(task.name, {}).get("data_sha256")
        now = _data_sha256(task)
        if before is not None and before != now:
            raise InputError(
                f"The data of task '{task.name}' must be unchanged to resume {run_dir}. Got "
                f"sha256 {now[:12]}… instead of {before[:12]}… (the data file changed); start a "
                "new run instead."
            )


def _check_teacher_unchanged(previous: Manifest, task: str, teacher: PreparedTeacher) -> None:
    before = previous.tasks.get(task, {}).get("teacher", {}).get("outputs_sha256")
    if before is not None and before != teacher.outputs_sha256:
        raise InputError(
            f"The teacher of task '{task}' must be unchanged to resume this run. Its outputs "
            f"now hash to {teacher.outputs_sha256[:12]}… instead of {before[:12]}… (the teacher "
            "files or the cached ensemble changed); start a new run instead."
        )


def _replay_configs(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    require_run_dir(run_dir, "The '--replay' option")
    trials = read_trials(run_dir)
    search = trials[trials["phase"] == "search"].sort_values("trial")
    arch_cols = [c for c in search.columns if c.startswith("arch_")]
    out: dict[str, list[dict[str, Any]]] = {}
    for _, r in search.iterrows():
        params = {
            c.removeprefix("arch_"): r[c].item() if hasattr(r[c], "item") else r[c]
            for c in arch_cols
            if pd.notna(r[c])
        }
        params |= {"temperature": float(r["temperature"]), "alpha": float(r["alpha"])}
        out.setdefault(str(r["task"]), []).append(params)
    return out


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if v is pd.NA else v) for k, v in row.items()}


# ---------------------------------------------------------------------- search phase
def _sweep_task(
    ctx: RunContext,
    task: TaskData,
    teacher: PreparedTeacher,
    ens_cols: dict[str, Any],
    n_trials: int,
) -> None:
    suite = ctx.suite
    family = suite.student.family
    study = make_study(suite, ctx.run_dir, task.name, ctx.run_id)
    dists = distributions(suite.search, family)
    scratch = _read_scratch(ctx.run_dir, task.name)
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
        asked = _ask_group(study, dists, min(suite.budget.group_size, n_trials - done), queue)
        arch = arch_of(asked[0].params, suite.search, family)
        configs = [
            TrialConfig(t.number, float(t.params["temperature"]), float(t.params["alpha"]))
            for t in asked
        ]
        on_epoch = pruning_callback(asked[0], len(seeds)) if suite.budget.prune else None
        try:
            result = run_group(
                suite,
                ctx.run_id,
                task,
                teacher,
                ens_cols,
                scratch,
                arch,
                configs,
                seeds,
                "search",
                train_device=ctx.train_device,
                gpu=ctx.gpu,
                on_epoch=on_epoch,
            )
        except optuna.TrialPruned as exc:
            result = _failed(ctx, task, teacher, arch, configs, seeds, "search", "pruned", str(exc))
        except Exception as exc:  # a failing trial is recorded and the sweep goes on
            log.warning("trials %s failed: %s", [t.number for t in asked], exc)
            reason = f"{type(exc).__name__}: {exc}"
            result = _failed(ctx, task, teacher, arch, configs, seeds, "search", "fail", reason)
        ctx.commit(result, scratch, task.name)
        for row, _ in result.rows:
            _tell(study, row["trial"], row, suite)
            done += 1
            _progress(ctx, task.name, done, n_trials, row, "search")


def _failed(
    ctx: RunContext,
    task: TaskData,
    teacher: PreparedTeacher,
    arch: dict[str, int | float],
    configs: list[TrialConfig],
    seeds: list[int],
    phase: str,
    state: str,
    reason: str,
) -> GroupResult:
    family = ctx.suite.student.family
    return GroupResult(
        [
            (
                failed_row(
                    ctx.run_id, task.name, teacher, family, arch, c, seeds, phase, state, reason
                ),
                [],
            )
            for c in configs
        ],
        {},
    )


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
    arch_names = [n for n in dists if n not in ("temperature", "alpha")]
    if queue:
        batch = [queue.pop(0)]
        same = tuple(batch[0][n] for n in arch_names)
        while len(batch) < size and queue and tuple(queue[0][n] for n in arch_names) == same:
            batch.append(queue.pop(0))
        asked = []
        for params in batch:
            study.enqueue_trial(params)
            asked.append(study.ask(dists))
        return asked
    first = study.ask(dists)
    group = [first]
    for _ in range(size - 1):
        study.enqueue_trial({n: first.params[n] for n in arch_names})
        group.append(study.ask(dists))
    return group


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


# ---------------------------------------------------------------------- confirm phase
def _confirm_task(
    ctx: RunContext, task: TaskData, teacher: PreparedTeacher, ens_cols: dict[str, Any]
) -> None:
    """Re-run the top-k configurations (validation only, cheapest first) with more seeds."""
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
    family = ctx.suite.student.family
    chosen = select_confirm(search, cfg.top_k, cfg.max_val_gap_pp)
    scratch = _read_scratch(ctx.run_dir, task.name)
    seeds = list(range(cfg.seeds))
    arch_names = ctx.suite.search.arch_names
    for i, (_, src) in enumerate(chosen.iterrows(), start=1):
        if src["trial"] in already:
            continue
        arch = arch_of({n: src[f"arch_{n}"] for n in arch_names}, ctx.suite.search, family)
        configs = [TrialConfig(int(src["trial"]), float(src["temperature"]), float(src["alpha"]))]
        try:
            result = run_group(
                ctx.suite,
                ctx.run_id,
                task,
                teacher,
                ens_cols,
                scratch,
                arch,
                configs,
                seeds,
                "confirm",
                train_device=ctx.train_device,
                gpu=ctx.gpu,
            )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            result = _failed(ctx, task, teacher, arch, configs, seeds, "confirm", "fail", reason)
        ctx.commit(result, scratch, task.name)
        for row, _ in result.rows:
            _progress(ctx, task.name, i, len(chosen), row, "confirm")


def select_confirm(search: pd.DataFrame, top_k: int, max_val_gap_pp: float) -> pd.DataFrame:
    """Configurations to confirm, chosen on validation data only: the ``top_k`` cheapest (by
    FLOPs) completed students whose validation gap to the ensemble is within
    ``max_val_gap_pp``; if fewer qualify, the rest by smallest validation gap."""
    ranked = search.assign(_near=search["val_gap"] * 100 <= max_val_gap_pp)
    near = ranked[ranked["_near"]].sort_values(["student_flops", "val_gap"])
    rest = ranked[~ranked["_near"]].sort_values(["val_gap", "student_flops"])
    return pd.concat([near, rest]).head(top_k).drop(columns="_near")
