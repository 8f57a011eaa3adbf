"""The machine's limit, measured in the same run as a benchmark: float32 GEMM GFLOP/s with NumPy's
BLAS (imported by the benchmark scripts after they have set the thread count)."""

from __future__ import annotations

import time

import numpy as np

GEMM_SIZE = 3072


def gemm_gflops(size: int = GEMM_SIZE, repeats: int = 3) -> float:
    """GFLOP/s of a float32 (size x size) @ (size x size) product with NumPy's BLAS (median of repeats)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / float(np.median(times)) / 1e9
