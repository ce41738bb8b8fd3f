"""Training throughput of a timm ResNet-18 student, fp32 and bf16, with and without
``channels_last`` (issue #35; run by ``benchmarks/gpu_check.sh``).

Synthetic data: 3×32×32 images, 10 classes, ResNet-18 as timm builds it (``pretrained=False``,
``num_classes=10``). Two measurements per setting:

* **model-bound**: the training step alone (forward, float32 loss outside autocast, backward,
  AdamW step) on batches already on the device — what the card does with this model;
* **path-bound**: one epoch of :class:`kdcore.stream.StreamDistiller` on the same data served
  by a DataLoader from host memory (pinned, non-blocking, 4 workers) against a top-5 teacher
  file — what a kdbench trial gets.

Images/s are medians of timed blocks after warm-up (CUDA synchronised before each clock
read). Training FLOPs per image are counted by ``FlopCounterMode`` over a forward *and*
backward pass (2 FLOPs per multiply-add), so the fraction of peak needs no "3× forward" rule;
the peaks are dense 8192³ matrix products in the same process: float32 with TF32 off (for the
fp32 rows) and bf16 (for the bf16 rows). ``--dry`` runs everything on CPU with tiny sizes so
that CI keeps the script working; its numbers are not GPU figures and say so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """FLOP/s of an n³ matrix product (median of 10 after 3 warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def build() -> nn.Module:
    import timm

    return timm.create_model("resnet18", pretrained=False, num_classes=10)


def train_flops_per_image(batch: int) -> float:
    model = build()
    x = torch.randn(batch, 3, 32, 32)
    counter = FlopCounterMode(display=False)
    with counter:
        nn.functional.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long)).backward()
    return counter.get_total_flops() / batch


def model_bound(
    device: torch.device, amp: torch.dtype | None, cl: bool, batch: int, steps: int, blocks: int
) -> float:
    """Images/s of the bare training step (median over ``blocks`` timed blocks)."""
    torch.manual_seed(0)
    model = build().to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            z = model(x)
        loss = nn.functional.cross_entropy(z.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(max(2, steps // 2)):
        step()
    rates = []
    for _ in range(blocks):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        rates.append(batch * steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def path_bound(device: torch.device, amp: str, cl: bool, n: int, batch: int, tmp: Path) -> float:
    """Images/s of one StreamDistiller epoch (DataLoader from host memory, top-5 targets)."""
    from kdcore.stream import StreamDistiller, write_targets

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,)))
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    folder = tmp / f"targets-{amp}-{int(cl)}"
    targets = write_targets(
        teacher, DataLoader(data, batch_size=1024), folder, rows=n, classes=10, top_k=5
    )
    workers = 4 if device.type == "cuda" else 0
    kw = dict(batch_size=batch, temperature=4.0, alpha=0.9, amp=amp, channels_last=cl)
    if device.type == "cuda":  # warm-up (cuDNN's algorithm search, the workers' start)
        s = StreamDistiller(epochs=1, num_workers=workers, device=str(device), **kw)
        s.fit(build, data, TensorDataset(*data[:batch]), targets)
    s = StreamDistiller(epochs=1, num_workers=workers, device=str(device), **kw)
    t0 = time.perf_counter()
    s.fit(build, data, TensorDataset(*data[:batch]), targets)
    _sync(device)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny sizes: keeps the script working")
    ap.add_argument("--out", type=Path, required=True, help="a folder for resnet.json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.dry
    device = torch.device("cuda" if cuda else "cpu")
    batch, steps, blocks, n, mm = (256, 20, 5, 50_000, 8192) if cuda else (4, 1, 1, 8, 128)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    peak = {
        "fp32": matmul_peak(device, torch.float32, mm),
        "bf16": matmul_peak(device, torch.bfloat16, mm),
    }
    flops = train_flops_per_image(8)
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for prec, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        for cl in (False, True):
            ips = model_bound(device, amp, cl, batch, steps, blocks)
            path_ips = path_bound(
                device, "off" if amp is None else "bf16", cl, n, batch, args.out / "tmp"
            )
            rows.append(
                {
                    "precision": prec,
                    "channels_last": cl,
                    "model_images_per_s": ips,
                    "path_images_per_s": path_ips,
                    "fraction_of_peak": ips * flops / peak[prec],
                }
            )
    name = torch.cuda.get_device_name(device) if cuda else "CPU (dry run: not a GPU figure)"
    result = {
        "device": name,
        "dry": not cuda,
        "batch": batch,
        "train_flops_per_image": flops,
        "peak_flops": peak,
        "rows": rows,
        "torch": torch.__version__,
    }
    (args.out / "resnet.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    best = max(rows, key=lambda r: r["model_images_per_s"])
    print(
        f"{name}: best {best['model_images_per_s']:,.0f} images/s "
        f"({best['precision']}, channels_last {best['channels_last']})"
    )


if __name__ == "__main__":
    main()
