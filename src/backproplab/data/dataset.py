"""The in-memory :class:`Dataset`: uint8 images and int64 labels of a train and a test split."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from backproplab.data.validate import check_labels
from backproplab.errors import DataError


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A labelled image data set, as loaded from disk and before any preprocessing.

    Conventions:

    * ``x_train`` (N, H, W, C) and ``x_test`` (M, H, W, C) are ``uint8`` in 0..255, channels
      last (C = 3 for CIFAR-10, C = 1 for the grey sets). Use
      :func:`backproplab.data.to_float` to get float32 in NHWC, NCHW or flat layout.
    * ``y_train`` (N,) and ``y_test`` (M,) are ``int64`` in ``[0, len(classes))``; label ``k``
      is ``classes[k]``.
    * ``source`` says, in words, where the arrays were read from (a path, and whether a cache of
      decoded arrays was used), for a one-line log.

    The constructor checks dtypes, shapes and label ranges and raises
    :class:`~backproplab.errors.DataError` on any mismatch.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.classes:
            raise DataError(f"{self.name}: a data set needs at least one class, got none")
        if len(set(self.classes)) != len(self.classes):
            raise DataError(f"{self.name}: class names must be unique, got {list(self.classes)}")
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
                raise DataError(
                    f"{self.name}: x_{split} must be a uint8 array of shape (N, H, W, C), got "
                    f"{type(x).__name__} {getattr(x, 'dtype', '?')} {getattr(x, 'shape', '?')}"
                )
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
                raise DataError(
                    f"{self.name}: y_{split} must be an int64 array of shape (N,), got "
                    f"{type(y).__name__} {getattr(y, 'dtype', '?')} {getattr(y, 'shape', '?')}"
                )
            if len(x) != len(y):
                raise DataError(
                    f"{self.name}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels"
                )
            try:
                check_labels(y, len(self.classes))
            except DataError as exc:
                raise DataError(f"{self.name}: y_{split}: {exc}") from None
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {self.x_train.shape[1:]} (H, W, C) but test images are "
                f"{self.x_test.shape[1:]}"
            )

    # ------------------------------------------------------------------ sizes
    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (H, W, C)."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)

    @property
    def num_features(self) -> int:
        """H * W * C, the input size of an MLP on the flattened images."""
        h, w, c = self.input_shape
        return h * w * c

    @property
    def n_train(self) -> int:
        """Number of training images."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test images."""
        return int(self.x_test.shape[0])

    def describe(self) -> str:
        """One line for a log: name, sizes, image shape, class count and source."""
        h, w, c = self.input_shape
        return (
            f"{self.name}: {self.n_train} train / {self.n_test} test images, {h}x{w}x{c}, "
            f"{self.num_classes} classes, from {self.source}"
        )

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, x_test={self.x_test.shape}, "
            f"classes={self.classes!r}, source={self.source!r})"
        )

    # ------------------------------------------------------------------ subsets
    def subset(self, n_train: int | None, n_test: int | None, rng: np.random.Generator) -> Dataset:
        """A random subset: ``n_train`` training and ``n_test`` test images drawn without replacement.

        ``None`` keeps a split whole (and in order). The chosen indices are sorted, so the
        subset keeps the original relative order; no stratification. Asking for more images than a
        split has, or fewer than one, is a :class:`DataError`.
        """
        x_train, y_train = _pick(self.name, "train", self.x_train, self.y_train, n_train, rng)
        x_test, y_test = _pick(self.name, "test", self.x_test, self.y_test, n_test, rng)
        return replace(self, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _pick(
    name: str, split: str, x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if n is None:
        return x, y
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise DataError(f"{name}: n_{split} must be an integer or None, got {n!r}")
    if not 1 <= n <= len(x):
        raise DataError(f"{name}: n_{split} must be in [1, {len(x)}] (the {split} split's size), got {n}")
    idx = np.sort(rng.choice(len(x), size=int(n), replace=False))
    return x[idx], y[idx]
