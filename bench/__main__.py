"""``python -m bench`` is ``kdbench``."""

from __future__ import annotations

from bench.cli import entry

entry()
