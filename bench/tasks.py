"""Built-in tasks and user CSV files → stratified train/val/test tensors.

Splits are stratified and seeded; the feature scaler (standardisation) is fitted on the
training split only and applied to all three. kdcore never sees a dataset, only tensors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits, make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from bench.suite import SuiteError, TaskConfig

__all__ = ["TaskData", "load_task"]


@dataclass(frozen=True)
class TaskData:
    """The three splits of a task as float32 features and int64 labels."""

    name: str
    config: TaskConfig
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    def fingerprint(self) -> str:
        """Content hash of the config and the data, used to key the teacher cache."""
        h = hashlib.sha256(json.dumps(asdict(self.config), sort_keys=True).encode())
        for t in (self.x_train, self.y_train, self.x_val, self.y_val):
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _raw(cfg: TaskConfig) -> tuple[np.ndarray, np.ndarray]:
    if cfg.kind == "synthetic":
        return make_classification(
            n_samples=cfg.n_samples,
            n_features=cfg.n_features,
            n_informative=cfg.n_informative,
            n_redundant=cfg.n_redundant,
            n_classes=cfg.n_classes,
            n_clusters_per_class=cfg.n_clusters_per_class,
            class_sep=cfg.class_sep,
            flip_y=cfg.flip_y,
            random_state=cfg.seed,
        )
    if cfg.kind == "digits":
        bunch = load_digits()
        return bunch.data, bunch.target
    return _read_csv(cfg)


def _read_csv(cfg: TaskConfig) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    path = Path(cfg.path)
    if not path.is_file():
        raise SuiteError(
            f"The 'path' parameter of [task] must be an existing CSV file. Got {cfg.path!r} instead."
        )
    frame = pd.read_csv(path)
    if cfg.target not in frame.columns:
        raise SuiteError(
            f"The 'target' parameter of [task] must name a column of {cfg.path!r} "
            f"({', '.join(map(str, frame.columns))}). Got {cfg.target!r} instead."
        )
    features = frame.drop(columns=[cfg.target])
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise SuiteError(
            f"The columns of {cfg.path!r} other than the target must be numeric. "
            f"Got non-numeric column {non_numeric[0]!r} instead."
        )
    labels = pd.factorize(frame[cfg.target], sort=True)[0]
    return features.to_numpy(dtype=np.float64), labels


def load_task(cfg: TaskConfig) -> TaskData:
    """Generate or read the task, split it (stratified, seeded) and scale on train only."""
    x, y = _raw(cfg)
    y = np.asarray(y, dtype=np.int64)
    holdout = cfg.val_fraction + cfg.test_fraction
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=holdout, stratify=y, random_state=cfg.seed
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest,
        y_rest,
        test_size=cfg.test_fraction / holdout,
        stratify=y_rest,
        random_state=cfg.seed,
    )
    scaler = StandardScaler().fit(x_train)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(scaler.transform(a), dtype=torch.float32)

    return TaskData(
        name=cfg.name,
        config=cfg,
        x_train=tensor(x_train),
        y_train=torch.as_tensor(y_train),
        x_val=tensor(x_val),
        y_val=torch.as_tensor(y_val),
        x_test=tensor(x_test),
        y_test=torch.as_tensor(y_test),
        num_classes=int(y.max()) + 1,
    )
