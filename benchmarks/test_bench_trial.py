"""Speed of one trial: the usual KD loop vs the fast single path vs the grouped path.

One trial = seed task (20,000 samples; 12,000 train), width 77, depth 2, T 4, alpha 0.9,
10 epochs, batch 256, best-validation-epoch selection, same seeds. The grouped benchmark
trains 8 students at once and its timer is divided by 8, so its statistics are *per student*.
Every benchmark records the test accuracy it reached (extra_info) and the achieved training
GFLOP/s against the float32 matmul peak measured in the same run.
"""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.config.suite import load_suite
from bench.run.options import RunOptions
from bench.run.sweep import run_suite
from bench.threads import all_cores
from benchmarks.reference import reference_kd_fit
from kdcore import Distiller, Member, accuracy, build_student
from kdcore.losses import kd_loss_from_log_probs

EPOCHS, WIDTH, DEPTH, T, ALPHA, BATCH, LR, GROUP = 10, 77, 2, 4.0, 0.9, 256, 3e-3, 8


def _per_student_timer() -> float:
    return time.perf_counter() / GROUP


def train_flops(task, n_members: int, width: int = WIDTH) -> float:
    """FLOPs of the whole fit: FlopCounterMode on one forward+backward step, times the steps,
    plus one validation forward per epoch."""
    model = build_student("mlp", task.input_shape, 2, width=width, depth=DEPTH)
    x, y = task.x_train[:BATCH], task.y_train[:BATCH]
    soft = torch.log_softmax(torch.randn(BATCH, 2), -1)
    with FlopCounterMode(display=False) as counter:
        kd_loss_from_log_probs(model(x), soft, y, temperature=T, alpha=ALPHA).backward()
    per_sample_step = counter.get_total_flops() / BATCH
    with FlopCounterMode(display=False) as fwd:
        model(x)
    per_sample_fwd = fwd.get_total_flops() / BATCH
    n_train, n_val = len(task.x_train), len(task.x_val)
    return n_members * EPOCHS * (per_sample_step * n_train + per_sample_fwd * n_val)


def _record(
    benchmark, task, acc: float, flops: float, peak: float, threads: int, per: int = 1
) -> None:
    median = benchmark.stats.stats.median  # seconds per trial (per student for the grouped one)
    achieved = flops / per / median / 1e9
    benchmark.extra_info.update(
        test_acc=acc,
        train_flops=flops / per,
        achieved_gflops=achieved,
        matmul_peak_gflops=peak,
        fraction_of_peak=achieved / peak,
        threads=threads,
        epochs=EPOCHS,
        width=WIDTH,
        depth=DEPTH,
        batch_size=BATCH,
        n_train=len(task.x_train),
    )


def test_trial_reference(benchmark, seed_setup, matmul_peak_gflops, threads) -> None:
    _, task, teacher = seed_setup

    def run():
        return reference_kd_fit(
            task.x_train,
            task.y_train,
            task.x_val,
            task.y_val,
            teacher.ensemble,
            width=WIDTH,
            depth=DEPTH,
            temperature=T,
            alpha=ALPHA,
            epochs=EPOCHS,
            batch_size=BATCH,
            lr=LR,
            seed=0,
        )

    model, _ = benchmark.pedantic(run, rounds=3, iterations=1)
    with torch.no_grad():
        acc = accuracy(model(task.x_test), task.y_test)
    _record(benchmark, task, acc, train_flops(task, 1), matmul_peak_gflops, threads)


def distill_trial(  # noqa: PLR0913 — the benchmark's knobs, keyword-only
    task,
    teacher,
    members,
    *,
    width: int = WIDTH,
    depth: int = DEPTH,
    epochs: int = EPOCHS,
    n_train: int | None = None,
    grouped: bool = True,
    device: str = "cpu",
) -> Distiller:
    targets = teacher.targets["train"]
    if n_train is not None:
        targets = targets.take(slice(0, n_train))
    return Distiller(
        arch={"width": width, "depth": depth},
        epochs=epochs,
        batch_size=BATCH,
        lr=LR,
        grouped=grouped,
        device=device,
    ).fit(
        task.x_train[:n_train],
        task.y_train[:n_train],
        task.x_val,
        task.y_val,
        members,
        teacher=targets,
    )


