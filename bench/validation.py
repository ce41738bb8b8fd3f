"""Reading TOML tables against rules: each key is checked once; unknown keys are refused.

Error text follows scikit-learn's parameter validation: ``The 'trials' parameter of [budget]
must be an int in [1, 100000]. Got 'many' instead.``
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from bench.errors import InputError

__all__ = [
    "SEED_MAX",
    "Range",
    "Rule",
    "Table",
    "boolean",
    "choice",
    "describe_type",
    "fmt_number",
    "number",
    "read_fields",
    "rule_of",
    "string",
]

# The largest seed a suite may set (teacher members, task splits): certification trains on
# seeds from 2,000,000,000 up (bench.decision.protocol.certify_seeds), so that no seed a
# certified student trains with was used by anything before it.
SEED_MAX = 999_999_999

RULE = "kdbench_rule"  # the dataclass field metadata key of a suite field's Rule


def describe_type(kind: type | tuple[type, ...]) -> str:
    names = {int: "an int", float: "a number", str: "a string", bool: "a boolean"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def fmt_number(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Range:
    """A search range; ``low == high`` means a fixed value."""

    low: float
    high: float
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high


class Table:
    """One TOML table read key by key; :meth:`finish` refuses the keys nobody asked for."""

    def __init__(self, data: Any, section: str) -> None:
        if not isinstance(data, dict):
            where = f"[{section}]" if section else "The suite"
            raise InputError(f"{where} must be a table. Got {data!r} instead.")
        self.data = data
        self.section = section
        self.seen: set[str] = set()

    @property
    def where(self) -> str:
        return f"[{self.section}]" if self.section else "[suite]"

    def fail(self, key: str, rule: str, value: Any) -> InputError:
        return InputError(
            f"The '{key}' parameter of {self.where} must be {rule}. Got {value!r} instead."
        )

    def has(self, key: str) -> bool:
        return key in self.data

    def number(
        self,
        key: str,
        default: Any,
        kind: type = float,
        low: float = -math.inf,
        high: float = math.inf,
        *,
        low_open: bool = False,
    ) -> Any:
        self.seen.add(key)
        if default is None and key not in self.data:
            return None  # optional: the caller resolves it (e.g. from the command line)
        value = given = self.data.get(key, default)
        lo_br = "(" if low_open else "["
        rule = f"{describe_type(kind)} in {lo_br}{fmt_number(low)}, {fmt_number(high)}]"
        ok_type = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type or (isinstance(value, float) and math.isnan(value)):
            raise self.fail(key, rule, given)
        if not (low < value if low_open else low <= value) or not value <= high:
            raise self.fail(key, rule, given)  # the value as written, not as converted
        return value

    def boolean(self, key: str, default: bool) -> bool:
        self.seen.add(key)
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "a boolean (true or false)", value)
        return value

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        self.seen.add(key)
        value = self.data.get(key, default)
        if value not in choices:
            raise self.fail(key, f"one of {', '.join(map(repr, choices))}", value)
        return value

    def family(self, key: str, default: str, *, allow_empty: bool = False) -> str:
        """A model family: a registered name, or a source's ``prefix:name`` (resolved here, so
        an unknown timm architecture is reported with what is declared)."""
        from kdcore.exceptions import UnknownNameError
        from kdcore.families import get_family, list_families, list_sources

        self.seen.add(key)
        value = self.data.get(key, default)
        if allow_empty and value == "":
            return value
        if not isinstance(value, str) or not value:
            raise self.fail(key, "a model family name", value)
        try:
            get_family(value)
        except UnknownNameError as exc:
            if ":" in value and value.partition(":")[0] in {
                s.partition(":")[0] for s in list_sources()
            }:
                raise InputError(f"The '{key}' parameter of {self.where}: {exc}") from None
            names = ", ".join(map(repr, [*list_families(), *list_sources()]))
            raise self.fail(key, f"one of {names}", value) from None
        return value

    def string(self, key: str, default: str) -> str:
        self.seen.add(key)
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self.fail(key, "a string", value)
        return value

    def strings(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        self.seen.add(key)
        value = self.data.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "an array of non-empty strings", value)
        return tuple(value)

    def ints(self, key: str, default: Sequence[int] = (), low: int = 1) -> tuple[int, ...]:
        self.seen.add(key)
        value = self.data.get(key, list(default))
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value
        ):
            raise self.fail(key, f"an array of ints >= {low}", value)
        return tuple(value)

    def floats(self, key: str, *, positive: bool = False) -> tuple[float, ...]:
        """An array of numbers (``positive``: each > 0); empty when left out."""
        self.seen.add(key)
        value = self.data.get(key, [])
        ok = isinstance(value, list) and all(
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and (v > 0 or not positive)
            for v in value
        )
        if not ok:
            raise self.fail(key, f"an array of {'positive ' if positive else ''}numbers", value)
        return tuple(float(v) for v in value)

    def labels(self, key: str, rule: str) -> tuple[str, ...]:
        """An array of class labels as written in the data (strings or ints), each once, as
        strings (``rule`` says what the array is, for the error)."""
        self.seen.add(key)
        value = self.data.get(key, [])
        ok = isinstance(value, list) and all(
            (isinstance(v, str) and v.strip()) or (isinstance(v, int) and not isinstance(v, bool))
            for v in value
        )
        if not ok:
            raise self.fail(key, rule, value)
        names = tuple(str(v) for v in value)
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise self.fail(key, f"each label once (got {twice!r} twice)", value)
        return names

    def table(self, key: str) -> Table:
        self.seen.add(key)
        return Table(self.data.get(key, {}), f"{self.section}.{key}" if self.section else key)

    def range(
        self,
        key: str,
        default: Range,
        kind: type,
        low: float,
        high: float,
        *,
        low_open: bool = False,
    ) -> Range:
        """A fixed number or a table ``{low, high, log}`` of numbers in [low, high]."""
        self.seen.add(key)
        raw = self.data.get(key)
        if raw is None:
            return default
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            v = self.number(key, raw, kind, low, high, low_open=low_open)
            return Range(v, v, False)
        if not isinstance(raw, dict):
            raise self.fail(
                key, f"a fixed value or a table {{low, high, log}} of {describe_type(kind)}", raw
            )
        sub = Table(raw, self.section)
        try:
            lo = sub.number("low", raw.get("low", default.low), kind, low, high, low_open=low_open)
            hi = sub.number(
                "high", raw.get("high", default.high), kind, low, high, low_open=low_open
            )
            log = sub.boolean("log", default.log)
        except InputError as exc:
            msg = str(exc)
            for part in ("low", "high", "log"):
                msg = msg.replace(f"The '{part}' parameter", f"The '{key}.{part}' parameter")
            raise InputError(msg) from None
        extra = sorted(set(raw) - {"low", "high", "log"})
        if extra:
            raise InputError(
                f"Unknown key '{key}.{extra[0]}' in {self.where}. Valid keys: low, high, log."
            )
        if lo > hi:
            raise InputError(
                f"The '{key}.low' parameter of {self.where} must be <= '{key}.high' "
                f"({fmt_number(hi)}). Got {lo!r} instead."
            )
        if log and lo <= 0:
            raise InputError(
                f"The '{key}.low' parameter of {self.where} must be > 0 when log = true. "
                f"Got {lo!r} instead."
            )
        return Range(lo, hi, log)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            where = self.where if self.section else "the top level"
            raise InputError(
                f"Unknown key '{unknown[0]}' in {where}. Valid keys: {', '.join(sorted(self.seen))}."
            )


# ---------------------------------------------------------------------- fields stated once
@dataclass(frozen=True)
class Rule:
    """How one suite key is read and what it means: a field's metadata (:func:`number`,
    :func:`boolean`, :func:`choice`, :func:`string`), read by :func:`read_fields`."""

    kind: str  # "number" | "boolean" | "choice" | "string" | "family"
    help: str
    num_type: type = float
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    choices: Sequence[str] | Callable[[], Sequence[str]] = ()

    def read(self, t: Table, key: str, default: Any) -> Any:
        if self.kind == "number":
            return t.number(
                key, default, self.num_type, self.low, self.high, low_open=self.low_open
            )
        if self.kind == "boolean":
            return t.boolean(key, default)
        if self.kind == "choice":
            options = self.choices() if callable(self.choices) else self.choices
            return t.choice(key, default, options)
        if self.kind == "family":
            return t.family(key, default)
        return t.string(key, default)


def number(
    default: Any,
    kind: type = float,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    help: str,
) -> Any:
    """A numeric suite field: ``kind`` in [low, high] (``(low, high]`` with ``low_open``)."""
    rule = Rule("number", help, kind, low, high, low_open)
    return field(default=default, metadata={RULE: rule})


def boolean(default: bool, *, help: str) -> Any:
    return field(default=default, metadata={RULE: Rule("boolean", help)})


def choice(default: str, choices: Sequence[str] | Callable[[], Sequence[str]], *, help: str) -> Any:
    """One of ``choices`` (a callable is asked at read time: plug-ins register families)."""
    return field(default=default, metadata={RULE: Rule("choice", help, choices=choices)})


def family(default: str, *, help: str) -> Any:
    """A model family (:meth:`Table.family`): registered, or a source's ``prefix:name``."""
    return field(default=default, metadata={RULE: Rule("family", help)})


def string(default: str, *, help: str) -> Any:
    return field(default=default, metadata={RULE: Rule("string", help)})


def rule_of(cls: type, name: str) -> Rule | None:
    """The :class:`Rule` of field ``name`` of the dataclass ``cls`` (None: read elsewhere)."""
    f = next(f for f in fields(cls) if f.name == name)
    rule = f.metadata.get(RULE)
    return rule if isinstance(rule, Rule) else None


def read_fields(cls: type, t: Table, **given: Any) -> Any:
    """An instance of the dataclass ``cls`` read from ``t``: every field with a :class:`Rule`
    by its rule (defaults from the dataclass), the ``given`` ones as they are, the others at
    their defaults. Call :meth:`Table.finish` after it; cross-field rules follow there."""
    values = dict(given)
    for f in fields(cls):
        rule = f.metadata.get(RULE)
        if f.name not in values and isinstance(rule, Rule):
            values[f.name] = rule.read(t, f.name, f.default)
    return cls(**values)
