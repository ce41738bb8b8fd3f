"""Suite files (TOML) → validated, frozen configuration objects.

Every rule lives here (task kinds validate their own keys in ``bench.tasks``). A violation
raises :class:`~bench.errors.InputError` whose message names the key, the rule and the value
received, e.g. ``The 'width.low' parameter of [search] must be an int in [1, 4096]. Got -3
instead.``; the CLI prints it and exits with status 2.

Order of reading: ``[plugins]`` first (they may register families), then ``[student]`` (its
family decides which keys ``[search]`` accepts), then the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import bench.models  # noqa: F401 — registers the timm: and hf: families
from bench.config import DEFAULT_MAX_GAP
from bench.config.plugins import ensure_entry_points, import_plugins
from bench.config.recipe import RecipeFields, check_recipe, read_milestones, recipe_defaults_dropped
from bench.config.teacher import SPECIALIST_KEYS, TeacherConfig, later_defaults_dropped
from bench.errors import InputError
from bench.tasks import TaskConfig, parse_task, task_from_dict
from bench.threads import AUTO
from bench.validation import Range, Table, boolean, choice, number, read_fields, string
from bench.validation import family as family_field
from kdcore import get_family
from kdcore.augment import AUGMENT_TEACHERS, Augment

__all__ = [
    "FORMS",
    "RECIPE_SEARCH",
    "SAFE_NAME",
    "AugmentConfig",
    "BudgetConfig",
    "CertifyConfig",
    "MeasureConfig",
    "PluginsConfig",
    "Range",
    "SearchSpace",
    "ShipConfig",
    "StudentTraining",
    "Suite",
    "TeacherConfig",
    "TransferConfig",
    "check_safe_name",
    "load_suite",
    "parse_suite",
    "suite_from_dict",
]

SAMPLERS = ("tpe", "random")
STRATEGIES = ("sample", "predict")
FIDELITIES = ("full", "halving")
OBJECTIVES = ("pareto", "val_acc")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAFE_NAME_RULE = (
    "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
    "(it becomes part of file names)"
)


def check_safe_name(value: Any, key: str, where: str) -> str:
    """The one safe-name rule for every name that becomes part of a path."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise InputError(
            f"The '{key}' parameter of {where} must be {SAFE_NAME_RULE}. Got {value!r} instead."
        )
    return value


# ---------------------------------------------------------------------- config objects
@dataclass(frozen=True)
class PluginsConfig:
    modules: tuple[str, ...] = ()


STUDENT_PATHS = ("auto", "grouped", "stream")
# [student] keys that came with the streamed path: left out of the digest at their defaults
_STREAM_DEFAULTS = {"path": "auto", "amp": "auto", "compile": "off"}


@dataclass(frozen=True)
class StudentTraining(RecipeFields):
    """``[student]``: the family and how every student trains (the recipe keys:
    :mod:`bench.config.recipe`)."""

    family: str = family_field(
        "mlp", help="student family: registered, timm:<architecture> or hf:<model>"
    )
    epochs: int = number(20, int, 1, 10_000, help="training epochs (best epoch on validation)")
    batch_size: int = number(256, int, 1, 1_000_000, help="mini-batch size")
    lr: float = number(3e-3, float, 0.0, 1e30, low_open=True, help="base learning rate")
    weight_decay: float = number(0.0, float, 0.0, 1.0, help="weight decay (the optimizer's)")
    patience: int = number(0, int, 0, 10_000, help="early stopping on validation (0 = off)")
    grouped: bool = boolean(True, help="train a trial's students as one batched group")
    # the streamed path (kdcore.stream.StreamDistiller): chosen by itself for a streamed task
    path: str = choice(
        "auto",
        STUDENT_PATHS,
        help="auto (streamed tasks: stream; else grouped) | grouped | stream",
    )
    amp: str = choice("auto", ("auto", "off", "bf16", "fp16"), help="stream path: autocast")
    compile: str = string("off", help="stream path: torch.compile backend ('off': none)")


