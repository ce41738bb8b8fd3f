"""Everything a run checks before it writes anything: the device, every task's data and
teacher files, what a resumed run must still match, and the configurations a replay takes.

A problem is an :class:`~bench.errors.InputError` (exit 2) and no run folder is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.config.suite import Suite
from bench.errors import InputError
from bench.group.augment import channel_scaled, check_augment
from bench.group.transfer import apply_transfer
from bench.records import Manifest, read_trials, require_run_dir
from bench.search.space import row_params
from bench.tasks import StreamedTask, TaskData, load_task
from bench.teachers import LoadedTeacher, PreparedTeacher, load_teacher
from bench.teachers.preprocess import model_normalization, normalized, teacher_tokenizer
from bench.teachers.sanity import check_teacher_labels
from kdcore import get_family
from kdcore.latency import select_device

__all__ = [
    "check_data_unchanged",
    "check_teacher_unchanged",
    "preflight",
    "replay_configs",
    "resumable",
    "train_device",
]

Prepared = list[tuple[TaskData, LoadedTeacher | None]]


def train_device(suite: Suite) -> str:
    """The device students and the teacher train on (``[measure] device``), available here."""
    try:
        return str(select_device(suite.measure.device))
    except RuntimeError as exc:
        raise InputError(
            f"The 'device' parameter of [measure] must name an available device. Got "
            f"{suite.measure.device!r} instead ({exc})."
        ) from None


def check_forms(suite: Suite) -> None:
    """Every ``[ship] forms`` entry can be produced and run here (onnxruntime and its
    quantisation tools; fp16: onnxruntime's CUDA provider), else one line before the run."""
    from bench.latency.forms import form_missing

    for form in suite.ship.forms:
        why = form_missing(form)
        if why is not None:
            raise InputError(
                f"The 'forms' parameter of [ship] must name forms this machine can produce and "
                f"run. Got {form!r}: {why}."
            )


def check_compile(suite: Suite) -> None:
    """``[student] compile`` names a backend ``torch.compile`` has here."""
    backend = suite.student.compile
    if backend == "off":
        return
    import torch._dynamo

    known = torch._dynamo.list_backends()
    if backend not in known:
        raise InputError(
            f"The 'compile' parameter of [student] must be 'off' or a torch.compile backend "
            f"({', '.join(known)}). Got {backend!r} instead."
        )


def preflight(suite: Suite, cache_dir: Path) -> Prepared:
    """Every task's data and teacher files loaded and validated; nothing written."""
    check_forms(suite)
    check_compile(suite)
    out = []
    for cfg in suite.tasks:
        # a text task without a tokenizer of its own uses the Hugging Face teacher's
        tokenizer = "" if getattr(cfg, "tokenizer", "") else teacher_tokenizer(suite.teacher)
        task: Any = load_task(cfg, tokenizer=tokenizer, cache_dir=cache_dir)
        check_inputs(task, suite)
        norm = model_normalization(suite.teacher, task)
        if isinstance(task, StreamedTask):
            check_streamed(task, suite)
            task = task.with_normalization(norm) if norm is not None else task
        else:
            check_in_memory(task, suite)
            task = normalized(task, norm) if norm is not None else channel_scaled(task, suite)
            task = apply_transfer(task, suite.transfer, suite.teacher)
            check_augment(task, suite)
        loaded = load_teacher(task, suite.teacher, cache_dir)
        if loaded is not None and suite.teacher.source != "train":  # the user's own files
            check_teacher_labels(
                task, suite.teacher, loaded.source, loaded.val_outputs(task, suite.teacher.combine)
            )
        out.append((task, loaded))
    return out


def check_streamed(task: StreamedTask, suite: Suite) -> None:
    """What a streamed task's run cannot do, each as one line before anything is written:
    the grouped path and [transfer]/[augment] need the inputs in memory; specialists and
    offline logits are refused by :func:`bench.teachers.streamed.check_stream_teacher`."""
    from bench.teachers.streamed import check_stream_teacher

    where = f"task '{task.name}' ({task.config.kind}, streamed)"
    if suite.student.path == "grouped":
        raise InputError(
            f"The 'path' parameter of [student] must be 'auto' or 'stream' for {where}: the "
            "grouped path trains on inputs held in memory. Got 'grouped' instead."
        )
    if suite.transfer.active:
        raise InputError(
            f"The [transfer] table must be left out for {where}: a transfer set is built from "
            "inputs held in memory."
        )
    if suite.augment.active:
        raise InputError(
            f"The [augment] table must be left out for {where}: its views are made on inputs "
            "held in memory."
        )
    check_stream_teacher(suite.teacher, task)


def check_in_memory(task: TaskData, suite: Suite) -> None:
    """Keys that only a streamed task takes."""
    if suite.teacher.top_k:
        raise InputError(
            f"The 'top_k' parameter of [teacher] must be left out for task '{task.name}': the "
            "teacher's outputs of an in-memory task are kept whole. Got "
            f"{suite.teacher.top_k} instead."
        )


def check_inputs(task: TaskData, suite: Suite) -> None:
    """The student family (and a teacher trained here) must take the task's inputs: float
    features, or token ids for a text task."""
    families = [("[student] family", suite.student.family)]
    if suite.teacher.source == "train":
        families.append(("[teacher] family", suite.teacher.member_family))
    what = {"features": "float features", "tokens": "token ids (a text task)"}
    for key, name in families:
        kind = get_family(name).input_kind
        if kind != task.input_kind:
            hint = " (e.g. hf:bert)" if task.input_kind == "tokens" else ""
            raise InputError(
                f"The {key} must take the inputs of task '{task.name}', "
                f"{what[task.input_kind]}{hint}. Got {name!r}, which takes {what[kind]}."
            )


def resumable(resume: Path) -> Manifest:
    """The manifest of a local run folder that ``--resume`` may continue."""
    run_dir = require_run_dir(resume, "The RUN_DIR argument of --resume")
    previous = Manifest.read(run_dir)
    if previous.mode == "shared":
        raise InputError(
            f"The run {run_dir} must be a local run to --resume it. Its study lives on "
            f"{previous.study_storage}: rejoin it with `kdbench run SUITE --storage URL "
            f"--study {previous.study}` (the password is never stored)."
        )
    return previous


def check_data_unchanged(previous: Manifest, task: TaskData, run_dir: Path) -> None:
    """--resume refuses a run whose data changed since it started."""
    before = previous.task(task.name).data_sha256
    now = task.data_sha256()
    if before and before != now:
        raise InputError(
            f"The data of task '{task.name}' must be unchanged to resume {run_dir}. Got sha256 "
            f"{now[:12]}… instead of {before[:12]}… (the data file changed); start a new run."
        )


def check_teacher_unchanged(
    previous: Manifest, task: str, teacher: PreparedTeacher, run_dir: Path
) -> None:
    """--resume refuses a run whose teacher's outputs changed since it started."""
    before = previous.task(task).teacher.outputs_sha256
    if before and before != teacher.outputs_sha256:
        raise InputError(
            f"The teacher of task '{task}' must be unchanged to resume {run_dir}. Its outputs now "
            f"hash to {teacher.outputs_sha256[:12]}… instead of {before[:12]}… (the teacher files "
            "or the cached ensemble changed); start a new run."
        )


def replay_configs(run_dir: Path, suite: Suite) -> dict[str, list[dict[str, Any]]]:
    """Per task, the search configurations of the run to replay, as params of ``suite``'s
    space to enqueue (:func:`bench.search.space.row_params`)."""
    require_run_dir(run_dir, "The '--replay' option")
    trials = read_trials(run_dir)
    search = trials[(trials["phase"] == "search") & (trials["state"] != "duplicate")]
    out: dict[str, list[dict[str, Any]]] = {}
    for _, r in search.sort_values("trial").iterrows():
        params = row_params(r, suite.search, suite.student.family)
        out.setdefault(str(r["task"]), []).append(params)
    return out
