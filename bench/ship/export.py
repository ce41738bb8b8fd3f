"""``kdbench export RUN [--trial N] [--format LIST] --out DIR``: the student to ship, its
configuration, its card.

Writes into DIR:

* ``student.pt`` — loads with ``torch.load(path, weights_only=True)``: a dict with
  ``state_dict`` (for ``kdcore.build_student(family, input_shape, num_classes, **arch)``),
  ``family``, ``arch``, ``input_shape``, ``num_classes``, ``class_names``, ``preprocessing``
  (the per-feature ``mean`` and ``scale`` fitted on the training split, or None) and
  ``provenance``. Standardise a batch ``x`` as ``(x.reshape(n, -1) - mean) / scale``, reshape
  to ``input_shape``, take the argmax of the logits: on the task's test split this gives
  exactly the test accuracy the card states for this file (tested).
* ``student.safetensors`` + ``student.json`` and ``student.onnx`` (raw rows in, checked with
  onnxruntime on the test split): :mod:`bench.ship.serialize`.
* ``student.toml`` — the configuration as a suite fragment to copy.
* ``MODEL_CARD.md`` — data, teacher, accuracy with its interval, FLOPs, latency, how each
  was measured, and code that loads each format written (a test runs it).

Weights are kept for every certification candidate (the recommendation is always a certified
one): for each, the fresh seed with the best *validation* accuracy, the file whose own test
gap was certified.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench import fmt
from bench.config import DEFAULT_MAX_GAP
from bench.config.recipe import RECIPE_KEYS, recipe_defaults_dropped
from bench.config.suite import RECIPE_SEARCH
from bench.decision import claims
from bench.decision.recommend import Constraints, by_form, recommend, ship_forms
from bench.durable.jsonsafe import json_safe
from bench.durable.rundir import atomic_write_bytes, atomic_write_text, check_writable, inside
from bench.errors import InputError
from bench.latency.onnx import has_dynamic_batch, onnx_bytes, onnx_predict, raw_input_model
from bench.records import Run, TaskEntry, load_run, read_weights, row_arch
from bench.run.pull import write_students
from bench.ship.serialize import FORMATS, available, safetensors_bytes
from bench.study import StorageSpec, open_storage
from kdcore import build_student

__all__ = ["export_student"]


def _pick(run: Run, task: str, trial: int | None, constraints: Constraints) -> dict[str, Any]:
    trials = run.trials[run.trials["task"] == task]
    if trial is None:
        rec = recommend(run.trials, constraints, task, run.seeds)
        if rec.chosen is None:
            raise InputError(
                f"The run {run.run_dir} must have a student meeting {claims.describe(constraints)} to "
                "export it. It has none: choose one with --trial N, or relax the constraints."
            )
        return rec.chosen
    rows = trials[(trials["trial"] == trial) & (trials["state"] == "complete")]
    cert = rows[rows["phase"] == "certify"].sort_values("certify_round")
    if cert.empty:
        known = sorted({int(t) for t in trials.loc[trials["phase"] == "certify", "trial"]})
        raise InputError(
            f"The '--trial' option must name a certification candidate of task '{task}' "
            f"(weights are kept for every candidate: {known or 'none'}). Got {trial} instead."
        )
    return cert.iloc[-1].to_dict()


def _as_form(row: dict[str, Any], form: str) -> dict[str, Any]:
    """The chosen student's row as its certified ``form`` (``--form``), or one line on why not."""
    forms = ship_forms(pd.DataFrame([row]))
    if form not in forms:
        raise InputError(
            f"The '--form' option must name one of the run's [ship] forms ({', '.join(forms)}). "
            f"Got {form!r} instead."
        )
    (as_form,) = by_form(pd.DataFrame([row])).query("form == @form").to_dict("records")
    mark = as_form.get("certified")
    if mark is None or pd.isna(mark) or not bool(mark):
        raise InputError(
            f"The '--form' option must name a form certified for trial {int(row['trial'])}. Got "
            f"{form!r}, whose bound is {fmt.pct(as_form.get('certify_bound'))} pp (not certified)."
        )
    return as_form


