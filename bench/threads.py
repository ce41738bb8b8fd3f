"""Training threads per group: a fixed count, or ``"auto"`` — chosen by student size.

Measured on the 2-core development machine (seed task, 6 students trained as one group, ms
per optimiser step, 1 vs 2 torch threads; ``benchmarks/test_bench_threads.py`` measures it):

* alone on the machine: width 16 × depth 2 (1.2k FLOPs/sample) 1.85 vs 1.87; 64 × 2 (11k)
  3.57 vs 3.04; 128 × 2 (38k) 7.06 vs 4.48; 256 × 2 (142k) 18.1 vs 10.7;
* beside a second worker training on the other core: 2.1 vs 5.9, 3.7 vs 10.8, 7.7 vs 16.0,
  18.2 vs 31.2 — oversubscribing a core costs 1.5–3×.

So a second thread pays only for a student above a few thousand FLOPs per sample, and only
on a core that no other worker is using.

**Decisions must not depend on how many workers share the machine** (issue #19): a
reduction's floating-point result depends on the thread count, so a group's thread count is
a function of its student (and of the machine's cores) only, never of ``--workers`` or of how
many workers are still alive. ``"auto"`` gives a group ``1`` thread when its student is below
:data:`AUTO_MIN_FLOPS` forward FLOPs per sample and every core otherwise (where a second
thread pays at least 1.5× alone); a fixed ``N`` gives every group ``N`` threads (``0``: every
core) in every worker. The cost: with ``--workers W``, W groups of large students share the
cores oversubscribed (1.5–3× slower per step, measured above), and small students leave the
cores a worker does not use idle at the end of each ask batch (``docs/methodology.md``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["AUTO", "AUTO_MIN_FLOPS", "ThreadPolicy", "all_cores"]

AUTO = "auto"
AUTO_MIN_FLOPS = 30_000


@dataclass(frozen=True)
class ThreadPolicy:
    """``setting``: the suite's ``[measure] train_threads`` (0 = all cores, N, or "auto");
    ``cores``: the cores of this machine."""

    setting: int | str = 0
    cores: int = 1

    def threads(self, flops_per_sample: float) -> int:
        """Torch threads for a training group of students of this size (the same in every
        worker, whatever their number)."""
        if self.setting != AUTO:
            return max(1, int(self.setting or self.cores))
        return 1 if flops_per_sample < AUTO_MIN_FLOPS else max(1, self.cores)


def all_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
