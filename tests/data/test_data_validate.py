"""check_finite and check_labels."""

from __future__ import annotations

import numpy as np
import pytest

from backproplab.data import check_finite, check_labels
from backproplab.errors import BackproplabError, DataError, NonFiniteError


def test_check_finite_counts():
    x = np.zeros((4, 5), np.float32)
    x[0, 0] = x[1, 1] = np.nan
    x[2, 2] = np.inf
    x[3, 3] = x[3, 4] = -np.inf
    with pytest.raises(
        NonFiniteError, match=r"inputs has 2 NaN and 3 infinite values out of 20 \(shape \(4, 5\)\)"
    ):
        check_finite("inputs", x)


def test_check_finite_passes():
    check_finite("ok", np.ones(3))
    check_finite("ints", np.array([1, 2, 3]))
    check_finite("empty", np.zeros(0, np.float32))


def test_nonfinite_is_a_user_error():
    with pytest.raises(BackproplabError):
        check_finite("loss", np.array(np.nan))
    with pytest.raises(FloatingPointError):
        check_finite("loss", np.array(np.inf))


def test_check_labels():
    check_labels(np.array([0, 9, 3]), 10)
    check_labels(np.zeros(0, np.int64), 10)
    with pytest.raises(DataError, match=r"labels must be in \[0, 10\), got values in \[-1, 12\]"):
        check_labels(np.array([3, -1, 12]), 10)
    with pytest.raises(DataError, match="labels must be integers, got dtype float64"):
        check_labels(np.array([0.0, 1.0]), 10)
    with pytest.raises(DataError, match=r"1-D array, got shape \(2, 2\)"):
        check_labels(np.zeros((2, 2), np.int64), 10)
