"""A whole run on CUDA: training on the GPU, the GPU latency columns filled, the manifest says so.

Skipped without CUDA (CI has none); run on a lent GPU machine, see docs/performance.md, GPU.
"""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import main
from bench.records import read_trials

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_run_on_cuda_fills_the_gpu_columns(tiny_suite, tmp_path) -> None:
    suite = tiny_suite(replace={'device = "cpu"': 'device = "cuda"'})
    out = tmp_path / "results"
    assert main(["run", str(suite), "--out", str(out), "--reports", str(tmp_path / "r")]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.name != "teachers"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["train_device"].startswith("cuda")
    assert manifest["machine"]["cuda_available"] and manifest["machine"]["gpu"]
    done = read_trials(run_dir).query("state == 'complete'")
    assert len(done) == 3
    for col in (
        "latency_gpu_b1_p50_ms",
        "latency_gpu_bN_p50_ms",
        "throughput_gpu_bN_per_s",
        "ensemble_loop_latency_gpu_b1_p50_ms",
        "ensemble_fused_latency_gpu_b1_p50_ms",
        "speedup_gpu_b1",
    ):
        assert (done[col] > 0).all(), col
    assert (done["latency_cpu_b1_p50_ms"] > 0).all()  # CPU latency is still measured
    assert done["student_acc"].between(0.4, 1.0).all()


def test_a_streamed_image_folder_trains_on_cuda_with_autocast(tmp_path) -> None:
    """The streamed path on the GPU: DataLoader workers decoding PNGs, pinned memory, bf16
    autocast where the card has it (fp16 with a gradient scaler otherwise), channels_last."""
    from tests.bench_tests.test_streamed_run import _png_folder, _suite

    _png_folder(tmp_path / "imgs")
    suite = _suite(tmp_path, 'kind = "images"\npath = "imgs"', workers=2)
    suite.write_text(suite.read_text().replace('device = "cpu"', 'device = "cuda"'))
    out = tmp_path / "results"
    code = main(["run", str(suite), "--out", str(out), "--cache", str(tmp_path / "c"),
                 "--reports", str(tmp_path / "r"), "-q"])  # fmt: skip
    assert code in (0, 1)  # 1: nothing certified on 24 test images
    (run_dir,) = [p for p in out.iterdir() if p.name != "teachers"]
    done = read_trials(run_dir).query("state == 'complete'")
    assert len(done) == 3 and set(done["train_path"]) == {"stream"}
    want = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert set(done["train_amp"]) == {want}
    assert done["train_channels_last"].all()
    assert (done["latency_gpu_b1_p50_ms"] > 0).all()
