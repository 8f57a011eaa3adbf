"""Alternating timings of two competing implementations, with a pause between them.

NumPy's OpenBLAS keeps its idle worker threads spinning for 2^28 CPU cycles (about 0.1 s here)
after each call before they sleep, and PyTorch's OpenMP threads spin briefly too. Timed back to
back, one framework's spinning threads would take a core from the other's next measurement (seen
here: PyTorch's ConvNet step 5% slower right after a NumPy step). A pause of :data:`SETTLE_S`
before every timed call lets them go to sleep, so each side is timed on a quiet machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds of pause before each timed call (more than OpenBLAS's 0.11 s spin at 2.45 GHz).
SETTLE_S = 0.3


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes, after a pause of SETTLE_S."""
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(
    fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds of ``repeats`` calls each of fn_a and fn_b, timed alternately (a, b, a, b, ...) after
    one untimed warm-up call each, every call after a pause (see the module docstring)."""
    fn_a(), fn_b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(fn_a))
        tb.append(timed(fn_b))
    return ta, tb
