"""Element-wise work split across threads, in cache-sized blocks.

NumPy releases the GIL inside ufunc loops over large arrays, so a few Python threads that each
run the same ufuncs on their own slice of an array use several cores, as BLAS does for the
matrix products. :func:`parallel_blocks` cuts ``range(size)`` into one contiguous part per thread
and each part into blocks of ``block`` elements, so that the temporaries of a chain of ufuncs
(an optimizer update, an activation) stay in the cache instead of streaming through memory once
per operation. Each element is computed by exactly the same operations as without the split, so
results do not depend on the thread count or the block size.

The thread count is :func:`num_threads`: ``BACKPROPLAB_NUM_THREADS``, else ``OMP_NUM_THREADS``,
else ``OPENBLAS_NUM_THREADS``, else the CPUs this process may run on; :func:`set_num_threads`
overrides it. Work below :data:`MIN_PARALLEL_ELEMENTS` per thread runs on the calling thread
(handing a task to a thread costs tens of microseconds). Functions passed in must not call BLAS
(which has its own threads) and must only write to their own slice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

#: Elements per block of a blocked element-wise chain (256 KiB of float32 per array operand: measured best for Adam).
BLOCK_ELEMENTS = 1 << 16
#: Below this many elements per thread, element-wise work is not split across threads.
MIN_PARALLEL_ELEMENTS = 1 << 16

_ENV_VARS = ("BACKPROPLAB_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_lock = threading.Lock()
_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _default_threads() -> int:
    for var in _ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def num_threads() -> int:
    """The number of threads element-wise work is split across (see the module docstring)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for element-wise work (1: no threads at all); ``None`` restores the default."""
    global _threads
    if n is not None and n < 1:
        raise ValueError(f"set_num_threads needs n >= 1 or None, got {n}")
    _threads = n


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool, _pool_size = ThreadPoolExecutor(workers, thread_name_prefix="backproplab"), workers
        return _pool


def split(size: int, parts: int) -> list[slice]:
    """``range(size)`` as ``parts`` contiguous slices whose lengths differ by at most one."""
    bounds = [size * k // parts for k in range(parts + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(parts)]


def parallel_blocks(
    size: int,
    fn: Callable[[slice], None],
    block: int | None = None,
    min_parallel: int | None = None,
) -> None:
    """Call ``fn(s)`` for slices ``s`` of at most ``block`` elements that cover ``range(size)`` once.

    With more than one thread and at least ``min_parallel`` elements per thread, the range is
    first split into one contiguous part per thread, which the threads work through in parallel
    (the calling thread takes the first part). ``fn`` must only touch its slice; exceptions
    propagate to the caller. ``block`` and ``min_parallel`` default to :data:`BLOCK_ELEMENTS` and
    :data:`MIN_PARALLEL_ELEMENTS` (read at each call).
    """
    block = BLOCK_ELEMENTS if block is None else block
    min_parallel = MIN_PARALLEL_ELEMENTS if min_parallel is None else min_parallel
    threads = min(num_threads(), max(1, size // max(1, min_parallel)))

    def run(part: slice) -> None:
        for start in range(part.start, part.stop, block):
            fn(slice(start, min(start + block, part.stop)))

    _run_parts(run, size, threads)


def parallel_rows(n_rows: int, fn: Callable[[slice], None], row_elements: int) -> None:
    """Call ``fn(s)`` once per thread with contiguous row slices ``s`` covering ``range(n_rows)``.

    For element-wise work along the first axis of arrays with ``row_elements`` elements per row
    (whole rows, no cache blocking: for operations such as strided window maxima).
    """
    threads = min(num_threads(), n_rows, max(1, n_rows * row_elements // MIN_PARALLEL_ELEMENTS))
    _run_parts(fn, n_rows, threads)


def _run_parts(fn: Callable[[slice], None], size: int, threads: int) -> None:
    """``fn`` on ``threads`` contiguous parts of ``range(size)``: the first on the calling thread, the
    others on the pool; waits for all (and re-raises their exceptions)."""
    if threads <= 1:
        fn(slice(0, size))
        return
    parts = split(size, threads)
    futures = [_executor(threads - 1).submit(fn, part) for part in parts[1:]]
    fn(parts[0])
    for f in futures:
        f.result()


#: Bytes of input per chunk of rows in :func:`row_chunks`: about one core's L2 cache (1 MiB here), so
#: that a chunk's input, output and scratch stay in the cache across the operations on it (for the
#: max-pools of the ConvNet, 1 MiB measured faster than 0.5 or 2 MiB).
CHUNK_BYTES = 1 << 20


def row_chunks(rows: slice, row_bytes: int) -> list[slice]:
    """``rows`` (a slice with a stop) cut into consecutive slices of about :data:`CHUNK_BYTES` of
    ``row_bytes`` each (at least one row per slice)."""
    step = max(1, CHUNK_BYTES // max(1, row_bytes))
    return [slice(a, min(a + step, rows.stop)) for a in range(rows.start or 0, rows.stop, step)]