@dataclass(frozen=True)
class SearchSpace:
    """The family's architecture parameters (in its declared order), then T and alpha.

    With ``size`` (the capacity axis: student parameters as a fraction of the ensemble's),
    the family's ``size_param`` (:attr:`derived`) is not sampled: it is solved from the sampled
    size and the other architecture parameters (:func:`kdcore.arch_for_size`).
    """

    arch: tuple[tuple[str, Range], ...] = (
        ("width", Range(4, 512, True)),
        ("depth", Range(1, 4)),
    )
    temperature: Range = Range(1.0, 20.0, True)
    alpha: Range = Range(0.5, 1.0)
    size: Range | None = None
    derived: str | None = None
    # searched [student] recipe keys (RECIPE_SEARCH): like the architecture, one value per
    # training group, so every member of a group (scratch twins too) trains with it
    recipe: tuple[tuple[str, Range], ...] = ()
    # "sample": the sampler draws every trial's architecture; "predict": the capacity law
    # chooses them (bench.search.predict)
    strategy: str = "sample"

    def ranges(self) -> dict[str, Range]:
        """What Optuna samples: the architecture parameters (less :attr:`derived`), ``size``
        when given, the searched recipe keys, then T and alpha."""
        out = {n: r for n, r in self.arch if n != self.derived}
        if self.size is not None:
            out["size"] = self.size
        out |= dict(self.recipe)
        return {**out, "temperature": self.temperature, "alpha": self.alpha}

    @property
    def arch_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.arch)

    @property
    def recipe_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.recipe)


# [student] recipe keys [search] may sample: (low, high, low_open) of each
RECIPE_SEARCH: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 10.0, True),
    "weight_decay": (0.0, 1.0, False),
    "momentum": (0.0, 0.999, False),
    "label_smoothing": (0.0, 0.999, False),
}


@dataclass(frozen=True)
class CertifyConfig:
    """``[certify]``: the size decision, certified once on the test split (bench.decision.protocol).

    Validation orders up to ``candidates`` configurations of the validation capacity frontier
    (one per architecture, largest first); each is trained again with ``seeds`` fresh seeds
    and tested once; fixed-sequence testing at level ``alpha`` certifies down the list and
    stops at the first failure."""

    candidates: int = number(
        6, int, 0, 1000, help="frontier configurations to certify, largest first (0 = off)"
    )
    seeds: int = number(5, int, 2, 100, help="fresh training seeds per candidate")
    alpha: float = number(
        0.05,
        float,
        0.0,
        0.5,
        low_open=True,
        help="family-wise error: P(certifying a student whose true gap exceeds the tolerance)",
    )
    max_gap_pp: float | None = number(
        None,
        float,
        0.0,
        100.0,
        help="the tolerance certified, in pp (default: the run's --max-gap, else "
        f"{DEFAULT_MAX_GAP * 100:g})",
    )

    @property
    def max_gap(self) -> float | None:
        """The tolerance certified, a fraction (the suite file states it in pp)."""
        return None if self.max_gap_pp is None else self.max_gap_pp / 100


FORMS = ("fp32", "int8_dynamic", "int8_static", "fp16")
DERIVED_FORMS = FORMS[1:]  # each has its own columns, mark and bound beside fp32's


@dataclass(frozen=True)
class ShipConfig:
    """``[ship]``: the deployed forms of a student that certification tests
    (:mod:`bench.latency.forms`). ``fp32`` is the reference every other form is derived from
    and is always in the list; each form's claims are tested at the round's level divided by
    the number of forms (Bonferroni), so the family-wise error over (size, form) stays within
    the round's share."""

    forms: tuple[str, ...] = ("fp32",)
    calibration_rows: int = 256

    @property
    def active(self) -> bool:
        return self.forms != ("fp32",)


@dataclass(frozen=True)
class TransferConfig:
    """``[transfer]``: what the students learn from (the teacher always trains on the whole
    training split; validation and test are never touched).

    The transfer set is a stratified, seeded ``fraction`` of each class of the training split,
    less the classes in ``omit_classes``, plus the rows of the ``unlabeled`` file (without
    labels: they enter the distillation loss through the soft term only). The scratch twin
    trains on the transfer set's labelled rows alone (:mod:`bench.group.transfer`)."""

    fraction: float = number(
        1.0,
        float,
        0.0,
        1.0,
        low_open=True,
        help="stratified, seeded fraction of the training split the students learn from",
    )
    omit_classes: tuple[str, ...] = ()  # labels as written in the data: Table.labels
    unlabeled: str = ""  # a file of extra rows without labels: _path
    bias_correction: bool = boolean(
        False,
        help="shift the omitted classes' logits after training, the shift chosen on validation",
    )

    @property
    def active(self) -> bool:
        """Whether the students learn from anything but the whole labelled training split."""
        return self.fraction < 1.0 or bool(self.omit_classes) or bool(self.unlabeled)


