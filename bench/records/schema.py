"""The column table of the flat trial record: names, dtypes, units, meanings, schema version.

One row per trial (replicate seeds are aggregated into mean / std / 95 % CI columns; the
per-seed values are in ``seeds.csv``, whose columns are the ``per_seed`` rows of
:data:`COLUMNS`). Scalar cells only; "not measured here" is NaN/NA (for example the GPU
columns on a CPU machine), never a missing column. Accuracies and gaps are fractions in
[0, 1] in the files; reports and CLI flags speak in percentage points (pp).

Architecture columns come from the student family's declaration: ``arch`` (the one label,
e.g. ``channels 16 × blocks 2``) and one ``arch_<name>`` column per architecture parameter
(the MLP's ``arch_width`` and ``arch_depth``).
"""

from __future__ import annotations

from typing import NamedTuple

from bench.config.suite import DERIVED_FORMS

__all__ = [
    "ARCH_PREFIX",
    "BETTER",
    "COLUMNS",
    "COLUMN_NAMES",
    "HIGHER_IS_BETTER",
    "KEY_COLUMNS",
    "NOT_JUDGED",
    "SCHEMA_VERSION",
    "SEED_COLUMNS",
    "Column",
    "columns_markdown",
]

# What each schema version changed (version_hint quotes it to a user holding an older folder).
CHANGES = {
    2: "arch / arch_<name> columns, nullable width, depth and teacher cost, family in seeds, "
    "worker and retry_of, state 'duplicate'",
    3: "the legacy width / depth columns dropped (the MLP's are arch_width / arch_depth)",
    4: "the decision certified on fresh seeds: phase 'confirm' became 'certify', the [certify] "
    "table, Student-t seed intervals, acc_gap_pi_*",
    5: "[transfer] columns (transfer_rows, omitted_acc*, bias_shift, full_scratch_acc, ...), "
    "the gap_closed interval, the recipe column",
    6: "the augment column ([augment]); lr, weight_decay, momentum, label_smoothing (the "
    "trial's recipe, which [search] may sample)",
    7: "tolerances are fractions: certify_max_gap (was certify_max_gap_pp) and the manifest's "
    "certify_rounds",
    8: "Tango's score bound for certification; certify_alpha is the round's share of alpha; "
    "certify_seeds, file_kd_gain and its interval, and the discordant counts of every paired "
    "comparison (ens_not_file, …)",
    9: "deployed forms ([ship] forms): per form its validation and test accuracy, gap, bound, "
    "certified mark, file size, agreement with fp32 and onnxruntime latency (file_acc_int8_"
    "dynamic, certify_bound_int8_static, …); certify_alpha is each claim's level (the round's "
    "share over the forms)",
}
SCHEMA_VERSION = max(CHANGES)


def version_hint(version: object) -> str:
    """Why a file of another schema version cannot be read, and what to do about it."""
    if isinstance(version, int) and version < SCHEMA_VERSION:
        since = "; ".join(f"schema {v}: {CHANGES[v]}" for v in sorted(CHANGES) if v > version)
        return (
            f"it was written by an older kdbench (schema {version}; since then, {since}): run "
            "the suite again with this kdbench, or read the folder with the kdbench that wrote it"
        )
    return "it was written by another kdbench version"


class Column(NamedTuple):
    name: str
    dtype: str
    unit: str
    meaning: str
    per_seed: bool = False


def C(name: str, dtype: str, unit: str, meaning: str, per_seed: bool = False) -> Column:
    return Column(name, dtype, unit, meaning, per_seed)


