"""BatchIterator (shuffled, infinite) and iterate_minibatches (sequential)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backproplab.data import BatchIterator, iterate_minibatches
from backproplab.errors import DataError


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_each_index_once_per_epoch(n, data, seed):
    bs = data.draw(st.integers(1, n))
    it = BatchIterator(n, bs, np.random.default_rng(seed))
    per_epoch = n // bs
    assert it.batches_per_epoch == per_epoch
    for epoch in range(3):
        batches = [next(it) for _ in range(per_epoch)]
        assert it.epoch == epoch and it.step == (epoch + 1) * per_epoch
        assert all(b.shape == (bs,) and b.dtype == np.int64 for b in batches)
        seen = np.concatenate(batches)
        assert len(np.unique(seen)) == per_epoch * bs  # no repeats within an epoch
        assert seen.min() >= 0 and seen.max() < n


def test_reshuffled_between_epochs_and_tail_dropped():
    it = BatchIterator(103, 10, np.random.default_rng(0))
    e0 = np.concatenate([next(it) for _ in range(10)])
    e1 = np.concatenate([next(it) for _ in range(10)])
    assert it.epoch == 1
    assert len(e0) == 100 and len(np.unique(e0)) == 100
    assert not np.array_equal(e0, e1)
    assert set(e0) != set(range(100))  # the 3 dropped indices are random, not always the last
    next(it)
    assert it.epoch == 2


def test_deterministic_for_a_seed():
    a = list(itertools.islice(BatchIterator(50, 8, np.random.default_rng(3)), 25))
    b = list(itertools.islice(BatchIterator(50, 8, np.random.default_rng(3)), 25))
    c = list(itertools.islice(BatchIterator(50, 8, np.random.default_rng(4)), 25))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_full_batch_is_a_permutation():
    it = BatchIterator(7, 7, np.random.default_rng(0))
    assert sorted(next(it).tolist()) == list(range(7))
    assert it.batches_per_epoch == 1


@pytest.mark.parametrize(
    ("n", "bs", "pattern"),
    [
        (10, 11, "batch_size 11 is larger than the number of training examples 10"),
        (10, 0, "batch_size must be a positive integer"),
        (0, 1, "number of examples must be a positive integer"),
    ],
)
def test_bad_sizes(n, bs, pattern):
    with pytest.raises(DataError, match=pattern):
        BatchIterator(n, bs, np.random.default_rng(0))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), bs=st.integers(1, 600))
def test_iterate_minibatches(n, bs):
    batches = list(iterate_minibatches(n, bs))
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(n))
    assert all(len(b) == bs for b in batches[:-1])
    assert 1 <= len(batches[-1]) <= bs
    assert len(batches) == -(-n // bs)


def test_iterate_minibatches_bad_size():
    with pytest.raises(DataError, match="batch_size must be a positive integer"):
        list(iterate_minibatches(5, 0))
