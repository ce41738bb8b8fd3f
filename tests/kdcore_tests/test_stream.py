"""The streaming path: teacher outputs on disk, one student through a DataLoader, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kdcore.exceptions import ParameterError
from kdcore.stream import StreamDistiller, TargetFile, write_targets


def _data(n: int = 240, classes: int = 5, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :2].sum((1, 2)) * 2).long().clamp(-2, 2) + 2
    return TensorDataset(x, y % classes)


def _teacher(classes: int = 5) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, classes))


def _student() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.1), nn.Linear(256, 5)
    )


def test_dense_targets_round_trip_as_float16(tmp_path: Path) -> None:
    data, teacher = _data(), _teacher()
    t = write_targets(teacher, DataLoader(data, batch_size=64), tmp_path / "t", rows=240, classes=5)
    want = teacher(data.tensors[0]).detach()
    got = t.logits(torch.arange(240))
    assert got.dtype == torch.float32 and got.shape == (240, 5)
    assert torch.allclose(got, want.half().float())
    rows = torch.tensor([7, 3, 200])
    assert torch.equal(t.logits(rows), got[rows])
    assert (t.argmax() == want.argmax(1).numpy()).mean() > 0.99
    assert not t.tail_mass().any()


def test_top_k_keeps_the_largest_logits_and_the_tail_mass(tmp_path: Path) -> None:
    data, teacher = _data(), _teacher()
    t = write_targets(
        teacher, DataLoader(data, batch_size=50), tmp_path / "t", rows=240, classes=5, top_k=2
    )
    z = teacher(data.tensors[0]).detach()
    idx, val = t.topk(torch.arange(240))
    ref_val, ref_idx = z.topk(2, dim=1)
    assert torch.equal(idx, ref_idx)
    assert torch.allclose(val, ref_val.half().float())
    tail = 1 - torch.softmax(z, 1).gather(1, ref_idx).sum(1)
    assert np.allclose(t.tail_mass(), tail.numpy(), atol=1e-6)
    assert (t.argmax() == z.argmax(1).numpy()).all()
    with pytest.raises(ValueError, match="keeps only the top 2"):
        t.logits(torch.arange(3))
    # K = C is stored dense: the same file as without top_k
    full = write_targets(
        teacher, DataLoader(data, batch_size=50), tmp_path / "f", rows=240, classes=5, top_k=5
    )
    assert full.top_k is None


def test_a_truncated_target_file_is_refused_and_a_rewrite_replaces_it_whole(
    tmp_path: Path,
) -> None:
    data, teacher = _data(), _teacher()
    write_targets(teacher, DataLoader(data, batch_size=64), tmp_path / "t", rows=240, classes=5)
    with open(tmp_path / "t" / "logits.f16", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(ValueError, match=r"logits\.f16: 100 bytes, expected 2400"):
        TargetFile.open(tmp_path / "t")
    t = write_targets(
        teacher, DataLoader(data, batch_size=64), tmp_path / "t", rows=240, classes=5, key="k2"
    )
    assert t.key == "k2" and sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    with pytest.raises(ValueError, match="held 240 examples, expected rows=241"):
        write_targets(teacher, DataLoader(data), tmp_path / "u", rows=241, classes=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # nothing half-written left


def test_logits_float16_cannot_hold_are_refused_not_stored_as_inf(tmp_path: Path) -> None:
    data = _data(64)

    calls = []

    def loud(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        z = _teacher()(x)
        if len(calls) == 2:
            z[5, 2] = 7e4  # beyond float16's 65504: it would be stored as inf
        return z

    with pytest.raises(ValueError, match=r"examples 32–63 are not finite or beyond float16"):
        write_targets(loud, DataLoader(data, batch_size=32), tmp_path / "t", rows=64, classes=5)

    def nan(x: torch.Tensor) -> torch.Tensor:
        return _teacher()(x) * float("nan")

    with pytest.raises(ValueError, match=r"examples 0–31 are not finite"):
        write_targets(nan, DataLoader(data, batch_size=32), tmp_path / "t", rows=64, classes=5)
    assert list(tmp_path.iterdir()) == []


def test_top_k_at_all_classes_trains_the_same_student_as_dense(tmp_path: Path) -> None:
    data, teacher = _data(), _teacher()
    dense = write_targets(
        teacher, DataLoader(data, batch_size=64), tmp_path / "d", rows=240, classes=5
    )
    # the same outputs in the top-k layout with K = C (every class kept, largest first)
    z = dense.logits(torch.arange(240))
    val, idx = z.sort(1, descending=True)
    folder = tmp_path / "k"
    folder.mkdir()
    idx.numpy().astype(np.int32).tofile(folder / "index.i32")
    val.numpy().astype(np.float16).tofile(folder / "values.f16")
    np.zeros(240, np.float32).tofile(folder / "tail.f32")
    (folder / "targets.json").write_text('{"rows": 240, "classes": 5, "top_k": 5, "key": ""}')
    topk = TargetFile.open(folder)
    kw = dict(epochs=3, batch_size=32, temperature=3.0, alpha=0.7, seed=4)
    s1 = StreamDistiller(**kw).fit(_student, data, data, dense)
    s2 = StreamDistiller(**kw).fit(_student, data, data, topk)
    assert s1.resumed_from_ == 0 and len(s1.history_) == 3
    for p, q in zip(s1.model_.parameters(), s2.model_.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)
    assert [h["val_acc"] for h in s1.history_] == [h["val_acc"] for h in s2.history_]


def test_distillation_moves_the_student_towards_the_teacher(tmp_path: Path) -> None:
    data, teacher = _data(600), _teacher()
    t = write_targets(
        teacher, DataLoader(data, batch_size=100), tmp_path / "t", rows=600, classes=5
    )
    kd = StreamDistiller(epochs=6, batch_size=32, lr=3e-3, temperature=2.0, alpha=1.0).fit(
        _student, data, data, t
    )
    scratch = StreamDistiller(epochs=6, batch_size=32, lr=3e-3).fit(_student, data, data)
    x = data.tensors[0]

    def agree(m: nn.Module) -> torch.Tensor:
        return (m(x).argmax(1) == teacher(x).argmax(1)).float().mean()

    with torch.no_grad():
        assert agree(kd.model_) > agree(scratch.model_) + 0.05
    assert kd.channels_last_ and kd.amp_dtype_ is None  # conv student, CPU: no autocast


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    data = _data()
    with pytest.raises(ParameterError, match="amp must be one of"):
        StreamDistiller(amp="fp8").fit(_student, data, data)
    with pytest.raises(ParameterError, match="needs teacher outputs"):
        StreamDistiller(alpha=0.5).fit(_student, data, data)
    t = write_targets(_teacher(), DataLoader(_data(100)), tmp_path / "t", rows=100, classes=5)
    with pytest.raises(ParameterError, match="cover 100 examples but the training split has 240"):
        StreamDistiller(alpha=0.5).fit(_student, data, data, t)


def test_bf16_autocast_on_cpu_and_compile_are_wired() -> None:
    data = _data(96)
    s = StreamDistiller(epochs=1, batch_size=32, amp="bf16", compile="eager").fit(
        _student, data, data
    )
    assert s.amp_dtype_ is torch.bfloat16 and 0.0 <= s.best_val_acc_ <= 1.0


_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, torch
    from torch import nn
    from torch.utils.data import Dataset
    from kdcore.stream import StreamDistiller, TargetFile

    class Data(Dataset):
        # kills its own process (SIGKILL: no clean-up runs) at one item of one epoch
        def __init__(self, n, kill_at):
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(n, 1, 8, 8, generator=g)
            self.y = (self.x[:, 0, 0, :3].sum(1) > 0).long()
            self.kill_at, self.seen = kill_at, 0
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            self.seen += 1
            if self.seen == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return self.x[i], self.y[i]

    def build():
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Dropout(0.2), nn.Linear(192, 2))

    ckpt, targets, out, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    s = StreamDistiller(epochs=4, batch_size=16, temperature=2.0, alpha=0.5, seed=3,
                        checkpoint=ckpt or None)
    s.fit(build, Data(160, kill_at), Data(40, 0), TargetFile.open(targets))
    hist = [{k: v for k, v in h.items() if k != "seconds"} for h in s.history_]
    torch.save({"model": s.model_.state_dict(), "history": hist, "resumed": s.resumed_from_}, out)
    """
)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_its_last_epoch_to_the_same_student(
    tmp_path: Path,
) -> None:
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 1, 8, 8, generator=g)
    write_targets(
        _teacher(2).eval(),
        DataLoader(TensorDataset(x, torch.zeros(160)), batch_size=40),
        tmp_path / "targets",
        rows=160,
        classes=2,
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def run(ckpt: str, out: str, kill_at: int) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, str(script), ckpt, str(tmp_path / "targets"), out, str(kill_at)]
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)

    whole = run("", str(tmp_path / "whole.pt"), 0)
    assert whole.returncode == 0, whole.stderr
    # training items are 160 per epoch plus evaluation (its own dataset): item 2*160 + 70 of the
    # training set is in the middle of epoch 3
    ckpt = str(tmp_path / "ckpt" / "trial.pt")
    killed = run(ckpt, str(tmp_path / "killed.pt"), 2 * 160 + 70)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.pt").exists()
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed = run(ckpt, str(tmp_path / "resumed.pt"), 0)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "whole.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert b["resumed"] == 2 and a["resumed"] == 0
    assert a["history"] == b["history"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path: Path) -> None:
    data = _data(64)
    ckpt = tmp_path / "c.pt"
    StreamDistiller(epochs=1, batch_size=32, checkpoint=ckpt).fit(_student, data, data)
    with pytest.raises(ParameterError, match="written by another configuration"):
        StreamDistiller(epochs=1, batch_size=32, lr=0.1, checkpoint=ckpt).fit(_student, data, data)
    # the same configuration finds its run finished: nothing retrained, same selection
    again = StreamDistiller(epochs=1, batch_size=32, checkpoint=ckpt).fit(_student, data, data)
    assert again.resumed_from_ == 1 and len(again.history_) == 1
