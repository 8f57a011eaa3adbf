"""scikit-learn's 8x8 handwritten digits, as a small real data set that needs no files.

``load_digits`` gives 1797 images with values 0..16; they are rescaled to uint8 with
``round(x * 255 / 16)`` and split by a fixed permutation (``np.random.default_rng(0)``) into
1437 training and 360 test images. Shapes: (N, 8, 8, 1).
"""

from __future__ import annotations

import numpy as np

from backproplab.data.dataset import Dataset
from backproplab.errors import DataError

NAME = "digits"
N_TEST = 360
SPLIT_SEED = 0


def load_digits_dataset() -> Dataset:
    """Load the digits data set (needs scikit-learn)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the digits data set needs scikit-learn: pip install scikit-learn "
            "(or pip install backproplab[digits])"
        ) from None
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    target = np.asarray(bunch.target, dtype=np.int64)
    x = np.rint(images * 255.0 / 16.0).clip(0, 255).astype(np.uint8)[..., np.newaxis]
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    train, test = perm[:-N_TEST], perm[-N_TEST:]
    return Dataset(
        name=NAME,
        x_train=x[train],
        y_train=target[train],
        x_test=x[test],
        y_test=target[test],
        classes=tuple(str(d) for d in range(10)),
        source="scikit-learn load_digits (bundled with scikit-learn)",
    )
