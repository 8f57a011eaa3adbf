""":func:`load_dataset`: one entry point for every data set, by name."""

from __future__ import annotations

import os
from pathlib import Path

from backproplab.data.cache import resolve_cache_dir
from backproplab.data.cifar10 import load_cifar10
from backproplab.data.dataset import Dataset
from backproplab.data.digits import load_digits_dataset
from backproplab.data.fashion_mnist import load_fashion_mnist
from backproplab.errors import DataError

DATASETS = ("cifar10", "fashion-mnist", "digits")
_ALIASES = {
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "digits": "digits",
}


def canonical_name(name: str) -> str:
    """The canonical data set name for ``name`` (case-insensitive, ``cifar-10`` -> ``cifar10``)."""
    try:
        return _ALIASES[name.strip().lower()]
    except (KeyError, AttributeError):
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}") from None


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Dataset:
    """Load data set ``name`` ("cifar10", "fashion-mnist" or "digits") as uint8 NHWC arrays.

    ``data_dir``: where the data is (``~`` is expanded). For CIFAR-10 a ``cifar-10-batches-py``
    directory or one containing it, ``cifar-10-python.tar.gz``, an image folder
    (``train/<class>/*.jpg``, ``test/<class>/*.jpg``) or a tar archive of one; for Fashion-MNIST
    a directory of its IDX files (default ``/usr/share/datasets/fashion-mnist``). The digits come
    with scikit-learn and ignore ``data_dir``.

    ``cache_dir`` (default :func:`~backproplab.data.default_cache_dir`) holds decoded arrays and
    the downloaded CIFAR-10 archive. With ``data_dir=None`` CIFAR-10 is read from the cache, and
    downloaded into it first when ``download`` is true.

    Every problem with the data (missing, corrupt, wrong format) is a
    :class:`~backproplab.errors.DataError` with a one-line message.
    """
    canonical = canonical_name(name)
    path = None if data_dir is None else Path(data_dir).expanduser().absolute()
    cache = resolve_cache_dir(cache_dir)
    if canonical == "cifar10":
        return load_cifar10(path, cache, download=download)
    if canonical == "fashion-mnist":
        return load_fashion_mnist(path, cache)
    return load_digits_dataset()
