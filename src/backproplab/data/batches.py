"""Minibatch index streams: shuffled for training, sequential for evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from backproplab.errors import DataError


def _check_sizes(n: int, batch_size: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"the number of examples must be a positive integer, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")


class BatchIterator:
    """Infinite iterator of training minibatches: int64 index arrays of exactly ``batch_size``.

    Each epoch is a fresh permutation of ``range(n)`` drawn from ``rng``, cut into
    ``n // batch_size`` batches; the incomplete tail (``n % batch_size`` indices) is dropped, as
    ``torch.utils.data.DataLoader(drop_last=True)`` does. Within an epoch every index appears at
    most once. The same ``rng`` seed gives the same stream.

    Counters: ``epoch`` is the 0-based epoch of the batch last returned (0 before the first),
    ``step`` the number of batches returned so far.
    """

    def __init__(self, n: int, batch_size: int, rng: np.random.Generator) -> None:
        _check_sizes(n, batch_size)
        if batch_size > n:
            raise DataError(f"batch_size {batch_size} is larger than the number of training examples {n}")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.rng = rng
        self.batches_per_epoch = self.n // self.batch_size
        self.epoch = 0
        self.step = 0
        self._perm: np.ndarray | None = None
        self._pos = 0  # batch index within the current epoch

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> np.ndarray:
        if self._perm is None or self._pos == self.batches_per_epoch:
            if self._perm is not None:
                self.epoch += 1
            self._perm = self.rng.permutation(self.n)
            self._pos = 0
        lo = self._pos * self.batch_size
        batch = self._perm[lo : lo + self.batch_size]
        self._pos += 1
        self.step += 1
        return batch

    def __repr__(self) -> str:
        return (
            f"BatchIterator(n={self.n}, batch_size={self.batch_size}, epoch={self.epoch}, step={self.step})"
        )


def iterate_minibatches(n: int, batch_size: int) -> Iterator[np.ndarray]:
    """Sequential int64 index arrays ``[0, bs), [bs, 2 bs), ...`` covering ``range(n)`` once.

    For evaluation: no shuffling, and the last batch may be smaller than ``batch_size``.
    """
    _check_sizes(n, batch_size)
    for lo in range(0, int(n), int(batch_size)):
        yield np.arange(lo, min(lo + int(batch_size), int(n)), dtype=np.int64)