@dataclass(frozen=True)
class AugmentConfig:
    """``[augment]``: views of image rows that a student and its teacher both see
    (:mod:`kdcore.augment`, :mod:`bench.group.augment`); the scratch twin sees the same views."""

    random_crop: int = number(0, int, 0, 255, help="pixels of padding for random crops (0 = off)")
    hflip: bool = boolean(False, help="mirror half the views left to right")
    mixup: float = number(0.0, float, 0.0, 100.0, help="Beta(a, a) mixing of pairs (0 = off)")
    teacher: str = choice(
        "views",
        AUGMENT_TEACHERS,
        help="'views': the teacher runs once on K stored views per row; 'online': on every "
        "epoch's views",
    )
    views: int = number(8, int, 1, 1024, help="stored views per row (teacher = 'views')")

    @property
    def active(self) -> bool:
        """Whether any transform is on."""
        return self.random_crop > 0 or self.hflip or self.mixup > 0

    def augment(self, seed: int) -> Augment | None:
        """kdcore's :class:`~kdcore.Augment` (its stored views seeded by ``seed``), or None."""
        if not self.active:
            return None
        return Augment(self.random_crop, self.hflip, self.mixup, self.teacher, self.views, seed)

    def describe(self) -> str:
        """The ``augment`` column: ``"none"`` or e.g. ``"crop 1, flip; teacher: 8 views"``."""
        aug = self.augment(0)
        return "none" if aug is None else aug.describe()


@dataclass(frozen=True)
class BudgetConfig:
    """``[budget]``: how many trials, how they are sampled, stopped and shared."""

    trials: int = number(40, int, 1, 100_000, help="search trials per task")
    seeds: int = number(1, int, 1, 100, help="replicate seeds per trial")
    sampler: str = choice("tpe", SAMPLERS, help="Optuna sampler")
    sampler_seed: int = number(0, int, 0, 2**31 - 1, help="the sampler's seed")
    objective: str = choice("pareto", OBJECTIVES, help="val accuracy and FLOPs, or val accuracy")
    storage: str = string("", help="a database URL shared by workers (default: a journal file)")
    artifacts: str = string(
        "",
        help="where kept students' weights go: a folder or s3://bucket (default: artifacts/ "
        "in the run folder)",
    )
    group_size: int = number(1, int, 1, 64, help="trials of one architecture trained at once")
    batch: int = number(
        4,
        int,
        1,
        10_000,
        help="groups asked at once; the next batch is asked when this one is done, so the "
        "search is the same for any number of workers",
    )
    prune: bool = boolean(False, help="median pruning on validation accuracy")
    fidelity: str = choice("full", FIDELITIES, help="full epochs, or successive halving")
    min_epochs: int = number(3, int, 1, 100_000, help="the first halving rung")
    reduction_factor: int = number(3, int, 2, 100, help="halving's eta")
    heartbeat_interval: int = number(10, int, 1, 3600, help="seconds between heartbeats (RDB)")
    grace_period: int = number(30, int, 2, 86_400, help="seconds before a silent trial is retried")


