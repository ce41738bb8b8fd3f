"""Ctrl-C or SIGTERM during a study-journal append: the append completes, then the run stops
cleanly (bench.durable.interrupts). Found as a FileNotFoundError traceback (exit 1 instead of 143) when
SIGTERM landed inside Optuna's journal lock release."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = r"""
import os, signal, sys
import optuna
from bench.durable.interrupts import interrupt
from bench.study import StorageSpec, open_storage

optuna.logging.set_verbosity(optuna.logging.ERROR)
journal = sys.argv[1]
storage = open_storage(StorageSpec(path=journal))
study = optuna.create_study(storage=storage, study_name="s")
signal.signal(signal.SIGTERM, lambda s, f: interrupt(KeyboardInterrupt()))
real_unlink = os.unlink
def unlink(path, *a, **k):  # the signal arrives just as the journal's lock is released
    if str(path).endswith(".rename"):
        os.kill(os.getpid(), signal.SIGTERM)
    return real_unlink(path, *a, **k)
os.unlink = unlink
try:
    study.set_user_attr("written", 1)
except KeyboardInterrupt:
    os.unlink = real_unlink
    print("stopped cleanly")
"""


def test_a_signal_during_a_journal_append_stops_after_the_append(tmp_path: Path) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "study.journal"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(journal)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "stopped cleanly", out.stderr[-1500:]
    storage = JournalStorage(JournalFileBackend(str(journal)))
    assert optuna.load_study(study_name="s", storage=storage).user_attrs == {"written": 1}
    assert not list(tmp_path.glob("*.lock*"))  # the append was whole and its lock released
