"""Fashion-MNIST from its IDX files (28x28 grey images, 10 classes).

Files (each plain or ``.gz``): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``. Without ``data_dir``,
``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) and then
``<cache_dir>/fashion-mnist`` are tried.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backproplab.data.dataset import Dataset
from backproplab.data.idx import read_idx
from backproplab.data.validate import check_labels
from backproplab.errors import DataError

NAME = "fashion-mnist"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_SUBDIR = "fashion-mnist"
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(data_dir: Path | None, cache_dir: Path) -> Dataset:
    """Load Fashion-MNIST as uint8 (N, 28, 28, 1) images and int64 labels."""
    if data_dir is None:
        candidates = [DEFAULT_DIR, cache_dir / CACHE_SUBDIR]
        found = [d for d in candidates if d.is_dir() and _find(d, FILES["train_images"]) is not None]
        if not found:
            raise DataError(
                f"Fashion-MNIST not found in {' or '.join(str(c) for c in candidates)}; install the Debian "
                f"package dataset-fashion-mnist or pass --data_dir DIR holding {FILES['train_images']}[.gz] "
                f"and the three other IDX files"
            )
        data_dir = found[0]
    if not data_dir.exists():
        raise DataError(f"Fashion-MNIST data_dir {data_dir} does not exist")
    if not data_dir.is_dir():
        raise DataError(f"Fashion-MNIST data_dir {data_dir} is a file, not a directory of IDX files")
    paths = {key: _find(data_dir, stem) for key, stem in FILES.items()}
    missing = [f"{FILES[k]}[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"Fashion-MNIST directory {data_dir} is missing {', '.join(missing)}")
    splits = {}
    for split in ("train", "test"):
        img_path, lab_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        assert img_path is not None and lab_path is not None
        images = read_idx(img_path, 3)
        labels = read_idx(lab_path, 1).astype(np.int64)
        if len(images) != len(labels):
            raise DataError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
        try:
            check_labels(labels, len(CLASSES))
        except DataError as exc:
            raise DataError(f"{lab_path}: {exc}") from None
        splits[split] = (images[..., np.newaxis], labels)
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"Fashion-MNIST train images are {x_train.shape[1]}x{x_train.shape[2]} but test images are "
            f"{x_test.shape[1]}x{x_test.shape[2]} in {data_dir}"
        )
    return Dataset(
        name=NAME,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=CLASSES,
        source=str(data_dir),
    )