def test_trial_single(benchmark, seed_setup, matmul_peak_gflops, threads) -> None:
    _, task, teacher = seed_setup
    fit = benchmark.pedantic(
        lambda: distill_trial(task, teacher, [Member(0, T, ALPHA)]), rounds=5, iterations=1
    )
    acc = accuracy(fit.predict_logits(task.x_test)[0], task.y_test)
    _record(benchmark, task, acc, train_flops(task, 1), matmul_peak_gflops, threads)


@pytest.mark.benchmark(timer=_per_student_timer)
def test_trial_grouped_per_student(benchmark, seed_setup, matmul_peak_gflops, threads) -> None:
    _, task, teacher = seed_setup
    members = [Member(s, T, ALPHA) for s in range(GROUP)]
    fit = benchmark.pedantic(lambda: distill_trial(task, teacher, members), rounds=3, iterations=1)
    logits = fit.predict_logits(task.x_test)
    acc = accuracy(logits[0], task.y_test)  # seed 0, comparable with the other two
    _record(benchmark, task, acc, train_flops(task, GROUP), matmul_peak_gflops, threads, per=GROUP)
    benchmark.extra_info["group_size"] = GROUP
    benchmark.extra_info["mean_test_acc_all_seeds"] = (
        sum(accuracy(lg, task.y_test) for lg in logits) / GROUP
    )


def test_matmul_peak(benchmark, threads) -> None:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    benchmark.pedantic(lambda: a @ b, rounds=20, iterations=1, warmup_rounds=2)
    benchmark.extra_info.update(
        gflops=2 * 2048**3 / benchmark.stats.stats.median / 1e9, threads=threads
    )


@pytest.mark.parametrize("n_samples", [5000, 10000, 20000])
def test_scaling_samples(benchmark, seed_setup, n_samples: int) -> None:
    """Grouped trial time (8 students, 3 epochs) as the training set grows."""
    _, task, teacher = seed_setup
    n = int(n_samples * 0.6)
    members = [Member(s, T, ALPHA) for s in range(GROUP)]
    benchmark.pedantic(
        lambda: distill_trial(task, teacher, members, epochs=3, n_train=n), rounds=3, iterations=1
    )
    benchmark.extra_info.update(n_train=n, epochs=3, group_size=GROUP)


@pytest.mark.parametrize("width", [32, 128, 512])
def test_scaling_width(benchmark, seed_setup, matmul_peak_gflops, width: int) -> None:
    """Grouped trial time (8 students, 3 epochs) as the student widens; FLOP rate rises with it."""
    _, task, teacher = seed_setup
    members = [Member(s, T, ALPHA) for s in range(GROUP)]
    benchmark.pedantic(
        lambda: distill_trial(task, teacher, members, width=width, epochs=3), rounds=3, iterations=1
    )
    flops = train_flops(task, GROUP, width) * 3 / EPOCHS
    achieved = flops / benchmark.stats.stats.median / 1e9
    benchmark.extra_info.update(
        width=width,
        epochs=3,
        group_size=GROUP,
        achieved_gflops=achieved,
        fraction_of_peak=achieved / matmul_peak_gflops,
    )


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory) -> dict[str, object]:
    return {"root": tmp_path_factory.mktemp("suite_runs")}


@pytest.mark.parametrize("mode", ["grouped", "separate"])
def test_suite_trials_per_minute(benchmark, seed_setup, suite_runs, mode: str) -> None:
    """The seed suite with 3 replicate seeds and their scratch baselines, 16 trials.

    grouped: Optuna asks 4 trials at a time sharing an architecture (the sampler picks their
    T and alpha), and each trial's 3 distilled students plus the 3 scratch baselines train as
    one group. separate: grouping off (group_size 1, grouped = false), replaying exactly the
    grouped run's configurations, so both do the same work. Trials per minute in extra_info.
    """
    import dataclasses
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    suite = load_suite(root / "suites" / "seed_classic.toml")
    grouped = mode == "grouped"
    suite = dataclasses.replace(
        suite,
        student=dataclasses.replace(suite.student, grouped=grouped),
        budget=dataclasses.replace(
            suite.budget, seeds=3, trials=16, group_size=4 if grouped else 1
        ),
        certify=dataclasses.replace(suite.certify, candidates=0),
    )
    results = suite_runs["root"] / mode
    results.mkdir()
    (results / "teachers").symlink_to(root / "results" / "teachers")  # only the sweep is timed
    replay = None if grouped else suite_runs.get("grouped")
    if not grouped and replay is None:
        pytest.skip("needs the grouped run first")
    run_dir = benchmark.pedantic(
        lambda: run_suite(suite, RunOptions(out_root=results, replay=replay)),
        rounds=1,
        iterations=1,
    )
    suite_runs[mode] = run_dir
    from bench.records import read_trials

    trials = read_trials(run_dir)
    minutes = benchmark.stats.stats.median / 60
    benchmark.extra_info.update(
        trials=len(trials),
        trials_per_minute=len(trials) / minutes,
        seeds=3,
        grouped=grouped,
        group_size=suite.budget.group_size,
        configs=[
            (int(w), int(d))
            for w, d in zip(trials["arch_width"], trials["arch_depth"], strict=True)
        ],
        student_params=[int(p) for p in trials["student_params"]],
    )