S = True  # per_seed: the column also exists, per replicate seed, in seeds.csv
COLUMNS: tuple[Column, ...] = (
    C("schema_version", "int64", "-", "version of this column set"),
    C("run_id", "string", "-", "run folder name: UTC start time and suite name", S),
    C("task", "string", "-", "task name from the suite", S),
    C(
        "trial",
        "int64",
        "-",
        "Optuna trial number (per task); a certify row keeps its search trial's",
        S,
    ),
    C(
        "phase",
        "string",
        "-",
        "'search' (Optuna sweep) or 'certify' (a candidate trained again on fresh seeds and "
        "tested once; bench.decision.protocol)",
        S,
    ),
    C(
        "state",
        "string",
        "-",
        "'complete', 'fail', 'pruned' or 'duplicate' (a configuration already trained: not trained again)",
    ),
    C(
        "fail_reason",
        "string",
        "-",
        "why the trial failed, was pruned or is a duplicate; empty otherwise",
    ),
    C("family", "string", "-", "student family (registry name)", S),
    C("arch", "string", "-", "the architecture as one label, e.g. 'width 32 × depth 2'", S),
    C("temperature", "float64", "-", "distillation temperature T", S),
    C(
        "alpha",
        "float64",
        "-",
        "weight of the T²-scaled soft term; 1 - alpha weighs hard-label CE",
        S,
    ),
    C("n_seeds", "int64", "-", "replicate seeds trained for this trial"),
    C("seed", "int64", "-", "first replicate seed (seeds are seed, seed+1, …)", S),
    C("student_params", "int64", "params", "parameters of one student"),
    C(
        "ensemble_params",
        "Int64",
        "params",
        "parameters of the whole teacher ensemble (NA: offline logits of unknown architecture)",
    ),
    C("param_ratio", "float64", "-", "student_params / ensemble_params"),
    C("student_flops", "int64", "FLOPs", "forward FLOPs per sample (2 per multiply-add)"),
    C("student_macs", "int64", "MACs", "forward multiply-adds per sample = student_flops / 2"),
    C(
        "ensemble_flops",
        "Int64",
        "FLOPs",
        "forward FLOPs per sample of all ensemble members (NA: unknown architecture)",
    ),
    C("flops_ratio", "float64", "-", "student_flops / ensemble_flops"),
    C(
        "student_acc",
        "float64",
        "fraction",
        "test accuracy of the distilled student, mean over seeds",
        S,
    ),
    C("student_acc_std", "float64", "fraction", "sample std over seeds (NaN for 1 seed)"),
    C(
        "student_acc_ci_low",
        "float64",
        "fraction",
        "95 % interval of student_acc, lower bound: the seeds' error (Student-t) and the "
        "test-set error (per example, at least Wilson's binomial interval on n_test)",
    ),
    C(
        "student_acc_ci_high",
        "float64",
        "fraction",
        "95 % interval of student_acc, upper bound (seeds' and test-set error, as _ci_low)",
    ),
    C("n_test", "Int64", "examples", "test examples every accuracy of the row is measured on"),
    C(
        "ens_not_best",
        "Int64",
        "examples",
        "test examples the ensemble gets right and its best member (chosen on validation) wrong",
    ),
    C(
        "best_not_ens",
        "Int64",
        "examples",
        "test examples the best member gets right and the ensemble wrong (with ens_not_best: "
        "whether the ensemble beats its best member, paired)",
    ),
    C("ensemble_acc", "float64", "fraction", "test accuracy of the teacher ensemble"),
    C(
        "best_member_acc",
        "float64",
        "fraction",
        "test accuracy of the best single member (best on val)",
    ),
    C("mean_member_acc", "float64", "fraction", "mean test accuracy of the members"),
    C(
        "acc_gap",
        "float64",
        "fraction",
        "ensemble_acc - student_acc (mean over seeds); > 0 = student worse",
    ),
    C(
        "acc_gap_ci_low",
        "float64",
        "fraction",
        "95 % interval of acc_gap, lower bound: the recipe's seeds' error (Student-t) "
        "combined with the test-set error (per-example paired, at least Newcombe's paired "
        "interval on n_test; bench.stats.paired_intervals)",
    ),
    C(
        "acc_gap_ci_high",
        "float64",
        "fraction",
        "95 % interval of acc_gap, upper bound (seeds' and test-set error, as _ci_low)",
    ),
    C(
        "acc_gap_pi_low",
        "float64",
        "fraction",
        "95 % prediction interval of the gap of one more training run of this configuration, "
        "lower bound: seed part t · s · sqrt(1 + 1/S) with the test-set error as acc_gap_ci's",
    ),
    C(
        "acc_gap_pi_high",
        "float64",
        "fraction",
        "95 % prediction interval of the gap, upper bound (test-set error included)",
    ),
    C("rel_acc", "float64", "-", "student_acc / ensemble_acc (MLPerf-style relative accuracy)"),
    C(
        "rel_acc_ci_low",
        "float64",
        "-",
        "1 - acc_gap_ci_high / ensemble_acc (used by --min-relative-acc; seeds' and test-set "
        "error, as acc_gap_ci)",
    ),
    C(
        "rel_acc_ci_high",
        "float64",
        "-",
        "1 - acc_gap_ci_low / ensemble_acc (test-set error included, as acc_gap_ci)",
    ),
    C(
        "gap_to_best_member",
        "float64",
        "fraction",
        "best_member_acc - student_acc (the best member chosen on validation)",
    ),
    C(
        "gap_to_best_member_ci_low",
        "float64",
        "fraction",
        "95 % interval of gap_to_best_member, lower bound: paired with the member on each "
        "test example, seeds' and test-set error as acc_gap_ci's",
    ),
    C(
        "gap_to_best_member_ci_high",
        "float64",
        "fraction",
        "95 % interval of gap_to_best_member, upper bound (test-set error included)",
    ),
    C(
        "scratch_acc",
        "float64",
        "fraction",
        "test accuracy of the same architecture trained on hard labels, same seeds",
        S,
    ),
    C("kd_gain", "float64", "fraction", "student_acc - scratch_acc, paired per seed, mean", S),
    C(
        "kd_gain_ci_low",
        "float64",
        "fraction",
        "95 % interval of kd_gain, lower bound: paired per seed and per example; the seeds' "
        "error (Student-t) with the test-set error (at least Newcombe's paired interval)",
    ),
    C(
        "kd_gain_ci_high",
        "float64",
        "fraction",
        "95 % interval of kd_gain, upper bound (seeds' and test-set error)",
    ),
    C(
        "generalist_taught_acc",
        "float64",
        "fraction",
        "specialist teachers only (NaN otherwise): test accuracy of the same student (same "
        "seed, T and alpha) taught by the generalist alone, mean over seeds",
        S,
    ),
    C(
        "specialist_gain",
        "float64",
        "fraction",
        "student_acc - generalist_taught_acc, paired per seed, mean (specialist teachers only)",
        S,
    ),
    C(
        "specialist_gain_ci_low",
        "float64",
        "fraction",
        "95 % interval of specialist_gain, lower bound (seeds' and test-set error, as kd_gain_ci)",
    ),
    C(
        "specialist_gain_ci_high",
        "float64",
        "fraction",
        "95 % interval of specialist_gain, upper bound (test-set error included)",
    ),
    C(
        "gap_closed",
        "float64",
        "-",
        "(student - scratch) / (ensemble - scratch); NaN when ensemble <= scratch",
    ),
    C(
        "gap_closed_ci_low",
        "float64",
        "-",
        "95 % percentile-bootstrap interval of gap_closed, lower bound: test examples (the "
        "test-set error) and seeds resampled, student, twin and ensemble paired",
    ),
    C(
        "gap_closed_ci_high",
        "float64",
        "-",
        "95 % interval of gap_closed, upper bound (test-set error included)",
    ),
    C(
        "transfer_rows",
        "Int64",
        "rows",
        "rows the distilled students learn from: the [transfer] set's labelled rows plus its "
        "unlabeled ones (the training split without [transfer])",
    ),
    C("transfer_unlabeled_rows", "Int64", "rows", "unlabeled rows of the [transfer] set"),
    C(
        "n_test_omitted",
        "Int64",
        "examples",
        "test examples of the classes omitted from the transfer set ([transfer] omit_classes)",
    ),
    C(
        "omitted_acc",
        "float64",
        "fraction",
        "test accuracy of the distilled students on the omitted classes' examples, mean over "
        "seeds (NaN without omit_classes)",
        S,
    ),
    C(
        "omitted_acc_ci_low",
        "float64",
        "fraction",
        "95 % interval of omitted_acc, lower bound: the "
        "seeds' error (Student-t) with the test-set error of its own examples (at least Wilson's binomial interval; bench.stats.accuracy_interval)",
    ),
    C(
        "omitted_acc_ci_high",
        "float64",
        "fraction",
        "95 % interval of omitted_acc, upper bound (test-set error included)",
    ),
    C(
        "bias_shift",
        "float64",
        "logit",
        "bias_correction: the shift added to the omitted classes' logits, chosen per student "
        "on validation (mean over seeds)",
        S,
    ),
    C(
        "omitted_acc_corrected",
        "float64",
        "fraction",
        "omitted_acc with the bias shift (bias_correction only)",
        S,
    ),
    C(
        "omitted_acc_corrected_ci_low",
        "float64",
        "fraction",
        "95 % interval of omitted_acc_corrected, lower bound (seeds' and test-set error, as "
        "omitted_acc_ci)",
    ),
    C(
        "omitted_acc_corrected_ci_high",
        "float64",
        "fraction",
        "95 % interval of omitted_acc_corrected, upper bound (test-set error included)",
    ),
    C(
        "student_acc_corrected",
        "float64",
        "fraction",
        "test accuracy on every class with the bias shift (bias_correction only)",
        S,
    ),
    C(
        "student_acc_corrected_ci_low",
        "float64",
        "fraction",
        "95 % interval of student_acc_corrected, lower bound (seeds' and test-set error, as "
        "omitted_acc_ci)",
    ),
    C(
        "student_acc_corrected_ci_high",
        "float64",
        "fraction",
        "95 % interval of student_acc_corrected, upper bound (test-set error included)",
    ),
    C(
        "scratch_omitted_acc",
        "float64",
        "fraction",
        "the scratch twins' test accuracy on the omitted classes' examples (they never saw one)",
        S,
    ),
    C(
        "scratch_omitted_acc_ci_low",
        "float64",
        "fraction",
        "95 % interval of scratch_omitted_acc, lower bound (seeds' and test-set error, as "
        "omitted_acc_ci)",
    ),
    C(
        "scratch_omitted_acc_ci_high",
        "float64",
        "fraction",
        "95 % interval of scratch_omitted_acc, upper bound (test-set error included)",
    ),
    C(
        "full_scratch_acc",
        "float64",
        "fraction",
        "the same architecture trained on hard labels on the whole training split, same seeds "
        "(only when the [transfer] set is a subset: NaN otherwise, where it is scratch_acc)",
        S,
    ),
    C(
        "full_scratch_acc_ci_low",
        "float64",
        "fraction",
        "95 % interval of full_scratch_acc, lower bound (seeds' and test-set error, as "
        "omitted_acc_ci)",
    ),
    C(
        "full_scratch_acc_ci_high",
        "float64",
        "fraction",
        "95 % interval of full_scratch_acc, upper bound (test-set error included)",
    ),
    C(
        "ensemble_gain_kept",
        "float64",
        "-",
        "(student - best member) / (ensemble - best member); NaN when ensemble <= best member",
    ),
    C("agreement", "float64", "fraction", "top-1 agreement of student and ensemble on test", S),
    C(
        "kl_to_teacher",
        "float64",
        "nats",
        "KL(ensemble ‖ student) at T = 1 on test, mean per sample",
        S,
    ),
    C(
        "student_ece",
        "float64",
        "fraction",
        "expected calibration error of the student on test (15 bins)",
        S,
    ),
    C(
        "ensemble_ece",
        "float64",
        "fraction",
        "expected calibration error of the ensemble on test (15 bins)",
    ),
    C(
        "teacher_mean_max_prob",
        "float64",
        "fraction",
        "ensemble's mean max-probability on the transfer (train) set at T = 1",
    ),
    C(
        "student_val_acc",
        "float64",
        "fraction",
        "best validation accuracy of the distilled student (model selection)",
        S,
    ),
    C(
        "scratch_val_acc",
        "float64",
        "fraction",
        "best validation accuracy of the scratch student",
        S,
    ),
    C("ensemble_val_acc", "float64", "fraction", "validation accuracy of the teacher ensemble"),
    C(
        "val_gap",
        "float64",
        "fraction",
        "ensemble_val_acc - student_val_acc (what the certification order uses)",
    ),
    C(
        "best_epoch",
        "float64",
        "epochs",
        "selected epoch of the distilled student, mean over seeds",
        S,
    ),
    C(
        "latency_threads",
        "Int64",
        "threads",
        "CPU threads for the latency_cpu_* columns (NA on pruned and failed rows: not timed)",
    ),
    C(
        "latency_mt_threads",
        "Int64",
        "threads",
        "CPU threads for the latency_cpu_mt_* columns (all cores); NA if off",
    ),
    C(
        "latency_host",
        "string",
        "-",
        "the host that timed this student, in one interleaved pass with the ensemble columns of "
        "this row (NA on rows not timed)",
    ),
    C(
        "latency_batch_n",
        "Int64",
        "samples",
        "the large batch N of the *_bN_* columns (NA on pruned and failed rows)",
    ),
    C(
        "latency_cpu_b1_p50_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch 1, median over timed blocks",
    ),
    C(
        "latency_cpu_b1_p90_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch 1, 90th percentile of individually timed calls",
    ),
    C(
        "latency_cpu_b1_p99_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch 1, 99th percentile of individually timed calls",
    ),
    C(
        "latency_cpu_b1_iqr_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch 1, inter-quartile range over blocks",
    ),
    C(
        "latency_cpu_bN_p50_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch N, median over timed blocks",
    ),
    C(
        "latency_cpu_bN_p90_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch N, 90th percentile of individually timed calls",
    ),
    C(
        "latency_cpu_bN_p99_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch N, 99th percentile of individually timed calls",
    ),
    C(
        "latency_cpu_bN_iqr_ms",
        "float64",
        "ms",
        "student latency per call, CPU, batch N, inter-quartile range over blocks",
    ),
    C(
        "latency_gpu_b1_p50_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch 1, median over timed blocks",
    ),
    C(
        "latency_gpu_b1_p90_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch 1, 90th percentile of individually timed calls",
    ),
    C(
        "latency_gpu_b1_p99_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch 1, 99th percentile of individually timed calls",
    ),
    C(
        "latency_gpu_b1_iqr_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch 1, inter-quartile range over blocks",
    ),
    C(
        "latency_gpu_bN_p50_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch N, median over timed blocks",
    ),
    C(
        "latency_gpu_bN_p90_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch N, 90th percentile of individually timed calls",
    ),
    C(
        "latency_gpu_bN_p99_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch N, 99th percentile of individually timed calls",
    ),
    C(
        "latency_gpu_bN_iqr_ms",
        "float64",
        "ms",
        "student latency per call, GPU, batch N, inter-quartile range over blocks",
    ),
    C("latency_cpu_b1_noisy", "boolean", "-", "IQR / median > 10 % for latency_cpu_b1"),
    C("latency_cpu_bN_noisy", "boolean", "-", "IQR / median > 10 % for latency_cpu_bN"),
    C(
        "latency_gpu_b1_noisy",
        "boolean",
        "-",
        "IQR / median > 10 % for latency_gpu_b1 (NA without GPU)",
    ),
    C(
        "latency_gpu_bN_noisy",
        "boolean",
        "-",
        "IQR / median > 10 % for latency_gpu_bN (NA without GPU)",
    ),
    C("throughput_cpu_bN_per_s", "float64", "samples/s", "N / latency_cpu_bN_p50"),
    C(
        "throughput_gpu_bN_per_s",
        "float64",
        "samples/s",
        "N / latency_gpu_bN_p50 (NaN without GPU)",
    ),
    C(
        "latency_ort_cpu_b1_p50_ms",
        "float64",
        "ms",
        "student exported to ONNX and run in onnxruntime, CPU, batch 1, median over timed blocks (NaN when "
        "onnxruntime is not installed or not in [measure] runtimes)",
    ),
    C(
        "latency_ort_cpu_b1_p90_ms",
        "float64",
        "ms",
        "student exported to ONNX and run in onnxruntime, CPU, batch 1, 90th percentile of individually timed calls (NaN when "
        "onnxruntime is not installed or not in [measure] runtimes)",
    ),
    C(
        "latency_ort_cpu_b1_p99_ms",
        "float64",
        "ms",
        "student exported to ONNX and run in onnxruntime, CPU, batch 1, 99th percentile of individually timed calls (NaN when "
        "onnxruntime is not installed or not in [measure] runtimes)",
    ),
    C(
        "latency_ort_cpu_b1_iqr_ms",
        "float64",
        "ms",
        "student exported to ONNX and run in onnxruntime, CPU, batch 1, inter-quartile range over blocks (NaN when "
        "onnxruntime is not installed or not in [measure] runtimes)",
    ),
    C("latency_ort_cpu_b1_noisy", "boolean", "-", "IQR / median > 10 % for latency_ort_cpu_b1"),
    C(
        "latency_ort_cpu_bN_p50_ms",
        "float64",
        "ms",
        "student exported to ONNX and run in onnxruntime, CPU, batch N, median over timed blocks (NaN when "
        "onnxruntime is not installed or not in [measure] runtimes)",
    ),
    C(
        "latency_ort_cpu_bN_p90_ms",
        "float64",
        "ms",
        "student exported to ONNX and run in onnxruntime, CPU, batch N, 90th percentile of individually timed calls (NaN when "
        "onnxruntime is not installed or not in [measure] runtimes)",
    ),
    C(
        "latency_ort_cpu_bN_p99_ms",
        "float64",
        "ms",
        "student exported to ONNX and run in onnxruntime, CPU, batch N, 99th percentile of individually timed calls (NaN when "
        "onnxruntime is not installed or not in [measure] runtimes)",
    ),
    C(
        "latency_ort_cpu_bN_iqr_ms",
        "float64",
        "ms",
        "student exported to ONNX and run in onnxruntime, CPU, batch N, inter-quartile range over blocks (NaN when "
        "onnxruntime is not installed or not in [measure] runtimes)",
    ),
    C("latency_ort_cpu_bN_noisy", "boolean", "-", "IQR / median > 10 % for latency_ort_cpu_bN"),
    C("throughput_ort_cpu_bN_per_s", "float64", "samples/s", "N / latency_ort_cpu_bN_p50"),
    C(
        "latency_cpu_mt_b1_p50_ms",
        "float64",
        "ms",
        "student latency, CPU, all cores, batch 1, median",
    ),
    C(
        "latency_cpu_mt_bN_p50_ms",
        "float64",
        "ms",
        "student latency, CPU, all cores, batch N, median",
    ),
    C("throughput_cpu_mt_bN_per_s", "float64", "samples/s", "N / latency_cpu_mt_bN_p50"),
    C(
        "ensemble_loop_latency_cpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble run as a Python loop over members, CPU, batch 1, median",
    ),
    C(
        "ensemble_loop_latency_cpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble run as a Python loop over members, CPU, batch N, median",
    ),
    C(
        "ensemble_loop_latency_gpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble run as a Python loop over members, GPU, batch 1, median",
    ),
    C(
        "ensemble_loop_latency_gpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble run as a Python loop over members, GPU, batch N, median",
    ),
    C(
        "ensemble_fused_latency_cpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble run as one batched graph, CPU, batch 1, median",
    ),
    C(
        "ensemble_fused_latency_cpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble run as one batched graph, CPU, batch N, median",
    ),
    C(
        "ensemble_fused_latency_gpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble run as one batched graph, GPU, batch 1, median",
    ),
    C(
        "ensemble_fused_latency_gpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble run as one batched graph, GPU, batch N, median",
    ),
    C(
        "ensemble_loop_latency_ort_cpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble with its members one after another, exported to ONNX and run in onnxruntime, CPU, batch 1, median",
    ),
    C(
        "ensemble_loop_latency_ort_cpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble with its members one after another, exported to ONNX and run in onnxruntime, CPU, batch N, median",
    ),
    C(
        "ensemble_fused_latency_ort_cpu_b1_p50_ms",
        "float64",
        "ms",
        "ensemble as one batched graph, exported to ONNX and run in onnxruntime, CPU, batch 1, median",
    ),
    C(
        "ensemble_fused_latency_ort_cpu_bN_p50_ms",
        "float64",
        "ms",
        "ensemble as one batched graph, exported to ONNX and run in onnxruntime, CPU, batch N, median",
    ),
    C("speedup_cpu_b1_vs_loop", "float64", "x", "ensemble loop / student latency, CPU batch 1"),
    C("speedup_cpu_b1_vs_fused", "float64", "x", "ensemble fused / student latency, CPU batch 1"),
    C(
        "speedup_cpu_b1",
        "float64",
        "x",
        "faster ensemble form / student latency, CPU batch 1 (the honest one)",
    ),
    C(
        "speedup_gpu_b1",
        "float64",
        "x",
        "faster ensemble form / student latency, GPU batch 1 (NaN without GPU)",
    ),
    C(
        "speedup_ort_cpu_b1",
        "float64",
        "x",
        "faster ensemble form / student latency, both in onnxruntime, CPU batch 1",
    ),
    C(
        "certify_round",
        "Int64",
        "-",
        "certify rows: the round (0 = the run's; kdbench certify adds)",
    ),
    C(
        "certify_rank",
        "Int64",
        "-",
        "certify rows: the place in the tested order (0 = first, the largest; validation chose it)",
    ),
    C("certify_max_gap", "float64", "fraction", "certify rows: the tolerance the round certifies"),
    C(
        "certify_alpha",
        "float64",
        "-",
        "certify rows: the level each bound of the round tests at, its share of the run's "
        "alpha (alpha / 2^(round + 1), divided by the number of [ship] forms; "
        "bench.decision.protocol.claim_level)",
    ),
    C(
        "certify_seeds",
        "string",
        "-",
        "certify rows: the round's fresh training seeds, comma-separated",
    ),
    C(
        "file_seed",
        "Int64",
        "-",
        "certify rows: the seed of the shipped file (the best validation accuracy of the fresh seeds)",
    ),
    C("file_acc", "float64", "fraction", "certify rows: the shipped file's test accuracy"),
    C(
        "file_gap",
        "float64",
        "fraction",
        "certify rows: ensemble_acc - file_acc, the shipped file's paired test gap",
    ),
    C(
        "file_gap_ci_low",
        "float64",
        "fraction",
        "95 % interval of file_gap, lower bound: the test-set error (Tango's paired score "
        "interval, half-count continuity correction; one file, no seed error)",
    ),
    C(
        "file_gap_ci_high",
        "float64",
        "fraction",
        "95 % interval of file_gap, upper bound (test-set error included)",
    ),
    C(
        "certify_bound",
        "float64",
        "fraction",
        "certify rows: one-sided 1 - certify_alpha upper bound of file_gap (Tango's score "
        "bound; the test-set error): the statistic certified",
    ),
    C(
        "certified",
        "boolean",
        "-",
        "certify rows: certified by fixed-sequence testing at certify_max_gap and "
        "certify_alpha (every earlier rank passed too)",
    ),
    C("scratch_file_seed", "Int64", "-", "certify rows: the scratch twin's validation-chosen seed"),
    C("scratch_file_acc", "float64", "fraction", "certify rows: that scratch file's test accuracy"),
    C("scratch_file_gap", "float64", "fraction", "certify rows: ensemble_acc - scratch_file_acc"),
    C(
        "scratch_certify_bound",
        "float64",
        "fraction",
        "certify rows: one-sided 1 - certify_alpha upper bound of scratch_file_gap (test-set "
        "error included, as certify_bound)",
    ),
    C(
        "scratch_certified",
        "boolean",
        "-",
        "certify rows: the scratch twin certified the same way (fixed-sequence, its own "
        "family of claims)",
    ),
    C(
        "certify_bound_best_member",
        "float64",
        "fraction",
        "certify rows: one-sided 1 - certify_alpha upper bound of the file's paired test gap to the "
        "best member (what --against best-member certifies; test-set error included)",
    ),
    C(
        "certified_best_member",
        "boolean",
        "-",
        "certify rows: certified against the best member by fixed-sequence testing in the "
        "same validation order, at certify_max_gap and certify_alpha",
    ),
    C(
        "scratch_certify_bound_best_member",
        "float64",
        "fraction",
        "certify rows: scratch_certify_bound against the best member (test-set error included)",
    ),
    C(
        "scratch_certified_best_member",
        "boolean",
        "-",
        "certify rows: the scratch twin certified against the best member",
    ),
    C(
        "ens_not_file",
        "Int64",
        "examples",
        "certify rows: test examples the ensemble gets right and the shipped file wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "file_not_ens",
        "Int64",
        "examples",
        "certify rows: test examples the shipped file gets right and the ensemble wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "best_not_file",
        "Int64",
        "examples",
        "certify rows: test examples the best member gets right and the shipped file wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "file_not_best",
        "Int64",
        "examples",
        "certify rows: test examples the shipped file gets right and the best member wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "ens_not_twin",
        "Int64",
        "examples",
        "certify rows: test examples the ensemble gets right and the scratch twin's file wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "twin_not_ens",
        "Int64",
        "examples",
        "certify rows: test examples the scratch twin's file gets right and the ensemble wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "best_not_twin",
        "Int64",
        "examples",
        "certify rows: test examples the best member gets right and the twin's file wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "twin_not_best",
        "Int64",
        "examples",
        "certify rows: test examples the twin's file gets right and the best member wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "file_not_twin",
        "Int64",
        "examples",
        "certify rows: test examples the shipped file gets right and its scratch twin wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "twin_not_file",
        "Int64",
        "examples",
        "certify rows: test examples the scratch twin gets right and the shipped file wrong (a discordant count: with n_test, any paired bound)",
    ),
    C(
        "file_kd_gain",
        "float64",
        "fraction",
        "certify rows: file_acc - scratch_file_acc, the shipped file's gain over its own "
        "scratch twin (same fresh seeds, chosen the same way), paired on the test examples",
    ),
    C(
        "file_kd_gain_ci_low",
        "float64",
        "fraction",
        "95 % interval of file_kd_gain (Tango's paired score interval: the test-set error), "
        "lower bound",
    ),
    C(
        "file_kd_gain_ci_high",
        "float64",
        "fraction",
        "95 % interval of file_kd_gain, upper bound (test-set error included)",
    ),
    C(
        "train_time_s",
        "float64",
        "s",
        "wall time of the training group (distilled + scratch members, all seeds)",
    ),
    C(
        "trial_time_s",
        "float64",
        "s",
        "wall time of the whole trial incl. evaluation; a pruned or failed trial: the time "
        "it ran before it stopped (a group's time shared equally among its trials)",
    ),
    C(
        "group_members",
        "Int64",
        "students",
        "students trained together in this trial's group (NA on rows that trained nothing)",
    ),
    C(
        "train_threads",
        "int64",
        "threads",
        "torch threads of this trial's training group ([measure] train_threads; auto: by size)",
    ),
    C(
        "train_path",
        "string",
        "-",
        "how the students trained: 'grouped' (every member of the group at once, tensors in "
        "memory) or 'stream' (one at a time through a DataLoader, resumable per epoch); "
        "[student] path",
    ),
    C(
        "train_amp",
        "string",
        "-",
        "stream path: the autocast dtype of training ('off', 'bfloat16', 'float16')",
    ),
    C(
        "train_channels_last",
        "boolean",
        "-",
        "stream path: whether the student trained in channels_last memory format",
    ),
    C(
        "resumed_epochs",
        "Int64",
        "epochs",
        "stream path: epochs of the group's members found in checkpoints when the trial "
        "started (an interrupted trial resumed; 0 otherwise)",
    ),
    C(
        "teacher_targets",
        "string",
        "-",
        "stream path: what the stored soft targets of the training split are (the teacher's "
        "logits, or the log of the members' mean probability at T = 1; top-k when kept)",
    ),
    C(
        "teacher_top_k",
        "Int64",
        "classes",
        "stream path: classes kept per training example of the teacher's outputs (0 = all; "
        "[teacher] top_k)",
    ),
    C(
        "recipe",
        "string",
        "-",
        "how the students trained ([student] optimizer, schedule, warm-up, label smoothing, lr, "
        "weight decay), e.g. 'sgd (momentum 0.9, nesterov), cosine, warm-up 1 epoch(s), lr "
        "0.05, weight decay 0.0005'",
    ),
    C("lr", "float64", "-", "the students' base learning rate ([student] lr, or [search] lr)"),
    C(
        "weight_decay",
        "float64",
        "-",
        "the students' weight decay ([student] weight_decay, or [search] weight_decay)",
    ),
    C(
        "momentum",
        "float64",
        "-",
        "SGD's momentum ([student] momentum, or [search] momentum; unused by adam and adamw)",
    ),
    C(
        "label_smoothing",
        "float64",
        "-",
        "ε of the hard-label term ([student] label_smoothing, or [search] label_smoothing)",
    ),
    C(
        "augment",
        "string",
        "-",
        "the views students and their teacher saw ([augment]): 'none', or e.g. 'crop 1, flip, "
        "mixup 0.2; teacher: 8 views' (or 'teacher: online')",
    ),
    C("worker", "string", "-", "the process that trained the trial: host:pid"),
    C("retry_of", "Int64", "-", "the trial this one retries (its worker died); NA otherwise"),
    C("datetime_utc", "string", "-", "trial end time, ISO 8601 UTC"),
)


