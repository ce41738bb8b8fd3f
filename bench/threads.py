"""Training threads per group: a fixed count, or ``"auto"`` — chosen by student size.

Measured on the 2-core development machine (seed task, 6 students trained as one group, ms
per optimiser step, 1 vs 2 torch threads; ``benchmarks/test_bench_threads.py`` measures it):

* alone on the machine: width 16 × depth 2 (1.2k FLOPs/sample) 1.85 vs 1.87; 64 × 2 (11k)
  3.57 vs 3.04; 128 × 2 (38k) 7.06 vs 4.48; 256 × 2 (142k) 18.1 vs 10.7;
* beside a second worker training on the other core: 2.1 vs 5.9, 3.7 vs 10.8, 7.7 vs 16.0,
  18.2 vs 31.2 — oversubscribing a core costs 1.5–3×.

So a second thread pays only for a student above a few thousand FLOPs per sample, and only
on a core that no other worker is using. ``"auto"`` therefore gives a group
``1`` thread when its student is below :data:`AUTO_MIN_FLOPS` forward FLOPs per sample, and
otherwise ``cores // live workers``: with ``--workers N`` on N cores that is one thread each
while all N train, and more for the large students of the workers still running once the
others have finished (the tail of the search and of the confirm phase). Local workers learn
how many are alive from a small file the supervising process rewrites (:class:`LiveWorkers`);
workers on other machines (a shared RDB study) count only themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AUTO", "AUTO_MIN_FLOPS", "LiveWorkers", "ThreadPolicy"]

AUTO = "auto"
AUTO_MIN_FLOPS = 8_000


class LiveWorkers:
    """How many local workers are still running, in a file the supervisor rewrites."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, n: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(n))
        os.replace(tmp, self.path)  # readers never see a half-written number

    def read(self, default: int) -> int:
        try:
            return max(1, int(self.path.read_text()))
        except (OSError, ValueError):
            return default


@dataclass(frozen=True)
class ThreadPolicy:
    """``setting``: the suite's ``[measure] train_threads`` (0 = all cores, N, or "auto");
    ``cores``: the cores of this machine; ``workers``: local worker processes;
    ``live``: the supervisor's live-worker file (local workers only)."""

    setting: int | str = 0
    cores: int = 1
    workers: int = 1
    live: str | None = None

    def threads(self, flops_per_sample: float) -> int:
        """Torch threads for a training group of students of this size."""
        if self.setting != AUTO:
            return max(1, int(self.setting or self.cores) // self.workers)
        if flops_per_sample < AUTO_MIN_FLOPS:
            return 1
        alive = LiveWorkers(Path(self.live)).read(self.workers) if self.live else self.workers
        return max(1, self.cores // min(alive, self.workers))
