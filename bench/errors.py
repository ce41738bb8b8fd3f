"""The one input-error class: every user mistake kdbench detects is an :class:`InputError`.

The CLI prints its message on one line (no traceback) and exits with status 2. Messages name
the key or file, the rule and the value received, e.g. ``The 'width.low' parameter of [search]
must be an int in [1, 4096]. Got -3 instead.``
"""

from __future__ import annotations

import errno

__all__ = ["WRITE_ERRNOS", "DataVanished", "InputError", "is_write_error"]

# The OS errors of a write that the user fixes outside kdbench (space, quota, a read-only or
# failing disk): the run stops like on a signal and resumes once fixed (bench.run.sweep.RunStopped).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def is_write_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an OS write error of :data:`WRITE_ERRNOS`."""
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


class InputError(ValueError):
    """A suite file, data file, teacher file, option or run folder breaks a rule (exit 2)."""


class DataVanished(KeyboardInterrupt):
    """A streamed task's file (an image, a shard) disappeared during training: not the trial's
    fault, so the run stops as on a signal and stays resumable once the file is back (a
    ``KeyboardInterrupt`` so that every layer that stops cleanly on Ctrl-C stops on it)."""
