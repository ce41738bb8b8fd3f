"""How a run is carried out: the command line's options as one frozen value, checked once.

The suite says *what* runs; :class:`RunOptions` says where its folder goes, whether it resumes
or joins a shared study, how many local workers train, and which tolerance is certified when
the suite names none. Every rule on these options lives in :meth:`RunOptions.__post_init__`
(the CLI only parses), and breaking one is an :class:`~bench.errors.InputError` (exit 2).
:class:`RunHooks` are the callbacks a caller (the CLI's progress printer) is told things by.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import InputError
from bench.search import Progress

__all__ = ["RunHooks", "RunOptions"]


@dataclass(frozen=True)
class RunOptions:
    """The options of ``kdbench run`` / ``kdbench certify`` (gaps are fractions: 0.005 = 0.5 pp).

    ``max_gap``: the tolerance certified when the suite's ``[certify] max_gap_pp`` is not
    given (default :data:`bench.config.suite.DEFAULT_MAX_GAP`). ``certify_gap`` (with
    ``resume``): add a certification round at this tolerance. ``storage``: an RDB URL
    (PostgreSQL) to join or create the study ``study`` (default: the suite name and a short
    hash of the suite). ``workers``: local processes sharing the study. ``replay``: a run
    folder whose search configurations this run evaluates instead of sampling. ``cache_dir``:
    trained teachers (default ``<out_root>/teachers``). ``reports_root``: checked writable up
    front."""

    out_root: Path = Path("results")
    trials: int | None = None
    resume: Path | None = None
    replay: Path | None = None
    cache_dir: Path | None = None
    reports_root: Path | None = None
    storage: str | None = None
    study: str | None = None
    workers: int = 1
    max_gap: float | None = None
    certify_gap: float | None = None

    def __post_init__(self) -> None:
        if self.replay is not None and self.resume is not None:
            raise InputError(
                "The '--replay' option must not be combined with --resume. Got both instead."
            )
        if self.workers < 1:
            raise InputError(
                f"The '--workers' option must be an int >= 1. Got {self.workers} instead."
            )
        if self.trials is not None and self.trials < 1:
            raise InputError(
                f"The '--trials' option must be an int >= 1. Got {self.trials} instead."
            )
        for gap in (self.max_gap, self.certify_gap):
            if gap is not None and not (math.isfinite(gap) and 0 <= gap <= 1):
                raise InputError(
                    "The '--max-gap' option must be a number of percentage points in [0, 100]. "
                    f"Got {gap * 100:g} instead."
                )
        if self.certify_gap is not None and self.resume is None:
            raise InputError(
                "A certification round at another tolerance needs a run to add it to (RUN_DIR). "
                "Got none instead."
            )

    @property
    def root(self) -> Path:
        """Where the run folder is: ``out_root``, or the resumed folder's parent."""
        return Path(self.resume).parent if self.resume is not None else Path(self.out_root)

    @property
    def cache(self) -> Path:
        """The teacher cache: ``cache_dir``, else ``<root>/teachers``."""
        return Path(self.cache_dir) if self.cache_dir is not None else self.root / "teachers"


@dataclass(frozen=True)
class RunHooks:
    """What the caller is told while a run goes: each committed trial, each teacher epoch
    (task, epoch, epochs, members) and one-line messages."""

    on_progress: Callable[[Progress], None] | None = None
    on_teacher_epoch: Callable[[str, int, int, int], None] | None = None
    on_message: Callable[[str], None] | None = None
