"""The real data sets on this machine; skipped only when the data is absent.

The CIFAR-10 JPEG archive is decoded once per session (about 10 s) into a temporary cache, which
the second-load test then reads back.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from backproplab.data import Dataset, decode, load_dataset
from backproplab.data.fashion_mnist import DEFAULT_DIR as FASHION_DIR

pytestmark = [pytest.mark.realdata, pytest.mark.xdist_group("cifar10")]

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def cifar_first_load(cifar10_jpeg: Path, tmp_path_factory) -> tuple[Dataset, Path, Path, float]:
    cache = tmp_path_factory.mktemp("cifar_cache")
    t0 = time.perf_counter()
    ds = load_dataset("cifar10", cifar10_jpeg, cache_dir=cache)
    return ds, cifar10_jpeg, cache, time.perf_counter() - t0


def test_cifar_jpeg(cifar_first_load):
    ds, path, _, seconds = cifar_first_load
    print(f"\nfirst load of {path}: {seconds:.2f} s ({ds.source})")
    assert ds.classes == CIFAR_CLASSES
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10), np.full(10, 5000))
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), np.full(10, 1000))
    # Real photos, not blank or constant arrays: CIFAR-10's mean pixel is about 120.
    sample = ds.x_train[::50].astype(np.float32)  # 1000 images: enough, and fast
    assert 100 < sample.mean() < 140 and sample.std() > 50


def test_cifar_jpeg_second_load_is_cached(cifar_first_load, monkeypatch):
    first, path, cache, _ = cifar_first_load

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(decode, "decode_images", no_decode)
    t0 = time.perf_counter()
    ds = load_dataset("cifar10", path, cache_dir=cache)
    seconds = time.perf_counter() - t0
    print(f"\nsecond (cached) load of {path}: {seconds:.3f} s")
    # np.array_equal: assert_array_equal is seconds slower on 150 MB.
    assert np.array_equal(ds.x_train, first.x_train) and np.array_equal(ds.x_test, first.x_test)
    assert np.array_equal(ds.y_train, first.y_train) and np.array_equal(ds.y_test, first.y_test)


def test_fashion_mnist(fashion_mnist_dir: Path):
    assert fashion_mnist_dir == FASHION_DIR  # the loader's default is Debian's location
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_test.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), np.full(10, 1000))
    assert ds.x_train.max() == 255 and ds.num_classes == 10
