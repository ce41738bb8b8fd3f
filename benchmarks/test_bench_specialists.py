"""Speed of the specialists' KL combination: 10,000 examples x 10 specialists x 50 classes,
about 30 % of the specialists active per example, one CPU thread, solved to the default
tolerance (issue target: well under a second)."""

from __future__ import annotations

import torch

from kdcore.specialists import solve_specialist_distribution


def test_bench_specialist_solver_10k_x_10_x_50(benchmark) -> None:
    n, m, c, size = 10_000, 10, 50, 5
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(c, generator=g)
    sets = [perm[i * size : (i + 1) * size].tolist() for i in range(m)]
    pg = torch.softmax(torch.randn(n, c, generator=g) * 3, -1)
    ps = [torch.softmax(torch.randn(n, size + 1, generator=g) * 3, -1) for _ in sets]
    active = torch.rand(n, m, generator=g) < 0.3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        q = benchmark.pedantic(
            solve_specialist_distribution, args=(pg, ps, sets, active), rounds=7, warmup_rounds=1
        )
    finally:
        torch.set_num_threads(threads)
    benchmark.extra_info.update({"threads": 1, "examples": n, "specialists": m, "classes": c})
    assert q.shape == (n, c)
    assert benchmark.stats.stats.median < 1.0
