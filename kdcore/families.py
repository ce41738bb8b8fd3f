"""Model families behind a small registry: how a student (or teacher) architecture is declared.

A family is a builder ``build(input_shape, num_classes, **arch) -> nn.Module`` plus the
declaration of its architecture parameters (:class:`ArchParam`: name, int or float, the values
it accepts, its default search range, log scale or not). Everything else — the Optuna search
space, the ``arch_<name>`` result columns, the one human label of an architecture — is derived
from that declaration, so nothing outside a family names its parameters.

Built in:

* ``mlp`` — ``depth`` hidden layers of ``width`` ReLU units (any input shape; flattened first)
* ``cnn`` — ``blocks`` × [3×3 conv with ``channels`` filters, ReLU, 2×2 max-pool], then a
  linear head (input ``[C, H, W]``)
* ``seed_teacher`` — the seed's heavy MLP (no architecture parameters)

Users add their own with :func:`register_family` (see ``kdcore.testing.check_family`` for the
conformance check a family should pass). A *source* of families (:func:`register_source`)
resolves names ``"<prefix>:<name>"`` on first use — how a library of many architectures (timm,
Hugging Face) is offered without registering each one up front.

A family takes feature tensors (``input_kind = "features"``: float ``[N, *input_shape]``) or
token ids (``"tokens"``: int64 ``[N, length]``, 0 = padding); :meth:`StudentFamily.example`
makes a batch of either for counting, timing and export.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from kdcore.exceptions import ParameterError, ParameterTypeError, UnknownNameError

__all__ = [
    "INPUT_KINDS",
    "ArchParam",
    "StudentFamily",
    "StudentModel",
    "TeacherModel",
    "arch_for_size",
    "build_student",
    "cnn",
    "format_arch",
    "get_family",
    "list_families",
    "list_sources",
    "mlp",
    "register_family",
    "register_source",
]

INPUT_KINDS = ("features", "tokens")

InputShape = tuple[int, ...]


@dataclass(frozen=True)
class ArchParam:
    """One architecture parameter of a family.

    ``bounds`` are the values the family accepts at all; ``default`` is the search range used
    when a suite does not give one (``log``: sample on a log scale). ``optional``: an
    architecture may leave it out, and the builder then uses the model's own value (a
    library model's published shape, for a teacher). ``from_data``: set from the data, never
    searched and not part of the label (a text model's vocabulary size). ``search``: whether
    a search that says nothing of it samples its default range (False: the model's own value,
    for an optional parameter whose range depends on the data, such as a patch size).
    """

    name: str
    kind: type = int
    bounds: tuple[float, float] = (1, 4096)
    default: tuple[float, float] = (1, 64)
    log: bool = False
    doc: str = ""
    optional: bool = False
    from_data: bool = False
    search: bool = True

    def __post_init__(self) -> None:
        if self.kind not in (int, float):
            raise ParameterTypeError(
                f"ArchParam {self.name!r}: kind must be int or float, got {self.kind}."
            )
        lo, hi = self.bounds
        if not (lo <= self.default[0] <= self.default[1] <= hi):
            raise ParameterError(
                f"ArchParam {self.name!r}: default range {self.default} must lie in bounds {self.bounds}."
            )
        if self.log and lo <= 0:
            raise ParameterError(
                f"ArchParam {self.name!r}: a log-scale parameter needs bounds > 0."
            )
        if not self.search and not self.optional:
            raise ParameterError(
                f"ArchParam {self.name!r}: a parameter left out of searches must be optional."
            )

    def rule(self) -> str:
        """The validity rule in words, e.g. ``an int in [1, 4096]``."""
        what = "an int" if self.kind is int else "a number"
        return f"{what} in [{_fmt(self.bounds[0])}, {_fmt(self.bounds[1])}]"

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if self.kind is float and not isinstance(value, int | float):
            return False
        return self.bounds[0] <= float(value) <= self.bounds[1]  # type: ignore[arg-type]


@dataclass(frozen=True)
class StudentFamily:
    """A named way to build models; see the module docstring for the contract."""

    name: str
    build: Callable[..., nn.Module]
    params: tuple[ArchParam, ...] = ()
    description: str = ""
    input_ranks: tuple[int, ...] | None = None  # accepted len(input_shape); None = any
    size_param: str | None = None  # the parameter that scales capacity monotonically
    example_input_shape: InputShape = (8,)
    labels: Mapping[str, str] = field(default_factory=dict)  # optional display names
    input_kind: str = "features"  # INPUT_KINDS
    grouping: str = "auto"  # how a Distiller stacks its members (kdcore._grouped.BACKENDS)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def searched_names(self) -> tuple[str, ...]:
        """The parameters a search samples (all but those set from the data)."""
        return tuple(p.name for p in self.params if not p.from_data)

    def example(
        self,
        batch: int,
        input_shape: Sequence[int],
        arch: Mapping[str, object] | None = None,
        generator: torch.Generator | None = None,
        *,
        zeros: bool = False,
    ) -> torch.Tensor:
        """A batch of inputs the family's models take: standard-normal features (``zeros``:
        all zero), or token ids in ``[1, vocab_size)`` (``vocab_size`` from ``arch``)."""
        shape = (batch, *as_input_shape(input_shape))
        if self.input_kind == "tokens":
            vocab = int((arch or {}).get("vocab_size", 2))  # type: ignore[call-overload]
            if zeros:
                return torch.ones(shape, dtype=torch.long)
            return torch.randint(1, max(vocab, 2), shape, generator=generator)
        if zeros:
            return torch.zeros(shape)
        return torch.randn(shape, generator=generator)

    def param(self, name: str) -> ArchParam:
        for p in self.params:
            if p.name == name:
                return p
        raise UnknownNameError(
            f"Family {self.name!r} has no architecture parameter {name!r}. "
            f"Valid names: {', '.join(self.param_names) or '(none)'}."
        )

    def label(self, arch: Mapping[str, object]) -> str:
        """The one human label of an architecture: ``width 32 × depth 2`` (parameters set
        from the data, and optional ones left out, are not named)."""
        shown = [p for p in self.params if not p.from_data and p.name in arch]
        if not shown:
            return self.name
        return " × ".join(
            f"{self.labels.get(p.name, p.name)} {_fmt_value(arch.get(p.name))}" for p in shown
        )

    def check_arch(self, arch: Mapping[str, object]) -> None:
        """``TypeError`` for unknown or missing names, ``ValueError`` for invalid values."""
        unknown = sorted(set(arch) - set(self.param_names))
        missing = [p.name for p in self.params if p.name not in arch and not p.optional]
        if unknown or missing:
            raise ParameterTypeError(
                f"Family {self.name!r} takes {list(self.param_names)}; "
                f"got unknown {unknown} and missing {missing}."
            )
        for p in self.params:
            if p.name in arch and not p.accepts(arch[p.name]):
                raise ParameterError(
                    f"The {p.name!r} parameter of family {self.name!r} must be {p.rule()}. "
                    f"Got {arch[p.name]!r} instead."
                )

    def check_input_shape(self, input_shape: InputShape) -> None:
        if self.input_ranks is not None and len(input_shape) not in self.input_ranks:
            ranks = " or ".join(str(r) for r in self.input_ranks)
            raise ParameterError(
                f"Family {self.name!r} needs inputs with {ranks} dimension(s) per sample "
                f"(e.g. {list(self.example_input_shape)}). Got input shape {list(input_shape)} instead."
            )


_FAMILIES: dict[str, StudentFamily] = {}
# prefix -> (resolver, what its names are): resolver(name) registers "<prefix>:<name>"
_SOURCES: dict[str, tuple[Callable[[str], None], str]] = {}


def register_source(prefix: str, resolve: Callable[[str], None], names: str = "<name>") -> None:
    """Offer the families ``"<prefix>:<name>"``: on the first :func:`get_family` of such a
    name, ``resolve(name)`` is called and must :func:`register_family` it (or raise
    :class:`UnknownNameError` saying which names it knows). ``names`` describes them in
    :func:`list_sources` (e.g. ``"<architecture>"``)."""
    if not prefix or not all(c.isalnum() or c in "-_." for c in prefix):
        raise ParameterError(
            f"A source prefix must be letters, digits, '-', '_' or '.'. Got {prefix!r}."
        )
    _SOURCES[prefix] = (resolve, names)


def list_sources() -> list[str]:
    """The name patterns of every registered source, e.g. ``["timm:<architecture>"]``."""
    return sorted(f"{p}:{names}" for p, (_, names) in _SOURCES.items())


def register_family(  # noqa: PLR0913 — a family's declaration, its options keyword-only
    name: str,
    build: Callable[..., nn.Module],
    params: Sequence[ArchParam] = (),
    description: str = "",
    *,
    input_ranks: tuple[int, ...] | None = None,
    size_param: str | None = None,
    example_input_shape: InputShape | None = None,
    labels: Mapping[str, str] | None = None,
    input_kind: str = "features",
    grouping: str = "auto",
    replace: bool = False,
) -> StudentFamily:
    """Register ``build(input_shape, num_classes, **arch)`` under ``name`` and return the family.

    ``params`` declares the architecture parameters; ``size_param`` names the one that scales
    the model's size (used to map a target size to an architecture). ``example_input_shape``
    (what conformance checks build it for) defaults to one of the first accepted rank:
    ``(8,)``, ``(8, 8)`` or ``(1, 8, 8)``; one of another rank than ``input_ranks`` is refused.
    ``input_kind``: ``"features"`` (float tensors) or ``"tokens"`` (int64 ids, 0 = padding).
    ``grouping``: how a :class:`~kdcore.Distiller` stacks a group's members (``"loop"`` for
    models ``torch.func.vmap`` cannot batch; see :mod:`kdcore._grouped`). A name ``"<prefix>:<name>"`` belongs to a source (:func:`register_source`).
    """
    prefix, _, rest = name.partition(":")
    if not all(
        part and all(c.isalnum() or c in "-_." for c in part)
        for part in ((prefix, rest) if rest or ":" in name else (name,))
    ):
        raise ParameterError(
            f"A family name must be letters, digits, '-', '_' or '.' (with one ':' after a "
            f"source prefix). Got {name!r}."
        )
    if input_kind not in INPUT_KINDS:
        raise ParameterError(f"input_kind must be one of {INPUT_KINDS}. Got {input_kind!r}.")
    if name in _FAMILIES and not replace:
        raise ParameterError(f"A model family named {name!r} is already registered.")
    params = tuple(params)
    for p in params:
        if not isinstance(p, ArchParam):
            raise ParameterTypeError(
                f"Family {name!r}: params must be ArchParam objects. Got {p!r}."
            )
    if size_param is not None and size_param not in {p.name for p in params}:
        raise ParameterError(
            f"Family {name!r}: size_param {size_param!r} is not one of its params."
        )
    # The size parameter may be optional (left out: the model's own, as a stock teacher
    # checkpoint holds it) but a search always sets it.
    if size_param is not None and (
        not next(p for p in params if p.name == size_param).search
        or next(p for p in params if p.name == size_param).from_data
    ):
        raise ParameterError(
            f"Family {name!r}: size_param {size_param!r} must be a searched parameter (not set "
            "from the data)."
        )
    if example_input_shape is None:
        rank = input_ranks[0] if input_ranks else 1
        example_input_shape = (1, 8, 8)[-rank:] if rank <= 3 else (1,) * (rank - 2) + (8, 8)
    if input_ranks is not None and len(example_input_shape) not in input_ranks:
        raise ParameterError(
            f"Family {name!r}: example_input_shape must have one of the input_ranks "
            f"{list(input_ranks)} dimensions. Got {list(example_input_shape)}."
        )
    family = StudentFamily(
        name,
        build,
        params,
        description,
        input_ranks,
        size_param,
        tuple(example_input_shape),
        dict(labels or {}),
        input_kind,
        grouping,
    )
    _FAMILIES[name] = family
    return family


def get_family(name: str) -> StudentFamily:
    """The registered family ``name`` (a source's ``"<prefix>:<name>"`` is resolved and
    registered on first use); :class:`UnknownNameError` lists the valid names."""
    if name in _FAMILIES:
        return _FAMILIES[name]
    prefix, colon, rest = name.partition(":")
    if colon and prefix in _SOURCES:
        _SOURCES[prefix][0](rest)  # raises UnknownNameError with the names it knows
        if name in _FAMILIES:
            return _FAMILIES[name]
    valid = ", ".join(sorted(_FAMILIES) + list_sources())
    raise UnknownNameError(f"Unknown model family {name!r}. Valid names: {valid}.")


def list_families() -> list[str]:
    """The names of every registered family, sorted."""
    return sorted(_FAMILIES)


def as_input_shape(input_shape: int | Sequence[int]) -> InputShape:
    """``20`` or ``[1, 8, 8]`` → a tuple of positive ints."""
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ParameterError(f"input_shape must be positive ints. Got {input_shape!r}.")
    return shape


def build_student(
    family: str, input_shape: int | Sequence[int], num_classes: int, **arch: int | float
) -> nn.Module:
    """The one public way to build a model of a registered family.

    Unknown or missing architecture keys raise ``TypeError``; invalid values and input shapes
    the family cannot take raise ``ValueError``.
    """
    fam = get_family(family)
    shape = as_input_shape(input_shape)
    fam.check_arch(arch)
    fam.check_input_shape(shape)
    return fam.build(shape, int(num_classes), **arch)


@functools.lru_cache(maxsize=4096)
def _params_of(
    family: str, shape: tuple[int, ...], num_classes: int, arch: tuple[tuple[str, float], ...]
) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = build_student(family, shape, num_classes, **dict(arch))
    return sum(p.numel() for p in model.parameters())


def arch_for_size(
    family: str,
    input_shape: int | Sequence[int],
    num_classes: int,
    target_params: float,
    **fixed: int | float,
) -> dict[str, int | float]:
    """The architecture of ``family`` with the other parameters ``fixed`` whose parameter count
    is nearest ``target_params`` on a log scale, found by varying the family's ``size_param``.

    Method: the count is monotone in ``size_param`` (the family's contract), so a bisection
    over its bounds (int: exact; float: 40 halvings) brackets the target between two
    neighbours; the one with the smaller ``|log(count / target)|`` wins. Counting builds the
    model on the ``meta`` device (shapes only). Out-of-range targets give the bound.
    """
    fam = get_family(family)
    if fam.size_param is None:
        raise ParameterError(f"Family {family!r} declares no size_param: it cannot be sized.")
    if not target_params > 0:
        raise ParameterError(f"target_params must be > 0. Got {target_params!r} instead.")
    p = fam.param(fam.size_param)
    shape = as_input_shape(input_shape)

    def count(v: float) -> int:
        arch = {**fixed, p.name: p.kind(v)}
        return _params_of(family, shape, int(num_classes), tuple(sorted(arch.items())))

    lo: float
    hi: float
    lo, hi = p.bounds
    if p.kind is int:
        lo, hi = int(lo), int(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if count(mid) <= target_params else (lo, mid)
    else:
        for _ in range(40):
            half = (lo + hi) / 2
            lo, hi = (half, hi) if count(half) <= target_params else (lo, half)
    best = min((lo, hi), key=lambda v: abs(math.log(count(v) / target_params)))
    return {**fixed, p.name: p.kind(best)}


def format_arch(family: str, arch: Mapping[str, object]) -> str:
    """The label of ``arch`` in ``family`` (``width 32 × depth 2``); the family name if unknown."""
    try:
        return get_family(family).label(arch)
    except KeyError:
        return family + " " + ", ".join(f"{k}={_fmt_value(v)}" for k, v in arch.items())


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _fmt_value(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "?"
        return _fmt(v) if v.is_integer() else f"{v:.3g}"
    return str(v)


# ---------------------------------------------------------------------- built-in families
def _flat(input_shape: InputShape) -> tuple[list[nn.Module], int]:
    """Layers that flatten a sample of ``input_shape``, and the flat size."""
    size = math.prod(input_shape)
    return ([nn.Flatten()] if len(input_shape) > 1 else []), size


def mlp(
    input_shape: int | Sequence[int], num_classes: int, width: int, depth: int
) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` ReLU units: [Flatten]-Linear(d,w)-ReLU-…-Linear(w,C)."""
    if depth < 1 or width < 1:
        raise ParameterError(
            f"mlp needs width >= 1 and depth >= 1, got width={width}, depth={depth}."
        )
    layers, fan_in = _flat(as_input_shape(input_shape))
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def cnn(input_shape: Sequence[int], num_classes: int, channels: int, blocks: int) -> nn.Sequential:
    """``blocks`` × [Conv2d(3×3, ``channels``, padding 1)-ReLU-MaxPool2d(2)], Flatten, Linear.

    The pool is skipped once the feature map is 1 pixel high or wide. Forward multiply-adds
    per sample: Σ_blocks H·W·channels·c_in·9 (H, W at that block's input) + the head's
    channels·H'·W'·C.
    """
    c_in, h, w = as_input_shape(input_shape)
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Conv2d(c_in, channels, kernel_size=3, padding=1), nn.ReLU()]
        if h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c_in = channels
    layers += [nn.Flatten(), nn.Linear(channels * h * w, num_classes)]
    return nn.Sequential(*layers)


