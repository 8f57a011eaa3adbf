"""``nn.blas.axpy``: BLAS axpy from NumPy's own BLAS, and its NumPy fallback."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from backproplab.nn import blas

#: BLAS may fuse the multiply and the add (one rounding) where NumPy rounds twice: the two paths
#: and the exact value differ by at most this many ulps of the larger term.
AXPY_ULPS = 2


def _exact(alpha: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y.astype(np.float64) + alpha * x.astype(np.float64)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the library lookup reads /proc/self/maps")
def test_numpy_blas_axpy_is_found_on_linux() -> None:
    assert blas.has_blas_axpy()
    assert set(blas.kernels()) == {np.dtype(np.float32), np.dtype(np.float64)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [0, 1, 7, 100_003])
@pytest.mark.parametrize("use_blas", [True, False])
def test_axpy_matches_the_exact_value(dtype: type, size: int, use_blas: bool) -> None:
    rng = np.random.default_rng(size)
    x = rng.normal(size=size).astype(dtype)
    y = rng.normal(size=size).astype(dtype)
    alpha = -0.37
    expected = _exact(alpha, x, y)
    scale = np.maximum(np.abs(y), np.abs(alpha * x)).astype(dtype)
    blas.axpy(alpha, x, y, use_blas=use_blas)
    assert y.dtype == dtype
    assert np.all(np.abs(y - expected) <= AXPY_ULPS * np.spacing(scale).astype(np.float64))


def test_axpy_on_views_strides_and_overlap_takes_numpy() -> None:
    """Non-contiguous, read-only-source and overlapping arguments give the formula's values."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 30)).astype(np.float32)
    y = base.copy()[:, ::2]  # strided destination
    x = rng.normal(size=y.shape).astype(np.float32)
    expected = _exact(2.0, x, y)
    blas.axpy(2.0, x, y)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    z = rng.normal(size=1000).astype(np.float32)
    expected = _exact(0.5, z[:500], z[250:750])
    blas.axpy(0.5, z[:500], z[250:750])  # overlapping: y += alpha * x must read x before writing
    np.testing.assert_allclose(z[250:750], expected, rtol=1e-6)


def test_axpy_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="one shape and dtype"):
        blas.axpy(1.0, np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="one shape and dtype"):
        blas.axpy(1.0, np.ones(3, np.float64), np.ones(3, np.float32))


def test_a_binding_that_does_not_compute_axpy_is_rejected() -> None:
    def does_nothing(n: int, alpha: float, x: int, incx: int, y: int, incy: int) -> None:
        return None

    def writes_too_far(n: int, alpha: float, x: int, incx: int, y: int, incy: int) -> None:
        out = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * (n + 1)).from_address(y))
        out[:] += 1.0

    assert not blas._works(does_nothing, np.dtype(np.float32))
    assert not blas._works(writes_too_far, np.dtype(np.float32))
    for dtype, kernel in blas.kernels().items():  # the bound symbols pass the same check
        assert blas._works(kernel, dtype)
