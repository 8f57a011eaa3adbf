"""A small learnable image data set for trainer tests (importable from every test directory)."""

from __future__ import annotations

import numpy as np

from backproplab.data import Dataset


def template_dataset(
    *,
    n_train: int,
    n_test: int,
    side: int,
    noise: float,
    balanced: bool,
    channels: int = 3,
    seed: int = 0,
) -> Dataset:
    """Four classes of noisy copies of random template images (uint8 NHWC), learnable in a few steps.

    Templates ~ U(40, 215); each image is its class's template plus N(0, noise^2) pixel noise,
    clipped to 0..255. Labels cycle 0, 1, 2, 3 (``balanced``) or are drawn uniformly.
    """
    rng = np.random.default_rng(seed)
    templates = rng.uniform(40, 215, size=(4, side, side, channels))  # (4, H, W, C)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 4 if balanced else rng.integers(0, 4, size=n)  # (n,)
        x = templates[y] + rng.normal(0, noise, size=(n, side, side, channels))  # (n, H, W, C)
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    return Dataset(
        "synthetic", x_train, y_train, x_test, y_test, ("a", "b", "c", "d"), "generated in the test"
    )
