"""What keeping only the teacher's top-k logits costs the student (issue #35), on a task where
the full logits fit too: the bundled MNIST subset (``mnist5k``: 3,000 / 1,000 / 1,000, 10
classes).

A CNN teacher is trained once (:class:`kdcore.stream.StreamDistiller`, 12 epochs); its outputs
on the training split are written dense (float16) and as top-k files for k = 1, 2, 3, 5; a
small CNN student is distilled (T = 4, alpha = 0.9, 10 epochs, selected on validation) from
each file under the same seeds, and the paired test-accuracy difference top-k − dense is
reported per k: mean over seeds, and its 95 % t interval; beside it the teacher's probability
mass the k kept classes hold at T = 1 (what the file stores) and at the distillation
temperature T = 4 (computed from the dense file). At k = 1 the soft term is zero (a
distribution over one class), so that row is the hard-label term alone at weight 0.1 —
with Adam, the scratch student.
Nothing is chosen on test; the numbers describe the loss.

    .venv/bin/python benchmarks/topk_penalty.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.config.suite import load_suite
from bench.tasks import load_task
from kdcore.stream import StreamDistiller, write_targets

ROOT = Path(__file__).resolve().parents[1]
KS = (1, 2, 3, 5)


def _cnn(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 49, 10),
    )


@torch.inference_mode()
def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.eval()(x).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    suite = load_suite(ROOT / "suites" / "mnist.toml")
    task = load_task(suite.tasks[0])
    train = TensorDataset(task.x_train, task.y_train)
    val = TensorDataset(task.x_val, task.y_val)
    t0 = time.perf_counter()
    teacher = StreamDistiller(epochs=12, batch_size=64, lr=2e-3, seed=0).fit(
        lambda: _cnn(32), train, val
    )
    tmp = Path(tempfile.mkdtemp())
    loader = DataLoader(train, batch_size=500)
    n = len(train)
    files = {"dense": write_targets(teacher.model_, loader, tmp / "dense", rows=n, classes=10)}
    for k in KS:
        files[k] = write_targets(teacher.model_, loader, tmp / f"k{k}", rows=n, classes=10, top_k=k)
    acc: dict[object, list[float]] = {key: [] for key in files}
    for seed in range(args.seeds):
        for key, f in files.items():
            s = StreamDistiller(
                epochs=10, batch_size=64, lr=2e-3, temperature=4.0, alpha=0.9, seed=100 + seed
            ).fit(lambda: _cnn(4), train, val, f)
            acc[key].append(_acc(s.model_, task.x_test, task.y_test))
    wall = time.perf_counter() - t0
    dense = np.array(acc["dense"])
    lines = [
        f"# Top-k teacher logits: the student's accuracy cost — "
        f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
        "",
        f"`.venv/bin/python benchmarks/topk_penalty.py --seeds {args.seeds}` on "
        f"{platform.node()} ({os.cpu_count()} cores), CPU, {wall:.0f} s. mnist5k "
        f"(3,000 / 1,000 / 1,000, 10 classes); teacher CNN (width 32, 12 epochs): test accuracy "
        f"{_acc(teacher.model_, task.x_test, task.y_test):.4f}; students CNN width 4 "
        f"({sum(p.numel() for p in _cnn(4).parameters()):,} params), T 4, alpha 0.9, 10 epochs, "
        f"selected on validation; seeds 100–{99 + args.seeds}, the same for every file.",
        "",
        f"Dense (float16 logits): test accuracy {100 * dense.mean():.2f} % (mean of {args.seeds}).",
        "",
        "| kept classes k | teacher mass kept at T 1 | at T 4 | student test acc. | "
        "paired difference vs dense (pp) | 95 % t interval (pp) |",
        "|---|---|---|---|---|---|",
    ]
    z = files["dense"].logits(torch.arange(n))  # the mass a top-k file keeps at T = 4
    out = {"dense": acc["dense"]}
    for k in KS:
        a = np.array(acc[k])
        d = 100 * (a - dense)
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        kept = 1 - float(files[k].tail_mass().mean())
        kept_t = float(torch.softmax(z / 4.0, 1).topk(k, dim=1).values.sum(1).mean())
        lines.append(
            f"| {k} | {kept:.4f} | {kept_t:.4f} | {100 * a.mean():.2f} % | {d.mean():+.2f} | "
            f"[{d.mean() - half:+.2f}, {d.mean() + half:+.2f}] |"
        )
        out[str(k)] = acc[k]
    text = "\n".join(lines) + "\n"
    dest = ROOT / "results" / "benchmarks" / f"topk-penalty-{lines[0].split('— ')[1]}"
    dest.with_suffix(".md").write_text(text)
    dest.with_suffix(".json").write_text(json.dumps(out, indent=1))
    print(text)


if __name__ == "__main__":
    main()