@dataclass(frozen=True)
class MeasureConfig:
    """``[measure]``: devices, threads and the latency protocol."""

    device: str = "auto"  # auto | cpu | cuda[:N]: read by _measure (a pattern, not a list)
    threads: int = number(1, int, 1, 1024, help="CPU threads of the latency_cpu_* columns")
    multi_thread: bool = boolean(True, help="also time with all cores (latency_cpu_mt_*)")
    batch: int = number(256, int, 1, 1_000_000, help="the large batch N of the *_bN_* columns")
    min_run_time: float = number(
        0.1, float, 0.0, 60.0, low_open=True, help="seconds of timed blocks (>= 30 blocks)"
    )
    warmup: int = number(10, int, 0, 100_000, help="untimed warm-up calls")
    block_ms: float = number(
        1.0, float, 0.01, 1000.0, help="target length of one timed block of back-to-back calls"
    )
    train_threads: int | str = 0  # 0 = all cores, N, or "auto" (bench.threads): _train_threads
    # the runtimes students and the ensemble are timed in: _runtimes
    runtimes: tuple[str, ...] = ("torch", "onnxruntime")


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[TaskConfig, ...]
    teacher: TeacherConfig = TeacherConfig()
    student: StudentTraining = StudentTraining()
    search: SearchSpace = SearchSpace()
    budget: BudgetConfig = BudgetConfig()
    certify: CertifyConfig = CertifyConfig()
    measure: MeasureConfig = MeasureConfig()
    transfer: TransferConfig = TransferConfig()
    augment: AugmentConfig = AugmentConfig()
    ship: ShipConfig = ShipConfig()
    plugins: PluginsConfig = PluginsConfig()
    description: str = ""
    source: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as stored in manifests); :func:`suite_from_dict` reverses it."""
        data = asdict(self)
        data.pop("source")
        data["search"] = {k: asdict(r) for k, r in self.search.ranges().items()}
        if self.search.strategy != "sample":  # a suite without it keeps its digest
            data["search"]["strategy"] = self.search.strategy
        return data

    def digest(self) -> str:
        """sha256 of the canonical JSON of the validated suite (what actually runs), without
        its storage URL: where the study lives is not what it is (and holds a password)."""
        data = self.to_dict()
        data["budget"]["storage"] = ""
        data["budget"]["artifacts"] = ""
        for table in ("student", "teacher"):  # as before recipes existed, when left out
            data[table] = recipe_defaults_dropped(data[table])
        for key, default in _STREAM_DEFAULTS.items():  # as before the streamed path existed
            if data["student"].get(key) == default:
                data["student"].pop(key)
        data["teacher"] = later_defaults_dropped(data["teacher"])
        if not self.transfer.active:  # the digest of a suite written before [transfer] existed
            data.pop("transfer")
        if not self.augment.active:  # nor before [augment]
            data.pop("augment")
        if not self.ship.active:  # nor before [ship]
            data.pop("ship")
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def with_budget(self, **changes: Any) -> Suite:
        return replace(self, budget=replace(self.budget, **changes))

    def for_task(self, data_params: Mapping[str, int]) -> Suite:
        """The suite with the student family's data-fixed architecture values (a text model's
        ``vocab_size``: :attr:`kdcore.ArchParam.from_data`) pinned in its search, so every
        trial's architecture carries them."""
        fam = get_family(self.student.family)
        pins = [
            (p.name, Range(data_params[p.name], data_params[p.name]))
            for p in fam.params
            if p.from_data and p.name in data_params and p.name not in self.search.arch_names
        ]
        missing = [p.name for p in fam.params if p.from_data and p.name not in data_params]
        if missing:
            raise InputError(
                f"The student family {self.student.family!r} sets '{missing[0]}' from the data, "
                "which this task does not give (a text family needs a task with a 'text' "
                "column)."
            )
        if not pins:
            return self
        return replace(self, search=replace(self.search, arch=(*self.search.arch, *pins)))

    def with_certify_gap(self, max_gap: float | None) -> Suite:
        """The suite with its certified tolerance resolved: ``[certify] max_gap_pp`` when the
        suite gives it, else ``max_gap`` (the run's --max-gap, a fraction), else
        :data:`bench.config.DEFAULT_MAX_GAP`."""
        if self.certify.max_gap_pp is not None:
            return self
        gap = DEFAULT_MAX_GAP if max_gap is None else float(max_gap)
        # the suite keeps the file's unit (pp), rounded so 0.003 is stored as 0.3, not 0.30…04
        return replace(self, certify=replace(self.certify, max_gap_pp=round(gap * 100, 12)))


# ---------------------------------------------------------------------- sections
RUNTIMES = ("torch", "onnxruntime")


def _runtimes(t: Table, default: tuple[str, ...]) -> tuple[str, ...]:
    """``[measure] runtimes``: distinct values of :data:`RUNTIMES`, "torch" among them (the
    torch columns are the reference every run has)."""
    rule = f"an array of distinct values among {', '.join(map(repr, RUNTIMES))} with 'torch'"
    value = t.data.get("runtimes", list(default))
    got = t.strings("runtimes", default)
    if "torch" not in got or len(set(got)) != len(got) or not set(got) <= set(RUNTIMES):
        raise t.fail("runtimes", rule, value)
    return got


def _train_threads(t: Table, default: int | str) -> int | str:
    """``[measure] train_threads``: an integer in [0, 1024] (0 = all cores) or "auto"."""
    if t.data.get("train_threads") == AUTO:
        t.seen.add("train_threads")
        return AUTO
    try:
        return t.number("train_threads", default, int, 0, 1024)
    except InputError as exc:
        raise t.fail(
            "train_threads",
            'an integer in [0, 1024] (0 = all cores) or "auto"',
            t.data["train_threads"],
        ) from exc


def _plugins(t: Table, base_dir: Path) -> PluginsConfig:
    modules = t.strings("modules", ())
    t.finish()
    import_plugins(modules, base_dir, "The 'modules' parameter of [plugins]")
    return PluginsConfig(modules)


