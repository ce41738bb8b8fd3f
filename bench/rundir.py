"""The run folder's file discipline: atomic writes and paths that stay inside their folder.

Every file kdbench writes goes through :func:`atomic_write_bytes` (temporary file in the same
folder, fsync, rename), and every path built from a user-given name goes through
:func:`inside` (resolved, and refused unless it stays inside its root).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.errors import InputError
from bench.faults import fault_point

__all__ = ["atomic_write_bytes", "atomic_write_text", "inside"]


def inside(root: Path, *parts: str) -> Path:
    """``root / parts`` resolved (symlinks followed); :class:`InputError` if it leaves ``root``."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        joined = "/".join(parts)
        raise InputError(f"The path {joined!r} must stay inside {base}. Got {path} instead.")
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fault_point("write")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
