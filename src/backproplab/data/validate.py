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


def as_int_labels(labels: object) -> np.ndarray:
    """``labels`` (a sequence or array) as an int64 array, refusing anything that is not an integer.

    ``np.asarray(labels, dtype=np.int64)`` would silently truncate ``1.5`` to 1, parse the string
    ``'3'`` and take ``True`` for 1; here a float, string, bool or other non-integer label is a
    :class:`DataError` naming the first such value and its index (or the array's dtype).
    """
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu":
            raise DataError(f"labels must be integers, got an array of dtype {labels.dtype}")
        arr = labels
    else:
        try:
            items = list(labels)  # type: ignore[call-overload]
        except TypeError:
            raise DataError(f"labels must be a sequence of integers, got {type(labels).__name__}") from None
        for i, value in enumerate(items):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise DataError(
                    f"labels must be integers, got {value!r} ({type(value).__name__}) at index {i}"
                )
        try:
            arr = np.array(items, dtype=np.int64) if items else np.zeros(0, np.int64)
        except OverflowError:
            raise DataError("labels must fit in int64") from None
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise DataError(f"labels must fit in int64, got {int(arr.max())}")
    return arr.astype(np.int64)


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