def _arch_values(t: Table, key: str, family: str) -> dict[str, Any]:
    t.seen.add(key)
    raw = t.data.get(key, {})
    fam = get_family(family)
    if not isinstance(raw, dict):
        raise t.fail(key, f"a table of the architecture parameters of family {family!r}", raw)
    unknown = sorted(set(raw) - set(fam.param_names))
    if unknown:
        raise InputError(
            f"Unknown key '{key}.{unknown[0]}' in {t.where}. Valid keys for family {family!r}: "
            f"{', '.join(fam.param_names) or '(none)'}."
        )
    required = [p.name for p in fam.params if not p.optional and not p.from_data]
    missing = [n for n in required if n not in raw]
    if missing:
        raise t.fail(
            f"{key}.{missing[0]}",
            f"given for family {family!r} ({', '.join(required)})",
            None,
        )
    for p in fam.params:
        if p.from_data and p.name in raw:
            raise t.fail(f"{key}.{p.name}", f"left out (set from the data: {p.doc})", raw[p.name])
        if p.name in raw and not p.accepts(raw[p.name]):
            raise t.fail(f"{key}.{p.name}", p.rule(), raw[p.name])
    return {p.name: raw[p.name] for p in fam.params if p.name in raw}


def _paths(t: Table, key: str, base_dir: Path) -> tuple[str, ...]:
    return tuple(str((base_dir / Path(p).expanduser()).resolve()) for p in t.strings(key, ()))


def _path(t: Table, key: str, base_dir: Path) -> str:
    value = t.string(key, "")
    return str((base_dir / Path(value).expanduser()).resolve()) if value else ""


def _teacher(t: Table, base_dir: Path) -> TeacherConfig:
    d = TeacherConfig()
    # Offline logits, Hugging Face folders and ONNX files state their own architecture: no
    # family unless one is named (for offline logits, then its cost is measured).
    offline = any(bool(t.data.get(k)) for k in ("logits", "hf", "onnx"))
    family = t.family("family", "" if offline else d.family, allow_empty=offline)
    if family and (t.data.get("hf") or t.data.get("onnx")):
        raise t.fail("family", "left out with 'hf' or 'onnx' (the files state the model)", family)
    cfg: TeacherConfig = read_fields(
        TeacherConfig,
        t,
        family=family,
        arch=_arch_values(t, "arch", family) if family else {},
        checkpoint=_path(t, "checkpoint", base_dir),
        checkpoints=_paths(t, "checkpoints", base_dir),
        hf=_paths(t, "hf", base_dir),
        onnx=_paths(t, "onnx", base_dir),
        logits=_path(t, "logits", base_dir),
        mean=t.floats("mean"),
        std=t.floats("std", positive=True),
        milestones=read_milestones(t),
    )
    t.finish()
    check_recipe(t, cfg, cfg.epochs)
    if cfg.kind == "ensemble":
        for key in SPECIALIST_KEYS:
            if t.has(key):
                raise t.fail(key, "left out unless kind = 'specialists'", t.data[key])
    else:
        for key in ("checkpoint", "checkpoints", "hf", "onnx", "logits", "combine"):
            if t.has(key):
                raise t.fail(
                    key,
                    "left out with kind = 'specialists' (trained here, combined by KL)",
                    t.data[key],
                )
        if t.has("members") and cfg.members != 1:
            raise t.fail("members", "1 with kind = 'specialists' (the generalist)", cfg.members)
        if cfg.cluster_max and cfg.cluster_max < max(cfg.cluster_min, 2):
            raise t.fail(
                "cluster_max",
                f"0 (no limit) or >= max(cluster_min, 2) = {max(cfg.cluster_min, 2)}",
                cfg.cluster_max,
            )
        cfg = replace(cfg, members=1, combine="specialists")
    return _one_source(t, cfg)


