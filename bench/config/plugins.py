"""User plug-ins: register model families without editing kdbench.

Two ways, both loaded before a suite is validated:

* a module named in the suite (``[plugins] modules = ["my_families"]``) or on the command line
  (``kdbench run --plugin my_families``): imported with the suite file's folder first on
  ``sys.path``; importing it must call :func:`kdcore.register_family`;
* the entry-point group ``kdbench.families`` of installed packages: each entry point names a
  module (imported) or a callable (called with no arguments), which registers its families.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from bench.errors import InputError

__all__ = ["ENTRY_POINT_GROUP", "ensure_entry_points", "import_plugins", "loaded_plugins"]

ENTRY_POINT_GROUP = "kdbench.families"
log = logging.getLogger(__name__)
_loaded: dict[str, str] = {}  # module or entry point -> where it came from
_entry_points_done = False


def loaded_plugins() -> dict[str, str]:
    """Plug-ins imported so far (for the manifest)."""
    return dict(_loaded)


def import_plugins(modules: Iterable[str], search_dir: Path | None, what: str) -> None:
    """Import each module (``search_dir`` first on ``sys.path``); errors are input errors."""
    for name in modules:
        if name in _loaded:
            continue
        added = False
        if search_dir is not None and str(search_dir) not in sys.path:
            sys.path.insert(0, str(search_dir))
            added = True
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure inside the user's module is an input problem
            raise InputError(
                f"{what} must name an importable module that registers families. Got {name!r} "
                f"instead ({type(exc).__name__}: {exc})."
            ) from None
        finally:
            if added:
                sys.path.remove(str(search_dir))
        _loaded[name] = "module"
        log.info("plug-in module %s imported", name)


def ensure_entry_points() -> None:
    """Load the ``kdbench.families`` entry points of installed packages (once)."""
    global _entry_points_done
    if _entry_points_done:
        return
    _entry_points_done = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as exc:
            raise InputError(
                f"The entry point {ep.name!r} of group {ENTRY_POINT_GROUP!r} ({ep.value}) must load "
                f"and register its families. Got {type(exc).__name__}: {exc}."
            ) from None
        _loaded[f"entry point {ep.name}"] = ep.value
