"""The one input-error class: every user mistake kdbench detects is an :class:`InputError`.

The CLI prints its message on one line (no traceback) and exits with status 2. Messages name
the key or file, the rule and the value received, e.g. ``The 'width.low' parameter of [search]
must be an int in [1, 4096]. Got -3 instead.``
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """A suite file, data file, teacher file, option or run folder breaks a rule (exit 2)."""