def _one_source(t: Table, cfg: TeacherConfig) -> TeacherConfig:
    """The teacher's one source and what it implies (members, normalisation)."""
    given = [k for k in ("checkpoint", "checkpoints", "hf", "onnx", "logits") if getattr(cfg, k)]
    if len(given) > 1:
        raise InputError(
            f"The teacher of [teacher] must come from one source: 'checkpoint', 'checkpoints', "
            f"'hf', 'onnx' or 'logits'. Got {', '.join(given)} instead."
        )
    if len(cfg.mean) != len(cfg.std):
        raise t.fail("std", f"as long as 'mean' ({len(cfg.mean)} channels)", list(cfg.std))
    if cfg.preprocess == "task" and cfg.mean:
        raise t.fail("mean", "left out with preprocess = 'task'", list(cfg.mean))
    if cfg.logits and t.has("members"):
        raise t.fail(
            "members", "left out with 'logits' (the file's first axis gives K)", cfg.members
        )
    for key in ("checkpoints", "hf", "onnx"):
        paths = getattr(cfg, key)
        if paths and t.has("members") and cfg.members != len(paths):
            raise t.fail("members", f"the number of '{key}' ({len(paths)})", cfg.members)
        if paths:
            cfg = replace(cfg, members=len(paths))
    return cfg


def _student(t: Table) -> StudentTraining:
    cfg: StudentTraining = read_fields(StudentTraining, t, milestones=read_milestones(t))
    t.finish()
    check_recipe(t, cfg, cfg.epochs)
    return cfg


def _search(t: Table, family: str) -> SearchSpace:
    fam = get_family(family)
    d = SearchSpace()
    size = derived = None
    if "size" in t.data:
        derived = fam.size_param
        if derived is None:
            raise InputError(
                f"The 'size' parameter of [search] needs a family with a size parameter; "
                f"family {family!r} declares none. Got {t.data['size']!r} instead."
            )
        if derived in t.data:
            raise InputError(
                f"The '{derived}' parameter of [search] must be left out when 'size' is given "
                f"(it is solved from the size). Got {t.data[derived]!r} instead."
            )
        size = t.range("size", Range(0.001, 1.0, True), float, 0.0, 1000.0, low_open=True)
    for p in fam.params:
        if p.from_data and p.name in t.data:
            raise InputError(
                f"The '{p.name}' parameter of [search] must be left out: family {family!r} "
                f"sets it from the data ({p.doc}). Got {t.data[p.name]!r} instead."
            )
    arch = tuple(
        (
            p.name,
            t.range(p.name, Range(p.default[0], p.default[1], p.log), p.kind, *p.bounds),
        )
        for p in fam.params
        if not p.from_data and (p.search or p.name in t.data)
    )
    recipe = tuple(
        (name, t.range(name, Range(low, high), float, low, high, low_open=low_open))
        for name, (low, high, low_open) in RECIPE_SEARCH.items()
        if name in t.data
    )
    cfg = SearchSpace(
        arch=arch,
        strategy=t.choice("strategy", "sample", STRATEGIES),
        temperature=t.range("temperature", d.temperature, float, 0.0, 1000.0, low_open=True),
        alpha=t.range("alpha", d.alpha, float, 0.0, 1.0),
        size=size,
        derived=derived,
        recipe=recipe,
    )
    if cfg.strategy == "predict" and fam.size_param is None:
        raise InputError(
            f"The 'strategy' parameter of [search] can be 'predict' only for a family with a "
            f"size parameter (the law's sizes are solved to widths); family {family!r} declares "
            f"none. Got 'predict' instead."
        )
    unknown = sorted(set(t.data) - t.seen)
    if unknown:
        extra = ["size"] if fam.size_param else []
        raise InputError(
            f"Unknown key '{unknown[0]}' in [search]. Valid keys for family {family!r}: "
            f"{', '.join([*fam.param_names, *extra, *RECIPE_SEARCH, 'temperature', 'alpha', 'strategy'])}."
        )
    return cfg


def _transfer(t: Table, base_dir: Path) -> TransferConfig:
    cfg: TransferConfig = read_fields(
        TransferConfig,
        t,
        omit_classes=t.labels("omit_classes", "an array of class labels as written in the data"),
        unlabeled=_path(t, "unlabeled", base_dir),
    )
    t.finish()
    if cfg.bias_correction and not cfg.omit_classes:
        raise t.fail(
            "bias_correction", "false unless omit_classes names a class (it shifts theirs)", True
        )
    return cfg


def _augment(t: Table) -> AugmentConfig:
    cfg: AugmentConfig = read_fields(AugmentConfig, t)
    t.finish()
    return cfg


