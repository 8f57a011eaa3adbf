"""Shared fixtures: a per-run data cache, and the real data sets when they are present."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal delivers it, whatever started the suite: a background job of a
    non-interactive shell (``cmd &``, ``nohup``) inherits SIGINT *ignored*, and so would every
    subprocess the signal tests start; the tests of Ctrl-C handling need Python's default handler."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point BACKPROPLAB_CACHE at a directory shared by this run's workers (never ~/.cache)."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if root.name.startswith("popen-gw") else root  # shared across xdist workers
    cache = root / "backproplab-cache"
    cache.mkdir(exist_ok=True)
    old = os.environ.get("BACKPROPLAB_CACHE")
    os.environ["BACKPROPLAB_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("BACKPROPLAB_CACHE", None)
    else:
        os.environ["BACKPROPLAB_CACHE"] = old


def cifar10_jpeg_path() -> Path | None:
    """The shared CIFAR-10 JPEG copy: $BACKPROPLAB_CIFAR10_JPEG, else ../shared/data beside the repo."""
    env = os.environ.get("BACKPROPLAB_CIFAR10_JPEG")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def cifar10_jpeg() -> Path:
    path = cifar10_jpeg_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have the CIFAR-10 JPEG copy in ../shared/data; it is missing")
        pytest.skip("CIFAR-10 JPEG copy not found (set BACKPROPLAB_CIFAR10_JPEG or put it in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's dataset-fashion-mnist; it is missing")
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return FASHION_MNIST_DIR
