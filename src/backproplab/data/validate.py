"""Checks on arrays fed to a model: finite values and labels in range.

Both raise a one-line, user-facing error (:class:`~backproplab.errors.NonFiniteError` or
:class:`~backproplab.errors.DataError`) that names what was wrong and the actual values.
"""

from __future__ import annotations

import numpy as np

from backproplab.errors import DataError, NonFiniteError


def check_finite(name: str, x: np.ndarray) -> None:
    """Raise :class:`NonFiniteError` naming ``name`` and the count of NaN / inf entries in ``x``.

    Integer and boolean arrays are always finite and pass without a scan.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.inexact):
        return
    finite = np.isfinite(arr)
    if finite.all():
        return
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    n_inf = int(arr.size - np.count_nonzero(finite) - n_nan)
    raise NonFiniteError(
        f"{name} has {n_nan} NaN and {n_inf} infinite values out of {arr.size} (shape {arr.shape})"
    )


def check_labels(y: np.ndarray, num_classes: int) -> None:
    """Raise :class:`DataError` unless ``y`` is a 1-D integer array with values in ``[0, num_classes)``.

    The message gives the expected range and the actual ``[min, max]`` of the labels.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"labels must be a 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {arr.dtype}")
    if num_classes < 1:
        raise DataError(f"num_classes must be at least 1, got {num_classes}")
    if arr.size == 0:
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"labels must be in [0, {num_classes}), got values in [{lo}, {hi}]")