def _form_columns() -> tuple[Column, ...]:
    """The deployed forms' columns (``[ship] forms``, bench.latency.forms): certify rows of a
    run with forms beside fp32; NA elsewhere."""
    out = [
        C("ship_forms", "string", "-", "certify rows: the forms certified, e.g. 'fp32,int8_dynamic'"),
        C("file_bytes_fp32", "Int64", "bytes", "certify rows: the shipped file's fp32 ONNX size"),
        C("form_error", "string", "-", "certify rows: forms that could not be built or run, and why"),
    ]  # fmt: skip
    for f in DERIVED_FORMS:
        out += [
            C(f"val_acc_{f}", "float64", "fraction", f"certify rows: the file's {f} form on validation"),
            C(f"file_acc_{f}", "float64", "fraction", f"certify rows: the {f} form's test accuracy (onnxruntime)"),
            C(f"file_gap_{f}", "float64", "fraction", f"certify rows: ensemble_acc - file_acc_{f}, paired on test"),
            C(f"file_gap_ci_low_{f}", "float64", "fraction", f"95 % interval of file_gap_{f}, lower bound (Tango; the test-set error)"),
            C(f"file_gap_ci_high_{f}", "float64", "fraction", f"95 % interval of file_gap_{f}, upper bound (the test-set error)"),
            C(f"certify_bound_{f}", "float64", "fraction", f"certify rows: one-sided 1 - certify_alpha upper bound of file_gap_{f} (Tango's score bound; the test-set error)"),
            C(f"certified_{f}", "boolean", "-", f"certify rows: the {f} form certified by its own fixed sequence (the same validation order) at certify_max_gap and certify_alpha"),
            C(f"ens_not_file_{f}", "Int64", "examples", f"test examples the ensemble gets right and the {f} form wrong"),
            C(f"file_not_ens_{f}", "Int64", "examples", f"test examples the {f} form gets right and the ensemble wrong"),
            C(f"file_bytes_{f}", "Int64", "bytes", f"certify rows: the {f} ONNX file's size"),
            C(f"form_agreement_{f}", "float64", "fraction", f"certify rows: test predictions of the {f} form equal to the fp32 file's"),
            C(f"latency_ort_cpu_{f}_b1_p50_ms", "float64", "ms", f"the {f} form in onnxruntime (its execution provider), batch 1, median over blocks (the same interleaved pass)"),
            C(f"latency_ort_cpu_{f}_bN_p50_ms", "float64", "ms", f"the {f} form in onnxruntime, batch N, median over blocks"),
        ]  # fmt: skip
    return tuple(out)


