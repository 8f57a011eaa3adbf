"""A small learnable image data set for trainer tests (importable from every test directory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

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


def write_image_folder(ds: Dataset, root: Path) -> Path:
    """Write ``ds`` as an image folder, ``root/train/<class>/<index>.png`` and ``root/test/...``;
    return ``root``.

    ``--data_dir root`` loads it (as CIFAR-10, whose loader reads image folders of any image size):
    the same pixels (PNG is lossless) and labels, grouped by class, the loader's order. The images
    must have 3 channels (the loader decodes to RGB) and the class names must sort in label order.
    """
    if list(ds.classes) != sorted(ds.classes) or ds.x_train.shape[-1] != 3:
        raise ValueError("an image folder needs RGB images and class names that sort in label order")
    for split, xs, ys in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        for cls in ds.classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(xs, ys, strict=True)):
            Image.fromarray(img).save(root / split / ds.classes[int(label)] / f"{i:05d}.png")
    return root
