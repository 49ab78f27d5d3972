"""The machine's state, printed beside every speed measurement (numpy only: no torch needed)."""
from __future__ import annotations

import numpy as np


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The machine's state: float32 GFLOP/s of an n x n matrix product (numpy, best of `repeats`)."""
    import time

    a = np.random.RandomState(0).rand(n, n).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9