def _budget(t: Table) -> BudgetConfig:
    cfg: BudgetConfig = read_fields(BudgetConfig, t)
    t.finish()
    if cfg.grace_period < 2 * cfg.heartbeat_interval:
        raise InputError(
            f"The 'grace_period' parameter of [budget] must be >= 2 x heartbeat_interval "
            f"({2 * cfg.heartbeat_interval}): one missed beat must not kill a live trial. Got "
            f"{cfg.grace_period} instead."
        )
    if cfg.prune and cfg.group_size > 1:
        raise InputError(
            "The 'prune' parameter of [budget] must be false when group_size > 1 (a group trains "
            "several trials at once and cannot drop one mid-way). Got True instead."
        )
    if cfg.fidelity == "halving" and cfg.group_size > 1:
        raise InputError(
            "The 'group_size' parameter of [budget] must be 1 with fidelity = 'halving' (each "
            "trial is stopped on its own at a rung). Got "
            f"{cfg.group_size} instead."
        )
    if cfg.fidelity == "halving" and cfg.prune:
        raise InputError(
            "The 'prune' parameter of [budget] must be false with fidelity = 'halving' (one "
            "early-stopping rule at a time). Got True instead."
        )
    if cfg.prune and cfg.objective != "val_acc":
        raise InputError(
            "The 'prune' parameter of [budget] must be false unless objective = 'val_acc' "
            "(Optuna pruners do not support multi-objective studies). Got True instead."
        )
    return cfg


def _certify(t: Table) -> CertifyConfig:
    cfg: CertifyConfig = read_fields(CertifyConfig, t)
    t.finish()
    return cfg


def _ship(t: Table) -> ShipConfig:
    forms = t.strings("forms", ShipConfig.forms)
    for form in forms:
        if form not in FORMS:
            raise t.fail("forms", f"an array of {', '.join(map(repr, FORMS))}", list(forms))
    if len(set(forms)) != len(forms) or "fp32" not in forms:
        raise t.fail(
            "forms",
            "distinct forms including 'fp32' (the reference the others are derived from)",
            list(forms),
        )
    rows = t.number("calibration_rows", ShipConfig.calibration_rows, int, 8, 100_000)
    t.finish()
    return ShipConfig(forms=forms, calibration_rows=rows)


def _measure(t: Table) -> MeasureConfig:
    d = MeasureConfig()
    device = t.string("device", d.device)
    if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise t.fail("device", "one of 'auto', 'cpu', 'cuda' or 'cuda:N'", device)
    cfg: MeasureConfig = read_fields(
        MeasureConfig,
        t,
        device=device,
        train_threads=_train_threads(t, d.train_threads),
        runtimes=_runtimes(t, d.runtimes),
    )
    t.finish()
    return cfg


def parse_suite(
    data: dict[str, Any], name: str = "suite", source: str = "", base_dir: Path | None = None
) -> Suite:
    """Validate a parsed TOML document; raise :class:`InputError` on the first problem.

    ``base_dir`` (the suite file's folder) resolves relative paths and is searched for
    plugin modules.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    ensure_entry_points()
    top = Table(data, "")
    suite_name = check_safe_name(top.string("name", name), "name", "[suite]")
    description = top.string("description", "")
    plugins = _plugins(top.table("plugins"), base)
    top.seen.update({"task", "tasks"})
    if "confirm" in data:
        raise InputError(
            "The [confirm] table was replaced by [certify] (certification trains fresh seeds, in "
            "an order validation chose): rename it, with top_k -> candidates and "
            "seeds -> seeds; max_val_gap_pp has no successor (validation's frontier sets the "
            f"order), see docs/methodology.md. Got [confirm] = {data['confirm']!r} instead."
        )
    if "task" in data and "tasks" in data:
        raise InputError(
            "A suite must give either [task] or [[tasks]], not both. Got both instead."
        )
    if "tasks" in data:
        raw_tasks = data["tasks"]
        if not isinstance(raw_tasks, list) or not raw_tasks:
            raise InputError(
                f"The 'tasks' parameter of [suite] must be a non-empty array of tables. Got {raw_tasks!r} instead."
            )
        tasks = tuple(parse_task(Table(t, f"tasks.{i}"), base) for i, t in enumerate(raw_tasks))
    else:
        tasks = (parse_task(Table(data.get("task", {}), "task"), base),)
    for i, task in enumerate(tasks):
        check_safe_name(task.name, "name", "[task]" if len(tasks) == 1 else f"[tasks.{i}]")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise InputError(
            f"The 'name' parameter of [tasks] must be unique per task. Got {names!r} instead."
        )
    student = _student(top.table("student"))
    suite = Suite(
        name=suite_name,
        description=description,
        tasks=tasks,
        teacher=_teacher(top.table("teacher"), base),
        student=student,
        search=_search(top.table("search"), student.family),
        budget=_budget(top.table("budget")),
        certify=_certify(top.table("certify")),
        measure=_measure(top.table("measure")),
        transfer=_transfer(top.table("transfer"), base),
        augment=_augment(top.table("augment")),
        ship=_ship(top.table("ship")),
        plugins=plugins,
        source=source,
    )
    top.finish()
    searched = dict(suite.search.recipe)
    if "momentum" in searched and student.optimizer != "sgd":
        raise InputError(
            "The 'momentum' parameter of [search] must be left out unless [student] optimizer "
            f"= 'sgd' (the others have none). Got {student.optimizer!r} as the optimizer."
        )
    if "momentum" in searched and student.nesterov and searched["momentum"].low <= 0:
        raise InputError(
            "The 'momentum' parameter of [search] must have low > 0 with [student] nesterov = "
            f"true (Nesterov needs momentum). Got {asdict(searched['momentum'])} instead."
        )
    b = suite.budget
    if b.fidelity == "halving" and b.min_epochs * b.reduction_factor > student.epochs:
        raise InputError(
            f"The 'min_epochs' parameter of [budget] must be <= [student] epochs / "
            f"reduction_factor ({student.epochs} / {b.reduction_factor}) with fidelity = "
            f"'halving' (a rung stops a trial with at least 1 - 1/reduction_factor of its "
            f"epochs left). Got {b.min_epochs} instead."
        )
    return suite


def load_suite(path: str | Path) -> Suite:
    """Read and validate a TOML suite file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The suite file must exist. Got {str(path)!r} instead.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"The suite file {str(path)!r} must be valid TOML: {exc}.") from None
    return parse_suite(data, name=path.stem, source=str(path), base_dir=path.resolve().parent)


