"""The Optuna study of a task: its sampler, its storage and its name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from bench.suite import Suite

__all__ = ["make_sampler", "make_storage", "make_study", "pruning_callback", "study_name"]


def make_sampler(suite: Suite) -> optuna.samplers.BaseSampler:
    b = suite.budget
    if b.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=b.sampler_seed)
    return optuna.samplers.RandomSampler(seed=b.sampler_seed)


def make_storage(suite: Suite, run_dir: Path) -> optuna.storages.BaseStorage | str:
    """The suite's RDB URL, else a journal file in the run folder."""
    if suite.budget.storage:
        return suite.budget.storage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))


def study_name(base: str, task: str) -> str:
    return f"{base}:{task}"


def make_study(suite: Suite, run_dir: Path, task: str, base: str) -> optuna.Study:
    b = suite.budget
    kwargs: dict[str, Any] = {}
    if b.objective == "pareto":
        kwargs["directions"] = ["maximize", "minimize"]  # val accuracy, FLOPs
    else:
        kwargs["direction"] = "maximize"
        if b.prune:
            kwargs["pruner"] = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    return optuna.create_study(
        storage=make_storage(suite, run_dir),
        sampler=make_sampler(suite),
        study_name=study_name(base, task),
        load_if_exists=True,
        **kwargs,
    )


def pruning_callback(trial: optuna.Trial, n_seeds: int) -> Callable[[int, torch.Tensor], None]:
    """Report the mean validation accuracy of the first ``n_seeds`` members (the trial's
    distilled students) each epoch; raise ``optuna.TrialPruned`` when the pruner says so."""

    def on_epoch(epoch: int, val_acc: torch.Tensor) -> None:
        trial.report(float(val_acc[:n_seeds].mean()), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} on validation accuracy")

    return on_epoch
