"""What ``kdbench run`` shows while it works: teacher training and trials, with an ETA.

On a terminal: tqdm progress bars (on stderr), one for the teacher's epochs and one per phase
of trials, the last trial and the best so far in the bar's postfix. When stdout is not a
terminal (a log file, CI): no bars and no carriage returns, one plain line per event instead.
``--quiet``: nothing. Trial ids are Optuna's trial numbers, shown as ``#N``; counters are
"n of N done".
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from bench import fmt
from bench.decision.claims import progress_certified

__all__ = ["ProgressPrinter"]


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _trial_text(row: dict[str, Any]) -> str:
    head = f"#{row['trial']} {row['arch']}"
    if row.get("state") not in ("complete", "duplicate"):
        return f"{head}: {str(row['state']).upper()} ({row['fail_reason']})"
    text = (
        f"{head} T {fmt.fixed(row['temperature'], 2)} alpha {fmt.fixed(row['alpha'], 2)}: val "
        f"{fmt.pct(row['student_val_acc'])} %, params {fmt.ratio(row.get('param_ratio'))} of the ensemble"
    )
    return text + (" (duplicate: not trained again)" if row["state"] == "duplicate" else "")


class ProgressPrinter:
    """Receives the run's events (``teacher_epoch``, ``trial``) and shows them."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None
        self._bar_key: tuple[str, str] | None = None
        self._phase_start: dict[tuple[str, str], tuple[float, int]] = {}
        self._t0 = time.perf_counter()  # elapsed on this clock: workers have their own

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _bar_for(self, key: tuple[str, str], total: int, desc: str, unit: str) -> Any:
        if self._bar_key != key:
            self.close()
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True
            )
            self._bar_key = key
        return self._bar

    def teacher_epoch(self, task: str, epoch: int, epochs: int, members: int) -> None:
        """One epoch of the teacher ensemble's training (all members at once)."""
        if self.quiet:
            return
        if self.tty:
            bar = self._bar_for(
                (task, "teacher"), epochs, f"[{task}] teacher ({members} members)", "epoch"
            )
            bar.update(epoch - bar.n)
            if epoch == epochs:
                self.close()
        elif epoch == 1 or epoch == epochs or epoch % max(1, epochs // 4) == 0:
            self._print(
                f"[{task}] training the teacher ensemble ({members} members): epoch {epoch}/{epochs}"
            )

    def trial(self, p: Any) -> None:  # bench.search.Progress
        if self.quiet:
            return
        key = (p.task, p.phase)
        now = time.perf_counter()
        # The ETA's clock starts at the phase's first finished trial, so that neither the
        # teacher's training nor the workers' start-up is counted as trial time.
        began, done_before = self._phase_start.setdefault(key, (now, p.done))
        done_here = p.done - done_before
        eta = (now - began) / done_here * (p.total - p.done) if done_here > 0 else float("nan")
        best = ""
        if p.best is not None:
            best = f" | best val {fmt.pct(p.best['student_val_acc'])} % (#{p.best['trial']} {p.best['arch']})"
        if self.tty:
            bar = self._bar_for(key, p.total, f"[{p.task}] {p.phase}", "trial")
            bar.update(p.done - bar.n)
            bar.set_postfix_str(_trial_text(p.row) + best, refresh=True)
            if p.done >= p.total:
                self.close()
        else:
            eta_text = "" if eta != eta else f", ETA {_clock(eta)}"
            count = (
                f"{p.done}/{p.total} trials"
                if p.phase == "search"
                else progress_certified(p.done, p.total)
            )
            self._print(
                f"[{p.task}] {count}, {_clock(now - self._t0)} elapsed{eta_text} | "
                f"{_trial_text(p.row)}{best}"
            )

    def message(self, text: str) -> None:
        if not self.quiet:
            self._print(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_key = None