def suite_from_dict(data: dict[str, Any]) -> Suite:
    """Rebuild a Suite from :meth:`Suite.to_dict` output (as stored in a manifest)."""
    plugins = PluginsConfig(tuple(data.get("plugins", {}).get("modules", ())))
    import_plugins(plugins.modules, None, "The plugin module of this run")
    student = StudentTraining(
        **{**data["student"], "milestones": tuple(data["student"].get("milestones", ()))}
    )
    ranges = {k: Range(**v) for k, v in data["search"].items() if k != "strategy"}
    fam = get_family(student.family)
    teacher = dict(data["teacher"])
    for key in ("checkpoints", "hf", "onnx", "mean", "std"):
        teacher[key] = tuple(teacher.get(key, ()))
    teacher["milestones"] = tuple(teacher.get("milestones", ()))
    return Suite(
        name=data["name"],
        description=data.get("description", ""),
        tasks=tuple(task_from_dict(t) for t in data["tasks"]),
        teacher=TeacherConfig(**teacher),
        student=student,
        search=SearchSpace(
            arch=tuple(
                (n, ranges.get(n) or Range(*fam.param(n).default, fam.param(n).log))
                for n in fam.param_names
                # the searched or pinned ones, and the size parameter a capacity axis solves
                if n in ranges or (n == fam.size_param and "size" in ranges)
            ),
            temperature=ranges["temperature"],
            alpha=ranges["alpha"],
            size=ranges.get("size"),
            derived=fam.size_param if "size" in ranges else None,
            recipe=tuple((n, ranges[n]) for n in RECIPE_SEARCH if n in ranges),
            strategy=data["search"].get("strategy", "sample"),
        ),
        budget=BudgetConfig(**data["budget"]),
        certify=CertifyConfig(**data["certify"]),
        measure=replace(
            MeasureConfig(**{k: v for k, v in data["measure"].items() if k != "runtimes"}),
            runtimes=tuple(data["measure"].get("runtimes", MeasureConfig.runtimes)),
        ),
        transfer=_transfer_from_dict(data.get("transfer")),
        augment=AugmentConfig(**(data.get("augment") or {})),  # absent: before [augment]
        ship=_ship_from_dict(data.get("ship")),
        plugins=plugins,
    )


def _ship_from_dict(data: dict[str, Any] | None) -> ShipConfig:
    if not data:  # a manifest written before [ship] existed
        return ShipConfig()
    return ShipConfig(
        forms=tuple(data.get("forms", ("fp32",))),
        calibration_rows=int(data.get("calibration_rows", ShipConfig.calibration_rows)),
    )


def _transfer_from_dict(data: dict[str, Any] | None) -> TransferConfig:
    if not data:  # a manifest written before [transfer] existed
        return TransferConfig()
    return TransferConfig(**{**data, "omit_classes": tuple(data.get("omit_classes", ()))})
