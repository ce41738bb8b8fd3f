"""Suite files → frozen configuration: every rule of every key in one place.

``suite`` (the suite's sections as frozen dataclasses, :func:`load_suite`) · ``teacher``
(``[teacher]`` and one dataclass per teacher source) · ``recipe`` (the training recipe keys
``[student]`` and ``[teacher]`` share) · ``plugins`` (modules that register model families).
"""

# The tolerance certified when neither the suite ([certify] max_gap_pp) nor the command line
# (--max-gap) names one: 0.5 percentage points, as a fraction. Kept here, in a module that
# imports nothing, so the command line's help can quote it without loading torch.
DEFAULT_MAX_GAP = 0.005

__all__ = ["DEFAULT_MAX_GAP"]
