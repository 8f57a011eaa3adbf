"""The Dataset container: validation, sizes and random subsets."""

from __future__ import annotations

import numpy as np
import pytest

from backproplab.data import Dataset
from backproplab.errors import DataError


def make(n_train=30, n_test=10, shape=(4, 5, 3), k=3, **overrides) -> Dataset:
    rng = np.random.default_rng(0)
    fields = dict(
        name="toy",
        x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        y_train=np.arange(n_train, dtype=np.int64) % k,
        x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        y_test=np.arange(n_test, dtype=np.int64) % k,
        classes=tuple(f"c{i}" for i in range(k)),
        source="memory",
    )
    fields.update(overrides)
    return Dataset(**fields)


def test_properties():
    ds = make()
    assert ds.num_classes == 3
    assert ds.input_shape == (4, 5, 3)
    assert ds.num_features == 60
    assert (ds.n_train, ds.n_test) == (30, 10)
    assert ds.describe() == "toy: 30 train / 10 test images, 4x5x3, 3 classes, from memory"
    assert "x_train=(30, 4, 5, 3)" in repr(ds)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"x_train": np.zeros((30, 4, 5, 3), np.float32)}, r"x_train must be a uint8 array .* float32"),
        ({"x_train": np.zeros((30, 60), np.uint8)}, r"x_train must be a uint8 array of shape \(N, H, W, C\)"),
        ({"y_test": np.zeros(10, np.int32)}, r"y_test must be an int64 array"),
        ({"y_train": np.zeros(29, np.int64)}, r"x_train has 30 images but y_train has 29 labels"),
        ({"y_test": np.full(10, 3, np.int64)}, r"y_test: labels must be in \[0, 3\), got values in \[3, 3\]"),
        (
            {"x_test": np.zeros((10, 4, 4, 3), np.uint8)},
            r"train images are \(4, 5, 3\) .* test images are \(4, 4, 3\)",
        ),
        ({"classes": ()}, "at least one class"),
        ({"classes": ("a", "a", "b")}, "class names must be unique"),
    ],
)
def test_validation(overrides, pattern):
    with pytest.raises(DataError, match=pattern):
        make(**overrides)


def test_subset_sizes_and_content():
    ds = make()
    sub = ds.subset(12, None, np.random.default_rng(1))
    assert (sub.n_train, sub.n_test) == (12, 10)
    assert sub.x_test is ds.x_test
    # Every chosen row is a distinct row of the original, with its own label, in original order.
    flat = ds.x_train.reshape(30, -1)
    idx = [int(np.flatnonzero((flat == row).all(axis=1))[0]) for row in sub.x_train.reshape(12, -1)]
    assert len(set(idx)) == 12 and idx == sorted(idx)
    np.testing.assert_array_equal(sub.y_train, ds.y_train[idx])
    assert sub.classes == ds.classes and sub.name == ds.name


def test_subset_is_deterministic_and_random():
    ds = make(n_train=200)
    a = ds.subset(50, 5, np.random.default_rng(7))
    b = ds.subset(50, 5, np.random.default_rng(7))
    c = ds.subset(50, 5, np.random.default_rng(8))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_train, ds.x_train[:50])  # not just the first rows


@pytest.mark.parametrize(
    ("n_train", "n_test", "pattern"),
    [
        (31, None, r"n_train must be in \[1, 30\]"),
        (None, 0, r"n_test must be in \[1, 10\]"),
        (2.5, None, "must be an integer"),
    ],
)
def test_subset_bad_sizes(n_train, n_test, pattern):
    with pytest.raises(DataError, match=pattern):
        make().subset(n_train, n_test, np.random.default_rng(0))