@pytest.mark.parametrize("mode", ["grouped", "separate"])
@pytest.mark.parametrize(("width", "depth"), [(8, 2), (54, 3), (123, 2), (428, 2)])
def test_grouping_by_size(benchmark, seed_setup, width: int, depth: int, mode: str) -> None:
    """One trial's training with 3 seeds: 3 distilled students + their 3 scratch baselines,
    10 epochs, as one group or one by one. The ratio shrinks as students become compute-bound."""
    _, task, teacher = seed_setup
    members = [Member(s, T, ALPHA) for s in range(3)] + [Member(s, 1.0, 0.0) for s in range(3)]

    benchmark.pedantic(
        lambda: distill_trial(
            task, teacher, members, width=width, depth=depth, grouped=mode == "grouped"
        ),
        rounds=2,
        iterations=1,
    )
    benchmark.extra_info.update(
        width=width, depth=depth, members=len(members), grouped=mode == "grouped"
    )


@pytest.mark.parametrize("backend", ["batched", "vmap"])
def test_cnn_grouped_backend(benchmark, digits_setup, backend: str) -> None:
    """CNN students on digits ([1, 8, 8]): 3 distilled + 3 scratch members, channels 16 x
    blocks 2, 10 epochs, trained as one group through the grouped-convolution path or through
    torch.func.vmap. Same members, same seeds: the accuracies must agree."""
    _, task, teacher = digits_setup
    members = [Member(s, T, ALPHA) for s in range(3)] + [Member(s, 1.0, 0.0) for s in range(3)]

    def fit() -> Distiller:
        return Distiller(
            family="cnn",
            arch={"channels": 16, "blocks": 2},
            epochs=EPOCHS,
            batch_size=128,
            lr=LR,
            backend=backend,
        ).fit(
            task.x_train,
            task.y_train,
            task.x_val,
            task.y_val,
            members,
            teacher=teacher.targets["train"],
        )

    fitted = benchmark.pedantic(fit, rounds=3, iterations=1)
    logits = fitted.predict_logits(task.x_test)
    benchmark.extra_info.update(
        backend=backend,
        members=len(members),
        epochs=EPOCHS,
        arch="channels 16 x blocks 2",
        test_acc=[accuracy(lg, task.y_test) for lg in logits],
    )


@pytest.mark.parametrize("mode", ["separate", "packed"])
@pytest.mark.parametrize(("narrow", "wide", "depth"), [(10, 17, 2), (17, 24, 2), (31, 46, 2)])
def test_width_packing_bound(
    benchmark, seed_setup, narrow: int, wide: int, depth: int, mode: str
) -> None:
    """The optional packing of students of different widths into one group (issue #13),
    bounded before building it: two trials' groups (3 distilled + 3 scratch members each),
    one of width ``narrow`` and one of ``wide``, trained one after the other ("separate"),
    against one group of 12 members all of width ``wide`` ("packed": the narrow trial padded
    to the wide one's width, without the cost of its masks, so an upper bound of the gain).
    One thread, as a local worker trains small students; 3 epochs."""
    _, task, teacher = seed_setup
    members = [Member(s, T, ALPHA) for s in range(3)] + [Member(s, 1.0, 0.0) for s in range(3)]
    torch.set_num_threads(1)
    try:
        if mode == "separate":

            def run() -> None:
                distill_trial(task, teacher, members, width=narrow, depth=depth, epochs=3)
                distill_trial(task, teacher, members, width=wide, depth=depth, epochs=3)
        else:

            def run() -> None:
                distill_trial(task, teacher, members * 2, width=wide, depth=depth, epochs=3)

        benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    finally:
        torch.set_num_threads(all_cores())
    benchmark.extra_info.update(
        narrow=narrow, wide=wide, depth=depth, members=2 * len(members), mode=mode, threads=1
    )
