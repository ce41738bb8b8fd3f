"""The measured answer of docs/augment.md: do SGD + cosine + crops change what a CNN student
reaches, does a consistent teacher (stored views, online) beat fixed targets, and how many
views are enough?

``python benchmarks/augment_answer.py [digits|mnist5k] [--seeds N] [--epochs E]`` trains, for
every student size and condition, ``N`` distilled students (T 4, alpha 0.9) and their ``N``
scratch twins in one group, and prints mean test accuracy with a 95 % Student-t interval over
seeds (a descriptive measurement: nothing is selected on test here; kdbench's own decisions
are the suites' runs). Conditions:

* ``adam`` — today's default: Adam at a constant 3e-3, fixed inputs;
* ``sgd`` — SGD (Nesterov, momentum 0.9), lr 0.02 (the best of 0.005–0.05 on validation for distilled 4- and 8-channel students), cosine after 1 warm-up epoch, weight decay
  5e-4, fixed inputs;
* ``sgd+crop fixed`` — the same, random crops of 1 pixel (2 for mnist5k; as many stored views
  as the largest K), each paired with the teacher's target on the *un*-augmented image (an
  inconsistent teacher);
* ``sgd+crop views K`` — crops, the teacher's outputs on K stored views per image;
* ``sgd+crop online`` — crops, the teacher run on every epoch's views.

The teacher is the ``digits_sgd_views`` suite's (or for mnist5k the ``hinton_mnist`` suite's)
CNN ensemble, trained once and cached under ``results/teachers``; images are scaled per channel
(:func:`bench.group.augment.channel_scaled`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from bench.group.augment import pixel_scale
from bench.stats import summarise_seeds
from benchmarks.conftest import augmented_setup
from kdcore import Distiller, Member, Recipe, accuracy
from kdcore.augment import Augment, view_targets

SUITES = {"digits": "digits_sgd_views", "mnist5k": "hinton_mnist"}
CROP = {"digits": 1, "mnist5k": 2}
SGD_LR = 0.02  # the best of 0.005-0.05 on digits validation (docs/augment.md)
SGD = Recipe(optimizer="sgd", nesterov=True, schedule="cosine", warmup_epochs=1)


def interval(values: list[float]) -> tuple[float, float, float]:
    mean, _, low, high = summarise_seeds(values)
    return mean, low, high


def _conditions(
    task: Any, teacher: Any, online: Any, crop: int, views: str
) -> list[tuple[str, Recipe, float, Augment | None, Any]]:
    """(name, recipe, lr, augmentation, what the students learn from) of every condition."""
    scale = pixel_scale(task)
    clean = teacher.targets["train"]
    conditions: list[tuple[str, Recipe, float, Augment | None, Any]] = [
        ("adam", Recipe(), 3e-3, None, clean),
        ("sgd", SGD, SGD_LR, None, clean),
    ]
    ks = [int(v) for v in views.split(",")]
    # fixed targets: the most views, each paired with the teacher's output on the clean image
    fixed = clean
    for _ in range(max(ks) - 1):
        fixed = fixed.cat(clean)
    conditions.append(
        ("sgd+crop fixed", SGD, SGD_LR, Augment(random_crop=crop, views=max(ks)), fixed)
    )
    for k in ks:
        aug = Augment(random_crop=crop, views=k)
        conditions.append(
            (
                f"sgd+crop views {k}",
                SGD,
                SGD_LR,
                aug,
                view_targets(online, task.x_train, aug, scale),
            )
        )
    conditions.append(
        ("sgd+crop online", SGD, SGD_LR, Augment(random_crop=crop, teacher="online"), online)
    )
    return conditions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=sorted(SUITES))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--channels", default="2,4,8,16")
    ap.add_argument("--views", default="1,2,4,8,16")
    args = ap.parse_args()
    task, teacher, online = augmented_setup(SUITES[args.task], CROP[args.task])
    scale = pixel_scale(task)
    conditions = _conditions(task, teacher, online, CROP[args.task], args.views)
    print(
        f"task {args.task}: {len(task.x_train)} train / {len(task.x_test)} test, ensemble "
        f"{100 * teacher.ensemble_acc:.2f} %, {args.seeds} seeds, {args.epochs} epochs, batch 64, "
        f"T 4, alpha 0.9, crop {CROP[args.task]}, threads {torch.get_num_threads()}"
    )
    print("| channels × 2 blocks | condition | distilled % [95 %] | scratch % [95 %] | s |")
    print("|---|---|---|---|---|")
    members = [Member(s, 4.0, 0.9) for s in range(args.seeds)] + [
        Member(s) for s in range(args.seeds)
    ]
    for channels in [int(c) for c in args.channels.split(",")]:
        for name, recipe, lr, aug, tg in conditions:
            started = time.perf_counter()
            fit = Distiller(
                family="cnn",
                arch={"channels": channels, "blocks": 2},
                epochs=args.epochs,
                batch_size=64,
                lr=lr,
                weight_decay=5e-4 if recipe.optimizer == "sgd" else 0.0,
                recipe=recipe,
                augment=aug,
            ).fit(
                task.x_train,
                task.y_train,
                task.x_val,
                task.y_val,
                members,
                teacher=tg,
                pixel_scale=scale,
                num_classes=task.num_classes,
            )
            seconds = time.perf_counter() - started
            logits = fit.predict_logits(task.x_test)
            accs = [100 * accuracy(lg, task.y_test) for lg in logits]
            d, s = interval(accs[: args.seeds]), interval(accs[args.seeds :])
            print(
                f"| {channels} | {name} | {d[0]:.2f} [{d[1]:.2f}, {d[2]:.2f}] | "
                f"{s[0]:.2f} [{s[1]:.2f}, {s[2]:.2f}] | {seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