def _weights_file(run: Run, task: str, trial: int, seed: int) -> Path:
    """The kept student's file, fetched from the artifact store its trial names when the
    run folder lacks it (its study journal says where)."""
    path = run.run_dir / "students" / task / f"trial-{trial}-seed-{seed}.pt"
    journal = run.run_dir / "study.journal"
    if not path.is_file() and journal.is_file():
        storage = open_storage(StorageSpec(path=str(journal)))
        problems = write_students(run.run_dir, storage, run.manifest.study, [task])
        mine = [p for p in problems if p.startswith(str(path.relative_to(run.run_dir)))]
        if mine:
            raise InputError(
                f"The artifact store must hold the weights of trial {trial} of task '{task}'. "
                f"It does not: {mine[0]}."
            )
    if not path.is_file():
        raise InputError(
            f"The run folder {run.run_dir} must hold the weights of trial {trial} of task "
            f"'{task}' ({path.relative_to(run.run_dir)}). It does not: the study holds them, and "
            f"`kdbench pull --storage {run.run_dir / 'study.journal'} --study "
            f"{run.manifest.study} --out DIR` rebuilds a run folder with them."
        )
    return path


def export_student(
    run_dir: Path,
    out_dir: Path,
    *,
    trial: int | None = None,
    task: str | None = None,
    constraints: Constraints | None = None,
    formats: Sequence[str] | None = None,
    form: str | None = None,
) -> list[Path]:
    """Write the student of ``run_dir`` (recommended, or ``trial``) into ``out_dir`` in
    ``formats`` (default: every one of :data:`bench.ship.serialize.FORMATS` whose dependencies are
    installed); return the files written."""
    chosen_formats = _formats(formats)
    run = load_run(run_dir)
    tasks = list(dict.fromkeys(run.trials["task"]))
    if task is None:
        task = tasks[0]
    elif task not in tasks:
        raise InputError(
            f"The '--task' option must name a task of this run ({', '.join(tasks)}). Got {task!r} instead."
        )
    check_writable(Path(out_dir), "The output folder (--out)")
    row = _pick(run, task, trial, constraints or Constraints(max_gap=DEFAULT_MAX_GAP))
    if form is not None:
        row = _as_form(row, form)
    number = int(row["trial"])
    seed = int(row["file_seed"])
    weights = _weights_file(run, task, number, seed)
    state = read_weights(run.run_dir, weights)
    meta = run.manifest.task(task)
    suite = run.manifest.suite
    family = str(row["family"])
    arch = row_arch(row, family)
    file_acc = _file_acc(run, task, number, seed)
    prep = meta.preprocessing
    blob = _blob(run, task, row, arch, state, meta, file_acc)
    files: dict[str, bytes | str] = {}
    if "torch" in chosen_formats:
        buf = io.BytesIO()
        torch.save(blob, buf)
        files["student.pt"] = buf.getvalue()
    if "safetensors" in chosen_formats:
        sidecar = {k: v for k, v in blob.items() if k != "state_dict"}
        sidecar["preprocessing"] = prep or None
        files["student.safetensors"], files["student.json"] = safetensors_bytes(
            state, json_safe(sidecar)
        )
    checks: list[str] = []
    form = str(row.get("form") or "fp32")
    if form != "fp32":  # the certified file is that form: it ships whatever --format says
        model = build_student(family, meta.input_shape, meta.num_classes, **arch)
        model.load_state_dict(state)
        files["student.onnx"], check = _form_onnx(run, task, meta, model, row, form)
        checks.append(check)
    elif "onnx" in chosen_formats:
        files["student.onnx"], check = _onnx(run, task, meta, family, arch, state, file_acc)
        checks.append(check)
    if meta.tokenizer:  # a text student is fed by the run's tokenizer
        files["tokenizer.json"] = inside(run.run_dir, meta.tokenizer).read_text()
    files["student.toml"] = _toml(suite, family, arch, row)
    files["MODEL_CARD.md"] = _card(run, task, row, file_acc, meta, list(files), checks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():  # everything built and checked before the first write
        path = inside(out, name)
        if isinstance(data, bytes):
            atomic_write_bytes(path, data)
        else:
            atomic_write_text(path, data)
        written.append(path)
    return written


def _file_acc(run: Run, task: str, number: int, seed: int) -> float:
    """The certified test accuracy of the file trained with ``seed`` (NaN where none)."""
    seeds = run.seeds
    mine = seeds[
        (seeds["task"] == task)
        & (seeds["phase"] == "certify")
        & (seeds["trial"] == number)
        & (seeds["seed"] == seed)
    ]
    return float(mine["student_acc"].iloc[0]) if len(mine) else math.nan


def _blob(
    run: Run,
    task: str,
    row: dict[str, Any],
    arch: dict[str, Any],
    state: dict[str, torch.Tensor],
    meta: TaskEntry,
    file_acc: float,
) -> dict[str, Any]:
    """What ``student.pt`` holds: the weights and all a user needs to rebuild and feed them
    (a Hugging Face student also its transformers config, ``hf_config``)."""
    prep = meta.preprocessing
    family = str(row["family"])
    extra: dict[str, Any] = {}
    if family.startswith("hf:"):
        from bench.models.library_code import hf_config

        extra["hf_config"] = json_safe(hf_config(family, meta.input_shape, meta.num_classes, arch))
    if meta.tokenizer:
        extra["tokenizer"] = "tokenizer.json"
    if meta.normalization:
        extra["normalization"] = json_safe(meta.normalization)
    return extra | {
        "input_kind": meta.input_kind,
        "state_dict": state,
        "family": str(row["family"]),
        "arch": arch,
        "input_shape": list(meta.input_shape),
        "num_classes": int(meta.num_classes),
        "class_names": list(meta.class_names),
        "preprocessing": None
        if not prep
        else {
            "mean": torch.tensor(prep["mean"], dtype=torch.float64),
            "scale": torch.tensor(prep["scale"], dtype=torch.float64),
        },
        "provenance": {
            "run_id": run.manifest.run_id,
            "task": task,
            "trial": int(row["trial"]),
            "seed": int(row["file_seed"]),
            "temperature": float(row["temperature"]),
            "alpha": float(row["alpha"]),
            "test_acc": file_acc,
            "suite_sha256": run.manifest.suite_sha256,
            "git_commit": str(run.manifest.git.get("commit")),
        },
    }


def _formats(formats: Sequence[str] | None) -> list[str]:
    """The formats asked for (checked), or every one that can be written here."""
    can = available()
    if formats is None:
        return [f for f in FORMATS if can[f] is None]
    for f in formats:
        if f not in FORMATS:
            raise InputError(
                f"The '--format' option must list formats among {', '.join(FORMATS)}. Got {f!r} instead."
            )
        if can[f] is not None:
            raise InputError(
                f"The '--format' option must list formats whose dependencies are installed: "
                f"{f} {can[f]}. Got {f!r} instead."
            )
    return list(dict.fromkeys(formats))


def _raw_test(run: Run, task: str, meta: TaskEntry) -> tuple[np.ndarray, np.ndarray] | str:
    """The task's test rows unscaled, as the run split them, or why they cannot be read."""
    splits = _raw_splits(run, task, meta)
    return splits if isinstance(splits, str) else splits["test"]


_STREAMED_CHECK_BYTES = 512 * 2**20


def _streamed_test(
    run: Run, cfg: Any, meta: TaskEntry
) -> dict[str, tuple[np.ndarray, np.ndarray]] | str:
    """A streamed task's test rows, raw (pixel values 0–255, or token ids) and as the run's
    dataset normalised them, and the calibration rows certification drew from its training
    split — from the split the run wrote (``splits-<task>.csv``) and the source listed again;
    or why not: a split larger than 512 MiB as float32 rows is not read into memory here."""
    if not meta.splits:
        return "the run kept no split file of this streamed task"
    frame = pd.read_csv(inside(run.run_dir, meta.splits), dtype={"id": str}, keep_default_na=False)
    test = frame[frame["split"] == "test"]
    size = len(test) * int(np.prod(meta.input_shape)) * 4
    if size > _STREAMED_CHECK_BYTES:
        return (
            f"its test split ({len(test):,} examples, {size / 2**30:.1f} GiB as float32 rows) is "
            "not read into memory for this check"
        )
    entries = cfg.entries(None)
    index = {k: i for i, k in enumerate(entries.ids)}
    missing = [k for k in frame["id"] if k not in index]
    if missing:
        return f"example {missing[0]!r} of the run's split is no longer in the source"
    y = test["label"].to_numpy(dtype=np.int64)
    test_rows = np.asarray([index[k] for k in test["id"]], dtype=np.int64)
    if not np.array_equal(entries.labels[test_rows], y):
        return "the labels of the test split changed since the run"
    # the training split in the run's order (the source's), and certification's draw from it
    train_rows = np.sort([index[k] for k in frame.loc[frame["split"] == "train", "id"]])
    n_calib = int(run.manifest.suite.get("ship", {}).get("calibration_rows", 256))
    draw = np.random.default_rng(0).choice(
        len(train_rows), size=min(n_calib, len(train_rows)), replace=False
    )
    calib_rows = train_rows[np.sort(draw)]

    def read(rows: np.ndarray, normalised: bool) -> np.ndarray:
        part = entries.subset(rows)
        if meta.input_kind == "tokens":
            from bench.tasks.hf import HFTexts

            tok = inside(run.run_dir, meta.tokenizer).read_text()
            data: Any = HFTexts(part, tok, int(meta.input_shape[0]))
        else:
            from bench.tasks.images import ImageFiles

            c, h, w = (int(v) for v in meta.input_shape)
            per = h * w
            prep = meta.preprocessing or {}
            mean = [float(prep["mean"][k * per]) / 255.0 for k in range(c)] if prep else None
            std = [float(prep["scale"][k * per]) / 255.0 for k in range(c)] if prep else None
            data = ImageFiles(
                part, channels=c, size=(h, w), mean=mean if normalised else None,
                std=std if normalised else None,
            )  # fmt: skip
        x = torch.stack([data[i][0] for i in range(len(data))]).numpy()
        if meta.input_kind != "tokens" and not normalised:
            x = (x * np.float32(255.0)).round().astype(np.float32)  # raw pixel values
        return x

    return {
        "test": (read(test_rows, False), y),
        "test_standardised": (read(test_rows, True), y),
        "calibration": (read(calib_rows, True), y[:0]),
    }


def _raw_splits(
    run: Run, task: str, meta: TaskEntry
) -> dict[str, tuple[np.ndarray, np.ndarray]] | str:
    """The task's train and test rows unscaled, as the run split them, or why they cannot
    be read."""
    from bench.config.suite import suite_from_dict
    from bench.tasks.base import split_task

    try:
        cfg = next(c for c in suite_from_dict(run.manifest.suite).tasks if c.name == task)
        if hasattr(cfg, "open_stream"):
            return _streamed_test(run, cfg, meta)
        raw = cfg.load()  # type: ignore[attr-defined]
        tokenizer = inside(run.run_dir, meta.tokenizer).read_text() if meta.tokenizer else ""
        data = split_task(cfg, raw, tokenizer_json=tokenizer)
    except (InputError, OSError, StopIteration) as exc:
        return f"the task's data could not be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if data.data_sha256() != meta.data_sha256:
        return "the task's data changed since the run (another sha256)"
    out = {}
    for split in ("train", "test"):
        x, y = data.split(split)
        if meta.input_kind == "tokens":  # the raw rows of a text student are token ids
            out[split] = x.numpy(), y.numpy()
            continue
        rows = data.rows[split]
        raw_x = np.asarray(raw.x, dtype=np.float64)[rows].reshape(len(rows), *meta.input_shape)
        out[split] = raw_x, y.numpy()
    return out


def _onnx(
    run: Run,
    task: str,
    meta: TaskEntry,
    family: str,
    arch: dict[str, Any],
    state: dict[str, torch.Tensor],
    file_acc: float,
) -> tuple[bytes, str]:
    """``student.onnx`` on raw rows, and the card's line on its check with onnxruntime on the
    task's test split (the file's predictions must give the card's accuracy)."""
    model = build_student(family, meta.input_shape, meta.num_classes, **arch)
    model.load_state_dict(state)
    raw_model, how = raw_input_model(model, meta.input_shape, meta.preprocessing)
    vocab = meta.data_params.get("vocab_size") if meta.input_kind == "tokens" else None
    data = onnx_bytes(raw_model, meta.input_shape, vocab=vocab)
    dynamic = has_dynamic_batch(data)
    if not dynamic:  # the family's code fixed the batch: ship the one-row graph
        data = onnx_bytes(raw_model, meta.input_shape, 1, vocab)
    batching = (
        "of any batch size" if dynamic else "one at a time (the family's code fixes the batch)"
    )
    prep = {
        "folded": "the standardisation folded into its first linear layer: W' = W / scale, "
        "b' = b − W'·mean",
        "node": "the standardisation a node before the model",
        "none": "token ids in (the tokenizer is tokenizer.json)"
        if vocab is not None
        else "no standardisation: the task ran with scale = false",
    }[how]
    test = _raw_test(run, task, meta)
    if isinstance(test, str):
        return data, f"`student.onnx` takes raw rows, {prep}. Not checked here: {test}."
    x, y = test
    acc = float((onnx_predict(data, x, 4096 if dynamic else 1) == y).mean())
    if not math.isclose(acc, file_acc, abs_tol=0.5 / len(y)):
        raise RuntimeError(
            f"the ONNX export of {family} {json.dumps(arch)} gives {acc:.6f} in onnxruntime on "
            f"the test split, not the file's {file_acc:.6f}: nothing was written"
        )
    return data, (
        f"`student.onnx` takes raw rows {batching}, {prep}. Checked: onnxruntime "
        f"{_version('onnxruntime')} on the {fmt.count(len(y))} raw test rows gives {fmt.pct(acc)} %, "
        "this card's accuracy."
    )


def _form_onnx(
    run: Run, task: str, meta: TaskEntry, model: torch.nn.Module, row: dict[str, Any], form: str
) -> tuple[bytes, str]:
    """The certified ``form`` of the file as ``student.onnx`` on raw rows, rebuilt exactly as
    certification built it (the fp32 graph on standardised rows, onnxruntime's quantiser, the
    same calibration rows of the training split) and refused unless it gives the certified
    test accuracy; then the standardisation in front (:func:`bench.latency.forms.
    with_standardisation`), checked on the raw test rows."""
    from bench.latency.forms import (
        FormModel,
        build_form,
        calibration_rows,
        form_provider,
        with_standardisation,
    )

    splits = _raw_splits(run, task, meta)
    if isinstance(splits, str):
        raise InputError(
            f"The run's task data must be readable to rebuild its certified {form} form. Got: "
            f"{splits}."
        )
    prep = meta.preprocessing if meta.input_kind != "tokens" else None

    def standardised(x: np.ndarray) -> np.ndarray:
        if not prep:
            return x
        flat = x.reshape(len(x), -1)
        out = (flat - np.asarray(prep["mean"])) / np.asarray(prep["scale"])
        return out.astype(np.float32).reshape(x.shape)

    vocab = meta.data_params.get("vocab_size") if meta.input_kind == "tokens" else None
    n_calib = int(run.manifest.suite.get("ship", {}).get("calibration_rows", 256))
    x_test, y_test = splits["test"]
    if "calibration" in splits:  # streamed: the rows as the run's dataset normalised them
        calib, x_std = splits["calibration"][0], splits["test_standardised"][0]
    else:
        calib = calibration_rows(standardised(splits["train"][0]), n_calib)
        x_std = standardised(x_test)
    graph = build_form(onnx_bytes(model.eval(), meta.input_shape, vocab=vocab), form, calib)
    acc = float((FormModel(graph, form).logits(x_std).argmax(-1) == y_test).mean())
    certified = float(row.get(f"file_acc_{form}", math.nan))
    if not math.isclose(acc, certified, abs_tol=0.5 / len(y_test)):
        raise RuntimeError(
            f"the {form} form rebuilt from the file gives {acc:.6f} on the test split, not the "
            f"certified {certified:.6f}: nothing was written"
        )
    shipped = with_standardisation(graph, meta.input_shape, prep)
    raw_acc = float((FormModel(shipped, form).logits(x_test).argmax(-1) == y_test).mean())
    return shipped, (
        f"`student.onnx` is the certified **{form}** form (onnxruntime {_version('onnxruntime')}, "
        f"{form_provider(form)}), on raw rows of any batch size"
        + (", the standardisation a float32 graph in front of it" if prep else "")
        + f". The certificate is about this file, not `student.pt` (its fp32 source). Checked: "
        f"rebuilt from the file as certification built it, it gives {fmt.pct(acc)} % on the "
        f"{fmt.count(len(y_test))} test rows (the certified accuracy); on the raw rows "
        f"{fmt.pct(raw_acc)} %."
        + (
            " Its activations are quantised with ranges over each call's input: the certified "
            "predictions are one row per call, and rows batched together may be predicted "
            "otherwise."
            if form == "int8_dynamic"
            else ""
        )
    )


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


def _toml(suite: dict[str, Any], family: str, arch: dict[str, Any], row: dict[str, Any]) -> str:
    """The ``[student]`` (the trial's own recipe: the suite's, with the keys ``[search]``
    sampled for it), ``[augment]`` when the run augmented, and ``[search]`` fixed to the
    trial's values."""
    import tomli_w

    st = dict(suite["student"])
    st |= {k: float(row[k]) for k in RECIPE_SEARCH if k in row and row[k] == row[k]}
    recipe = recipe_defaults_dropped({k: st[k] for k in RECIPE_KEYS if k in st})
    student = {"family": family} | {
        k: st[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "patience")
    }
    augment = suite.get("augment") or {}
    on = any(augment.get(k) for k in ("random_crop", "hflip", "mixup"))
    search = dict(arch) | {"temperature": float(row["temperature"]), "alpha": float(row["alpha"])}
    data = {"student": student | recipe} | ({"augment": augment} if on else {}) | {"search": search}
    header = (
        "# The exported student's configuration: paste into a suite to train it again\n"
        "# (kdbench run SUITE trains students with these fixed values).\n"
    )
    return header + tomli_w.dumps(data)


def _transfer_lines(transfer: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """The card's account of a [transfer] set: what the student learned from, and the bias
    shift its user must add (the file is the network as trained)."""
    if not transfer:
        return []
    omitted = transfer.get("omit_classes") or []
    lines = [
        f"- Learned from a transfer set: {fmt.count(transfer.get('labelled_rows', 0))} labelled rows "
        f"(fraction {transfer.get('fraction', 1.0):g} of each class of the training split"
        + (f", without class(es) {', '.join(map(str, omitted))}" if omitted else "")
        + f") and {fmt.count(transfer.get('unlabeled_rows', 0))} unlabeled rows; the teacher learned "
        "from the whole training split."
    ]
    shift = row.get("bias_shift")
    if omitted and shift is not None and shift == shift:
        lines.append(
            f"- Bias correction: this configuration's students gain accuracy on the omitted "
            f"classes when their logits are raised by {fmt.number(shift, 3)} (chosen on "
            "validation; the mean over seeds, each seed's own in seeds.csv). Omitted-class test "
            f"accuracy {fmt.pct(row.get('omitted_acc'))} "
            f"→ {fmt.pct(row.get('omitted_acc_corrected'))} %). The file is the network as "
            "trained: add the shift to those classes' output biases to use it."
        )
    return lines


# Long by design: the model card is one Markdown document read top to bottom; its sections
# share the row, the manifest and the formatters.
def _card(
    run: Run,
    task: str,
    row: dict[str, Any],
    file_acc: float,
    meta: TaskEntry,
    files: list[str],
    checks: list[str],
) -> str:
    seed, family = int(row["file_seed"]), str(row["family"])
    arch = row_arch(row, family)
    m = run.manifest
    teacher = meta.teacher

    def pct(v):
        return fmt.pct(v) + " %"

    def pp(v):
        return fmt.pct(v, signed=True) + " pp"

    source = meta.data_source
    warnings = claims.warnings_for(row)
    lines = [
        f"# Model card: {row['arch']} ({family}), distilled by kdbench",
        "",
        f"Run `{m.run_id}`, task `{task}`, trial {int(row['trial'])} (certification round "
        f"{int(row['certify_round'])}), seed {seed} (of its {int(row['n_seeds'])} fresh seeds, the "
        "one with the best validation accuracy).",
        "",
        "## The claim",
        *claims.card_claim(row),
        f"- This file's gap: {pp(row['file_gap'])}, 95 % interval [{pp(row['file_gap_ci_low'])}, "
        f"{pp(row['file_gap_ci_high'])}] (Tango's paired score interval on "
        f"{fmt.count(row['n_test'])} test examples: the test-set error).",
        f"- Training this recipe again gives a gap in [{pp(row.get('acc_gap_pi_low'))}, "
        f"{pp(row.get('acc_gap_pi_high'))}] (95 % prediction interval).",
        "",
        "## What it is",
        f"- Family `{family}`, architecture {json.dumps(arch)}: {fmt.count(row['student_params'])} parameters, "
        f"{fmt.count(row['student_flops'])} FLOPs per sample (2 per multiply-add, forward pass).",
        f"- Input shape {list(meta.input_shape)}, {meta.num_classes} classes: {', '.join(meta.class_names)}.",
        _preprocessing_line(meta),
        f"- Distilled with temperature {fmt.number(row['temperature'], 3)} and alpha {fmt.number(row['alpha'], 3)} "
        f"(alpha · T² · KL(teacher ‖ student) + (1 − alpha) · cross-entropy).",
        f"- Trained with {row.get('recipe') or 'adam, constant'}; views: "
        f"{row.get('augment') or 'none'} (the teacher saw the same views).",
        "",
        "## Data",
        f"- Task kind `{meta.config.get('kind')}`"
        + (
            f", file `{source.get('path')}` (sha256 {str(source.get('sha256'))[:12]}…)"
            if source.get("path")
            else ""
        )
        + f"; splits {meta.sizes} (stratified; the test split was used only for these numbers).",
        *_transfer_lines(meta.transfer, row),
        "",
        "## Teacher",
        f"- {teacher.members} members ({teacher.arch}), combined by {teacher.combine}; "
        f"source: {teacher.kind}.",
        f"- Ensemble test accuracy {pct(row['ensemble_acc'])}; best single member {pct(row['best_member_acc'])}.",
        "",
        "## Accuracy (test split)",
        f"- **This file: {pct(file_acc)}** on {fmt.count(row.get('n_test'))} test examples "
        "(reproduced exactly by loading it; see `kdbench export --help`).",
        f"- The configuration over {int(row['n_seeds'])} seeds: {pct(row['student_acc'])}, 95 % interval "
        f"[{pct(row['student_acc_ci_low'])}, {pct(row['student_acc_ci_high'])}].",
        f"- Gap to the ensemble: {pp(row['acc_gap'])}, 95 % interval [{pp(row['acc_gap_ci_low'])}, "
        f"{pp(row['acc_gap_ci_high'])}]; relative accuracy {fmt.number(row.get('rel_acc'))} "
        f"(lower bound {fmt.number(row.get('rel_acc_ci_low'))}).",
        f"- Same architecture and seeds without distillation: {pct(row['scratch_acc'])} "
        f"(KD gain {pp(row['kd_gain'])}, 95 % interval [{pp(row['kd_gain_ci_low'])}, {pp(row['kd_gain_ci_high'])}]).",
        "- Intervals: " + str(m.conventions.get("intervals", "")),
        "",
        "## Cost",
        f"- Parameters: {fmt.count(row['student_params'])} ({fmt.ratio(row.get('param_ratio'))} of the ensemble's).",
        f"- CPU latency p50: batch 1 {fmt.ms(row.get('latency_cpu_b1_p50_ms'))}, batch "
        f"{fmt.count(row.get('latency_batch_n'))} {fmt.ms(row.get('latency_cpu_bN_p50_ms'))} "
        f"({fmt.count(row.get('latency_threads'))} thread(s)); speed-up against the faster ensemble "
        f"form at batch 1: {fmt.number(row.get('speedup_cpu_b1'), 2)}x.",
        f"- GPU latency p50, batch 1: {fmt.ms(row.get('latency_gpu_b1_p50_ms'), 'not measured (no GPU)')}.",
        "- Latency protocol: " + str(m.conventions.get("latency", "")),
        f"- Machine: {m.machine.get('cpu_model')}, {m.machine.get('cpu_cores')} cores; GPU: {m.machine.get('gpu') or 'none'}; "
        f"torch {m.packages.get('torch')}.",
        "",
    ]
    lines += _loading(files, checks, family, arch, meta)
    if warnings:
        lines += ["## Warnings", *[f"- {w}" for w in warnings], ""]
    return "\n".join(lines)


def _preprocessing_line(meta: TaskEntry) -> str:
    if meta.input_kind == "tokens":
        return (
            f"- Preprocessing: the run's tokenizer (`tokenizer.json`: "
            f"{meta.data_source.get('tokenizer', 'saved with the run')}), "
            f"{meta.input_shape[0]} token ids per text, 0 = padding (masked)."
        )
    norm = meta.normalization
    if norm:
        return (
            f"- Preprocessing: each image channel normalised as the teacher's model states "
            f"({norm['source']}): (x / {fmt.number(norm['pixel_range'])} − mean_c) / std_c, "
            f"mean {[round(v, 4) for v in norm['mean']]}, std {[round(v, 4) for v in norm['std']]} "
            "(in `student.pt` as the same map per feature: mean and scale)."
        )
    if meta.preprocessing:
        return (
            "- Preprocessing: each feature standardised with the training split's mean and scale "
            "(in `student.pt`; one mean and scale per image channel when the run augmented)."
        )
    return "- Preprocessing: none (the task was run with `scale = false`)."


LOAD_TORCH = """import torch

from kdcore import build_student

blob = torch.load("student.pt", weights_only=True)
model = build_student(blob["family"], blob["input_shape"], blob["num_classes"], **blob["arch"])
model.load_state_dict(blob["state_dict"])
model.eval()  # inputs: (x.reshape(n, -1) - mean) / scale, reshaped to input_shape
"""
LOAD_SAFETENSORS = """import json

from safetensors.torch import load_file

from kdcore import build_student

meta = json.load(open("student.json"))
model = build_student(meta["family"], meta["input_shape"], meta["num_classes"], **meta["arch"])
model.load_state_dict(load_file("student.safetensors"))
model.eval()  # inputs standardised as for student.pt (meta["preprocessing"])
"""
LOAD_ONNX = """import numpy as np
import onnxruntime as ort

session = ort.InferenceSession("student.onnx", providers=["CPUExecutionProvider"])
shape = session.get_inputs()[0].shape[1:]  # the input shape (dimension 0 is the batch)
x = np.zeros((3, *shape), dtype=np.float32)  # raw feature rows: no standardisation
logits = session.run(["logits"], {"x": x})[0]  # [3, num_classes]
"""


LOAD_TOKENS = """from tokenizers import Tokenizer

tok = Tokenizer.from_file("tokenizer.json")
tok.enable_padding(pad_id=0, pad_token=tok.id_to_token(0), length={length})
tok.enable_truncation(max_length={length})
ids = torch.tensor([e.ids for e in tok.encode_batch(["a text to classify"])])
"""


def _loading(
    files: list[str],
    checks: list[str],
    family: str,
    arch: dict[str, Any],
    meta: TaskEntry,
) -> list[str]:
    """The card's "Load it" section: code for each format written (a test runs it). A timm or
    Hugging Face student is rebuilt with its library (``timm.create_model``,
    ``AutoModel….from_config``); a text student's ids come from ``tokenizer.json``."""
    from bench.models.library_code import load_code

    library = load_code(family, arch, meta.input_shape, meta.num_classes)
    torch_code, st_code, onnx_code = LOAD_TORCH, LOAD_SAFETENSORS, LOAD_ONNX
    lib = family.partition(":")[0]
    if library is not None:
        imports, build = library
        torch_code = (
            f"import torch\n{imports}\n\n"
            f'blob = torch.load("student.pt", weights_only=True)\n{build}\n'
        )
        st_code = (
            f"import json\n\nfrom safetensors.torch import load_file\n{imports}\n\n"
            'blob = {"state_dict": load_file("student.safetensors"), **json.load(open("student.json"))}\n'
            f"{build}\n"
        )
    if meta.input_kind == "tokens":
        torch_code += LOAD_TOKENS.format(length=meta.input_shape[0])
        onnx_code = onnx_code.replace(
            "x = np.zeros((3, *shape), dtype=np.float32)  # raw feature rows: no standardisation",
            "x = np.ones((3, *shape), dtype=np.int64)  # token ids (tokenizer.json), 0 = padding",
        )
    with_lib = f", with {'timm' if lib == 'timm' else 'transformers'}" if library else ""
    blocks = [
        ("student.pt", f"PyTorch (`student.pt`{with_lib})", torch_code),
        (
            "student.safetensors",
            f"safetensors (`student.safetensors` + `student.json`{with_lib})",
            st_code,
        ),
        ("student.onnx", "ONNX Runtime (`student.onnx`, raw rows in, logits out)", onnx_code),
    ]
    out = ["## Load it", ""]
    for name, title, code in blocks:
        if name in files:
            out += [f"{title}:", "", "```python", code.rstrip("\n"), "```", ""]
    out += [f"- {c}" for c in checks]
    return [*out, ""] if checks else out
