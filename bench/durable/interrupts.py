"""Ctrl-C and SIGTERM that never cut a storage write in the middle.

Python runs a signal handler between two bytecodes of the main thread, so an interrupt raised
from it can land inside Optuna's journal append: between the rename and the unlink of its lock
file, where the cleanup then fails with ``FileNotFoundError`` (a traceback instead of a clean
stop, and a lock left to time out). kdbench's handlers call :func:`interrupt`; inside
:func:`deferred_interrupts` (every journal append) the interrupt is held and raised as soon as
the append is complete, so the write is whole or absent and the run stops as it always does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["deferred_interrupts", "interrupt"]


class _State(threading.local):
    depth = 0
    pending: BaseException | None = None


_main = _State()


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold interrupts that arrive inside (main thread; other threads get no signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _main.depth += 1
    try:
        yield
    finally:
        _main.depth -= 1
        if _main.depth == 0 and _main.pending is not None:
            exc, _main.pending = _main.pending, None
            raise exc


def interrupt(exc: BaseException) -> None:
    """Raise ``exc`` from a signal handler now, or when the write in progress is complete."""
    if _main.depth > 0:
        if _main.pending is None:
            _main.pending = exc
        return
    raise exc