class TeacherModel(nn.Sequential):
    """The seed's teacher: Linear(d,256)-ReLU-Dropout(0.3)-Linear(256,128)-ReLU-Dropout(0.3)-
    Linear(128,64)-ReLU-Linear(64,C). 46,658 parameters and 92,416 FLOPs per sample for d=20,
    C=2. Image-shaped inputs are flattened first."""

    def __init__(
        self, input_shape: int | Sequence[int], num_classes: int, dropout: float = 0.3
    ) -> None:
        head, d = _flat(as_input_shape(input_shape))
        super().__init__(
            *head,
            nn.Linear(d, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )


def StudentModel(
    input_shape: int | Sequence[int], num_classes: int, width: int = 77
) -> nn.Sequential:
    """The seed's student: two hidden layers (width 77 is ~1/30 of 5 seed teachers for d=20)."""
    return mlp(input_shape, num_classes, width=width, depth=2)


register_family(
    "mlp",
    mlp,
    (
        ArchParam("width", int, (1, 4096), (4, 512), log=True, doc="units per hidden layer"),
        ArchParam("depth", int, (1, 16), (1, 4), doc="hidden layers"),
    ),
    "fully connected ReLU MLP (inputs flattened)",
    size_param="width",
    example_input_shape=(20,),
)
register_family(
    "cnn",
    cnn,
    (
        ArchParam("channels", int, (1, 1024), (4, 64), log=True, doc="filters per conv block"),
        ArchParam("blocks", int, (1, 8), (1, 3), doc="conv-ReLU-pool blocks"),
    ),
    "convolutional: blocks x [3x3 conv, ReLU, 2x2 max-pool], then a linear head; input [C, H, W]",
    input_ranks=(3,),
    size_param="channels",
    example_input_shape=(1, 8, 8),
)
register_family(
    "seed_teacher",
    lambda input_shape, num_classes: TeacherModel(input_shape, num_classes),
    (),
    "the seed's heavy MLP teacher (256-128-64, dropout 0.3)",
    example_input_shape=(20,),
)
