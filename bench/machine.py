"""The machine's state, printed beside every speed measurement (numpy only: no torch needed).

Importing it also sets the host allocator as the CLI does (`jax_inpaint.allocator`;
JAX_INPAINT_HOST_ALLOCATOR=default keeps glibc's settings): a speed script imports it before jax, so that
JAX's CPU client starts on it, and torch, timed in the same process, runs on the same allocator.
"""
from __future__ import annotations

import numpy as np

from jax_inpaint.allocator import tune_host_allocator

HOST_ALLOCATOR = "tuned" if tune_host_allocator() else "default"


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
