"""Data sets turned into the float arrays a model trains on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backproplab.data import Dataset, Normalizer, check_finite, to_float


@dataclass
class PreparedData:
    """Normalised float32 arrays. MLP inputs are flat (N, C*H*W) in C, H, W order, so a flattened
    NCHW image (what ``torch.nn.Flatten`` gives) has the same layout; ConvNet inputs are NCHW."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    normalizer: Normalizer

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))


def prepare(ds: Dataset, mode: str, layout: str = "flat") -> PreparedData:
    """Convert ``ds`` to float32 in ``layout`` ("flat" or "NCHW") and normalise with ``mode``
    (statistics from the training split only)."""
    if layout not in ("flat", "NCHW"):
        raise ValueError(f"layout must be 'flat' or 'NCHW', got {layout!r}")
    x_train = to_float(ds.x_train, "NCHW")  # (N, C, H, W)
    x_test = to_float(ds.x_test, "NCHW")
    norm = Normalizer(mode, "NCHW")  # type: ignore[arg-type]  # per-channel statistics of NCHW
    norm.fit(x_train)
    x_train, x_test = norm(x_train), norm(x_test)
    if layout == "flat":
        x_train = x_train.reshape(len(x_train), -1)  # (N, C*H*W)
        x_test = x_test.reshape(len(x_test), -1)
    check_finite("training inputs", x_train)
    check_finite("test inputs", x_test)
    return PreparedData(x_train, ds.y_train, x_test, ds.y_test, ds.num_classes, norm)
