"""kdcore's errors: one root, :class:`KDCoreError`, so a caller can catch everything the
library raises on purpose. Each subclass also derives from the built-in exception it
refines (as scikit-learn's ``NotFittedError`` does), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "DeviceUnavailableError",
    "FamilyCheckError",
    "KDCoreError",
    "ParameterError",
    "ParameterTypeError",
    "UnknownNameError",
]


class KDCoreError(Exception):
    """The root of every error kdcore raises on purpose."""


class ParameterError(KDCoreError, ValueError):
    """An argument has a value the function cannot take (the message names it and the rule)."""


class ParameterTypeError(KDCoreError, TypeError):
    """An argument has the wrong type, or an architecture key is unknown or missing."""


class UnknownNameError(KDCoreError, KeyError):
    """A name that no registry or declaration holds (a model family, an architecture
    parameter); the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class DeviceUnavailableError(KDCoreError, RuntimeError):
    """A device was requested that this machine does not have (e.g. CUDA)."""


class FamilyCheckError(KDCoreError, AssertionError):
    """A registered family fails one of :func:`kdcore.testing.check_family`'s checks."""
