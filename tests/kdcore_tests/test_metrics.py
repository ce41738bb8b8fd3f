from __future__ import annotations

import random
import time

import pytest
import torch
from torch import nn

from kdcore import accuracy, agreement, kl_to_teacher
from kdcore.latency import measure_latencies, measure_latency, select_device
from kdcore.metrics import expected_calibration_error


class _BusyWait(nn.Module):
    def __init__(self, seconds: float, jitter: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.seconds, self.jitter = seconds, jitter
        self.rng = random.Random(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wait = self.seconds + (self.rng.choice(self.jitter) if self.jitter else 0.0)
        end = time.perf_counter() + wait
        while time.perf_counter() < end:
            pass
        return x


def test_latency_p50_of_a_known_two_ms_forward() -> None:
    res = measure_latency(
        _BusyWait(0.002), torch.zeros(1, 4), threads=1, warmup=2, min_run_time=0.1
    )
    assert res.p50_ms == pytest.approx(2.0, rel=0.10)
    assert res.number_per_block == 1 and res.n_blocks >= 30
    assert res.p50_ms <= res.p90_ms <= res.p99_ms
    assert res.threads == 1 and res.batch_size == 1 and res.device == "cpu"
    assert not res.noisy


def test_noise_flag_turns_on_when_timing_is_noisy() -> None:
    noisy = _BusyWait(0.001, jitter=(0.0, 0.001, 0.002))
    res = measure_latency(noisy, torch.zeros(1, 4), warmup=0, min_run_time=0.05)
    assert res.iqr_ms / res.p50_ms > 0.10
    assert res.noisy


def test_latency_restores_thread_count_and_uses_eval_mode() -> None:
    before = torch.get_num_threads()
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    res = measure_latency(model, torch.zeros(256, 4), threads=1, min_run_time=0.01)
    assert torch.get_num_threads() == before
    assert not model.training
    assert res.throughput_per_s == pytest.approx(256 / (res.p50_ms / 1e3))


def test_select_device_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        select_device("cuda")
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda"):
        select_device("tpu")


def test_select_device_prefers_cuda_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")
    assert select_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency_uses_events_on_the_device() -> None:
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    res = measure_latency(model, torch.randn(32, 64), device="cuda", min_run_time=0.05)
    assert res.device.startswith("cuda") and res.p50_ms > 0 and res.n_blocks >= 30


def test_accuracy_agreement_kl_and_ece() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, labels) == 0.75
    assert agreement(logits, logits.flip(-1)) == 0.0
    lp = torch.log_softmax(logits, -1)
    assert kl_to_teacher(lp, logits) == pytest.approx(0.0, abs=1e-7)
    # Every sample has confidence sigmoid(2) = 0.881 and accuracy is 0.75 → ECE = 0.131.
    conf = float(torch.sigmoid(torch.tensor(2.0)))
    assert expected_calibration_error(logits, labels) == pytest.approx(abs(0.75 - conf), abs=1e-6)


class _Drifting(nn.Module):
    """A forward pass whose cost grows with wall-clock time since ``t0``: a machine slowing
    down (another job, thermal throttling) while it is being measured."""

    def __init__(self, t0: float) -> None:
        super().__init__()
        self.t0 = t0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        now = time.perf_counter()
        end = now + 2e-4 * (1 + 5 * (now - self.t0))
        while time.perf_counter() < end:
            pass
        return x


def test_interleaved_timing_cancels_drift_that_sequential_timing_puts_into_the_ratio() -> None:
    """Two identical models on a machine that slows down: timed one after the other the second
    looks ~2x slower; timed interleaved (ABAB, rotated) their ratio stays ~1."""
    x = torch.zeros(1, 4)
    t0 = time.perf_counter()
    a, b = _Drifting(t0), _Drifting(t0)
    first = measure_latency(a, x, warmup=1, min_run_time=0.1)
    second = measure_latency(b, x, warmup=1, min_run_time=0.1)
    assert second.p50_ms / first.p50_ms > 1.3  # the failure this protocol exists to prevent
    t0 = time.perf_counter()
    a.t0 = b.t0 = t0
    both = measure_latencies({"a": a, "b": b}, x, warmup=1, min_run_time=0.1)
    assert both["b"].p50_ms / both["a"].p50_ms == pytest.approx(1.0, abs=0.1)
    assert both["a"].n_blocks >= 30 and both["b"].n_blocks >= 30


class _RareStall(nn.Module):
    """0.05 ms per call, and 2 ms on every 40th call (2.5 % of calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        end = time.perf_counter() + (2e-3 if self.calls % 40 == 0 else 5e-5)
        while time.perf_counter() < end:
            pass
        return x


def test_p99_is_the_tail_of_single_calls_not_of_block_means() -> None:
    """Block means dilute a rare stall (~20 calls a block); p99 of single calls shows it."""
    res = measure_latency(_RareStall(), torch.zeros(1, 4), warmup=0, min_run_time=0.1)
    assert res.number_per_block > 5 and res.n_calls >= 30 * res.number_per_block
    assert res.p50_ms < 0.3
    assert res.p99_ms > 1.5
