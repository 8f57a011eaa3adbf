"""Batches of prepared samples for the verification tools (``parity``, ``doctor``): a random draw of
training samples of a real data set, or synthetic data of CIFAR-10's shape."""

from __future__ import annotations

import numpy as np

from backproplab.data import load_dataset
from backproplab.training.prepared_data import prepare

#: Synthetic data: CIFAR-10's flattened image size and class count.
SYNTHETIC_FEATURES, SYNTHETIC_CLASSES = 3072, 10


def synthetic_data(
    n: int,
    rng: np.random.Generator,
    n_features: int = SYNTHETIC_FEATURES,
    num_classes: int = SYNTHETIC_CLASSES,
) -> tuple[np.ndarray, np.ndarray, int]:
    """x ~ N(0, 1) float32 (n, n_features) and uniform random labels (n,): learnable by memorising."""
    x = rng.standard_normal((n, n_features), dtype=np.float32)  # (n, D)
    y = rng.integers(0, num_classes, size=n, dtype=np.int64)  # (n,)
    return x, y, num_classes


def sample_batch(
    dataset: str | None,
    data_dir: str | None,
    preprocess: str,
    n: int,
    rng: np.random.Generator,
    layout: str = "flat",
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(x float32, y (n,), num_classes, description): ``n`` random training samples, flat (n, D)
    or images (n, C, H, W) for ``layout="NCHW"``.

    ``dataset=None`` gives :func:`synthetic_data` (of CIFAR-10's image shape for NCHW).
    """
    if dataset is None:
        x, y, c = synthetic_data(n, rng)
        if layout == "NCHW":
            x = x.reshape(n, 3, 32, 32)  # (n, C, H, W)
        return x, y, c, f"synthetic data: {n} samples of shape {x.shape[1:]}, N(0,1), {c} random classes"
    ds = load_dataset(dataset, data_dir)
    data = prepare(ds, preprocess, layout=layout)
    idx = rng.choice(len(data.x_train), size=min(n, len(data.x_train)), replace=False)
    return (
        data.x_train[idx],
        data.y_train[idx],
        data.num_classes,
        f"{ds.name}: {len(idx)} training samples from {ds.source}",
    )
