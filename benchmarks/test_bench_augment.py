"""Cost of a consistent teacher: one digits CNN trial with no augmentation, with the teacher's
outputs on 8 stored views (FKD-style), and with the teacher run online on every epoch's views.

One trial = the ``digits_sgd_views`` suite's task (1,078 training images [1, 8, 8], scaled
per channel) and teacher (3 CNNs of 32 channels × 2 blocks); a CNN student of 8 channels ×
2 blocks, SGD (Nesterov) with cosine decay after 1 warm-up epoch, lr 0.02, 10 epochs, batch 64,
random crops of 1 pixel; 4 distilled seeds (T 4, alpha 0.9) and their 4 scratch twins in one
group: the members of a trial with ``[budget] seeds = 4``. The stored views' one-off cost (the
teacher on 8 × 1,078 views) is its own benchmark; their memory is in extra_info. The grouped
benchmark against the same 8 members trained one by one confirms that grouping keeps its
speed-up under augmentation.
"""

from __future__ import annotations

import pytest

from bench.group.augment import pixel_scale
from benchmarks.conftest import augmented_setup
from kdcore import Distiller, Member, Recipe, accuracy
from kdcore.augment import Augment, view_targets

EPOCHS, BATCH, LR, T, ALPHA, SEEDS, VIEWS = 10, 64, 0.02, 4.0, 0.9, 4, 8
ARCH = {"channels": 8, "blocks": 2}
RECIPE = Recipe(optimizer="sgd", nesterov=True, schedule="cosine", warmup_epochs=1)
MEMBERS = [Member(s, T, ALPHA) for s in range(SEEDS)] + [Member(s) for s in range(SEEDS)]


@pytest.fixture(scope="module")
def augment_setup(threads: int):
    return augmented_setup("digits_sgd_views")


def _fit(task, teacher_arg, augment: Augment | None, grouped: bool = True) -> Distiller:  # type: ignore[no-untyped-def]
    return Distiller(
        family="cnn",
        arch=ARCH,
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=LR,
        weight_decay=5e-4,
        recipe=RECIPE,
        augment=augment,
        grouped=grouped,
    ).fit(
        task.x_train,
        task.y_train,
        task.x_val,
        task.y_val,
        MEMBERS,
        teacher=teacher_arg,
        pixel_scale=pixel_scale(task),
        num_classes=task.num_classes,
    )


def _record(benchmark, task, fit: Distiller, mode: str, threads: int) -> None:  # type: ignore[no-untyped-def]
    logits = fit.predict_logits(task.x_test)
    benchmark.extra_info.update(
        mode=mode,
        distilled_test_acc=sum(accuracy(lg, task.y_test) for lg in logits[:SEEDS]) / SEEDS,
        scratch_test_acc=sum(accuracy(lg, task.y_test) for lg in logits[SEEDS:]) / SEEDS,
        members=len(MEMBERS),
        epochs=EPOCHS,
        batch_size=BATCH,
        threads=threads,
        n_train=len(task.x_train),
    )


def test_augment_trial_none(benchmark, augment_setup, threads) -> None:
    task, teacher, _ = augment_setup
    targets = teacher.targets["train"]
    fit = benchmark.pedantic(lambda: _fit(task, targets, None), rounds=3, iterations=1)
    _record(benchmark, task, fit, "none", threads)


def test_augment_views_precompute(benchmark, augment_setup, threads) -> None:
    """The one-off cost of stored views: the teacher on 8 views of every training image."""
    task, _, online = augment_setup
    aug = Augment(random_crop=1, views=VIEWS)
    stored = benchmark.pedantic(
        lambda: view_targets(online, task.x_train, aug, pixel_scale(task)), rounds=3, iterations=1
    )
    outputs = stored.member_log_probs(1.0)
    benchmark.extra_info.update(
        views=VIEWS,
        rows=len(stored),
        teacher_members=stored.num_members,
        stored_target_bytes=int(outputs.numel()) * 4,
        threads=threads,
    )


def test_augment_trial_views(benchmark, augment_setup, threads) -> None:
    task, _, online = augment_setup
    aug = Augment(random_crop=1, views=VIEWS)
    stored = view_targets(online, task.x_train, aug, pixel_scale(task))
    fit = benchmark.pedantic(lambda: _fit(task, stored, aug), rounds=3, iterations=1)
    _record(benchmark, task, fit, f"{VIEWS} stored views", threads)


def test_augment_trial_online(benchmark, augment_setup, threads) -> None:
    task, _, online = augment_setup
    aug = Augment(random_crop=1, teacher="online")
    fit = benchmark.pedantic(lambda: _fit(task, online, aug), rounds=3, iterations=1)
    _record(benchmark, task, fit, "online", threads)


def test_augment_trial_views_one_by_one(benchmark, augment_setup, threads) -> None:
    """The views trial with grouping off: the 8 members trained one after the other."""
    task, _, online = augment_setup
    aug = Augment(random_crop=1, views=VIEWS)
    stored = view_targets(online, task.x_train, aug, pixel_scale(task))
    fit = benchmark.pedantic(lambda: _fit(task, stored, aug, grouped=False), rounds=3, iterations=1)
    _record(benchmark, task, fit, f"{VIEWS} stored views, grouping off", threads)