COLUMNS = COLUMNS + _form_columns()
del S

COLUMN_NAMES = tuple(c.name for c in COLUMNS)
SEED_COLUMNS: tuple[Column, ...] = tuple(c for c in COLUMNS if c.per_seed)

# Which way is better, for every numeric column (``kdbench compare --fail`` judges "worse" by it,
# and a test walks every numeric column of COLUMNS): "higher", "lower", or "-" for settings and
# identifiers, which are not judged. Accuracies, their intervals, gains and speed are higher;
# costs, gaps, bounds, errors, latencies and their spread are lower.
HIGHER_IS_BETTER = [
    "file_kd_gain",
    "file_kd_gain_ci_low",
    "file_kd_gain_ci_high",
    "student_acc",
    "student_acc_ci_low",
    "student_acc_ci_high",
    "ensemble_acc",
    "best_member_acc",
    "mean_member_acc",
    "rel_acc",
    "rel_acc_ci_low",
    "rel_acc_ci_high",
    "scratch_acc",
    "kd_gain",
    "kd_gain_ci_low",
    "kd_gain_ci_high",
    "generalist_taught_acc",
    "specialist_gain",
    "specialist_gain_ci_low",
    "specialist_gain_ci_high",
    "gap_closed",
    "gap_closed_ci_low",
    "gap_closed_ci_high",
    "omitted_acc",
    "omitted_acc_ci_low",
    "omitted_acc_ci_high",
    "omitted_acc_corrected",
    "omitted_acc_corrected_ci_low",
    "omitted_acc_corrected_ci_high",
    "student_acc_corrected",
    "student_acc_corrected_ci_low",
    "student_acc_corrected_ci_high",
    "scratch_omitted_acc",
    "scratch_omitted_acc_ci_low",
    "scratch_omitted_acc_ci_high",
    "full_scratch_acc",
    "full_scratch_acc_ci_low",
    "full_scratch_acc_ci_high",
    "ensemble_gain_kept",
    "agreement",
    "student_val_acc",
    "scratch_val_acc",
    "ensemble_val_acc",
    "throughput_cpu_bN_per_s",
    "throughput_gpu_bN_per_s",
    "throughput_cpu_mt_bN_per_s",
    "speedup_cpu_b1_vs_loop",
    "speedup_cpu_b1_vs_fused",
    "speedup_cpu_b1",
    "speedup_gpu_b1",
    "speedup_ort_cpu_b1",
    "throughput_ort_cpu_bN_per_s",
    "file_acc",
    "scratch_file_acc",
]
NOT_JUDGED = [
    "schema_version",
    "ens_not_file",
    "file_not_ens",
    "best_not_file",
    "file_not_best",
    "ens_not_twin",
    "twin_not_ens",
    "best_not_twin",
    "twin_not_best",
    "file_not_twin",
    "twin_not_file",
    "ens_not_best",
    "best_not_ens",
    "trial",
    "temperature",
    "alpha",
    "n_seeds",
    "seed",
    "n_test",
    "transfer_rows",
    "transfer_unlabeled_rows",
    "n_test_omitted",
    "bias_shift",
    "teacher_mean_max_prob",
    "best_epoch",
    "latency_threads",
    "latency_mt_threads",
    "latency_batch_n",
    "certify_round",
    "certify_rank",
    "certify_max_gap",
    "certify_alpha",
    "file_seed",
    "scratch_file_seed",
    "group_members",
    "train_threads",
    "resumed_epochs",
    "teacher_top_k",
    "retry_of",
]
for _f in DERIVED_FORMS:
    HIGHER_IS_BETTER += [f"val_acc_{_f}", f"file_acc_{_f}", f"form_agreement_{_f}"]
    NOT_JUDGED += [f"ens_not_file_{_f}", f"file_not_ens_{_f}"]
BETTER: dict[str, str] = {
    c.name: "higher" if c.name in HIGHER_IS_BETTER else "-" if c.name in NOT_JUDGED else "lower"
    for c in COLUMNS
    if c.dtype not in ("string", "bool", "boolean")
}
ARCH_PREFIX = "arch_"
# the columns every row of trials has; a row without one was cut short
KEY_COLUMNS = ("schema_version", "run_id", "task", "trial", "phase", "state")


def columns_markdown() -> str:
    """The result-column table of ``docs/columns.md``, generated from :data:`COLUMNS`."""
    lines = ["| column | dtype | unit | better | meaning |", "|---|---|---|---|---|"]
    for c in COLUMNS:
        better = BETTER.get(c.name, "-")
        lines.append(f"| `{c.name}` | {c.dtype} | {c.unit} | {better} | {c.meaning} |")
        if c.name == "arch":
            lines.append(
                "| `arch_<name>` | Int64 / float64 | - | - | one column per architecture parameter "
                "of the family (e.g. `arch_width`, `arch_channels`) |"
            )
    return "\n".join(lines) + "\n"
