"""``y <- y + alpha * x`` in one pass: BLAS axpy from the BLAS library NumPy itself loaded.

NumPy has no fused multiply-add ufunc, so ``p -= lr * g`` costs two passes over memory (a product
into a temporary, then the subtraction) where an optimizer's update needs one. Level-1 BLAS has
that one pass, ``axpy``, and the library NumPy links for its matrix products (OpenBLAS in the
PyPI wheels) runs it over its own threads. NumPy does not expose it, so :func:`axpy` calls it
through ctypes: the library is found among the shared objects this process has loaded (Linux's
``/proc/self/maps``) and the symbol among the names NumPy's OpenBLAS builds use
(``scipy_cblas_saxpy64_`` for the 64-bit-integer ``scipy-openblas64`` of NumPy >= 2, plain
``cblas_saxpy`` elsewhere). Where none is found (another OS, another BLAS), or for other dtypes,
strides or overlapping arrays, :func:`axpy` falls back to NumPy ufuncs, which give the same values
up to one float32 rounding (BLAS may fuse the multiply and the add).

Each element is computed independently, so results do not depend on BLAS's thread count.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Callable

import numpy as np

#: Library file names searched for among the loaded shared objects (NumPy's BLAS is loaded with NumPy).
_LIBRARY_PATTERN = re.compile(r"(openblas|mkl_rt|libblas|libcblas|libflexiblas)[^/]*\.(so|dylib)", re.I)
#: (symbol template, 64-bit integer interface) pairs tried in each library; {t} is s or d.
_SYMBOLS = (
    ("scipy_cblas_{t}axpy64_", True),  # NumPy >= 2 wheels: scipy-openblas64
    ("cblas_{t}axpy64_", True),  # NumPy 1.2x wheels: openblas64_
    ("cblas_{t}axpy", False),  # system OpenBLAS, MKL (LP64), reference CBLAS
)
#: The dtypes with a BLAS axpy: float32 (saxpy) and float64 (daxpy).
_BLAS_TYPES: dict[np.dtype, tuple[str, type]] = {
    np.dtype(np.float32): ("s", ctypes.c_float),
    np.dtype(np.float64): ("d", ctypes.c_double),
}

_Axpy = Callable[[int, float, int, int, int, int], None]
_kernels: dict[np.dtype, _Axpy] | None = None


def _loaded_libraries() -> list[str]:
    """Paths of the BLAS-like shared objects mapped into this process (Linux; elsewhere none)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if _LIBRARY_PATTERN.search(os.path.basename(p)) and os.path.isfile(p))


def _bind(lib: ctypes.CDLL, template: str, ilp64: bool, letter: str, scalar: type) -> _Axpy | None:
    fn = getattr(lib, template.format(t=letter), None)
    if fn is None:
        return None
    integer = ctypes.c_int64 if ilp64 else ctypes.c_int
    fn.restype = None
    fn.argtypes = [integer, scalar, ctypes.c_void_p, integer, ctypes.c_void_p, integer]
    return fn


def _works(fn: _Axpy, dtype: np.dtype) -> bool:
    """A check on a small array that the bound symbol computes y + alpha x (a wrong integer width
    or calling convention would not)."""
    x = np.arange(1, 6, dtype=dtype)
    y = np.full(6, 10.0, dtype=dtype)  # the last element must stay untouched
    fn(5, 2.0, x.ctypes.data, 1, y.ctypes.data, 1)
    return bool(np.array_equal(y, np.array([12, 14, 16, 18, 20, 10], dtype=dtype)))


def _find_kernels() -> dict[np.dtype, _Axpy]:
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library and thread pool as NumPy's
        except OSError:
            continue
        for template, ilp64 in _SYMBOLS:
            found: dict[np.dtype, _Axpy] = {}
            for dtype, (letter, scalar) in _BLAS_TYPES.items():
                fn = _bind(lib, template, ilp64, letter, scalar)
                if fn is not None and _works(fn, dtype):
                    found[dtype] = fn
            if len(found) == len(_BLAS_TYPES):
                return found
    return {}


def kernels() -> dict[np.dtype, _Axpy]:
    """The BLAS axpy kernels by dtype (empty when none was found; looked up once)."""
    global _kernels
    if _kernels is None:
        _kernels = _find_kernels()
    return _kernels


def has_blas_axpy() -> bool:
    """Whether :func:`axpy` runs in BLAS here (for float32 and float64 contiguous arrays)."""
    return bool(kernels())


def axpy(alpha: float, x: np.ndarray, y: np.ndarray, *, use_blas: bool = True) -> None:
    """y <- y + alpha * x in place (``x``, ``y`` of the same shape and dtype).

    One BLAS pass when both are C-contiguous float32 or float64 arrays that do not overlap and
    BLAS axpy was found (``use_blas=False`` forces the NumPy path: ``y += alpha * x``).
    """
    if x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(
            f"axpy needs x and y of one shape and dtype, got {x.shape} {x.dtype} and {y.shape} {y.dtype}"
        )
    fn = kernels().get(y.dtype) if use_blas else None
    if (
        fn is not None
        and x.flags.c_contiguous
        and y.flags.c_contiguous
        and y.flags.writeable
        and not np.may_share_memory(x, y)
    ):
        fn(y.size, float(alpha), x.ctypes.data, 1, y.ctypes.data, 1)
        return
    y += np.multiply(x, alpha, dtype=y.dtype)
