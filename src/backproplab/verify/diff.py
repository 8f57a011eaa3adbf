"""How far a NumPy tensor is from its PyTorch reference: the numbers of one parity-table row.

For a value A (NumPy) and reference B (PyTorch), computed in float64:

* ``max_abs_err``  = max |A - B|
* ``max_rel_err``  = max |A - B| / max |B|: the largest error relative to the reference's scale.
  An element-wise |A - B| / |B| is meaningless where B crosses zero (a bias gradient summed over
  the batch, a pre-activation), so the scale is the tensor's largest magnitude.
* ``cosine``       = <A, B> / (||A|| ||B||): 1 when the directions agree
* ``norm_ratio``   = ||A|| / ||B||: the NumPy norm over the reference norm (B for a loss summed
  instead of averaged over a batch of B)
* ``norm_rel_err`` = ||A - B|| / ||B||: the error relative to the reference's norm

Agreement: same shape, all finite and ``max_rel_err <= rtol``, with ``rtol`` from
:data:`AGREE_RTOL` for the dtype: float32 rounding of a matmul over a few thousand terms gives
about 1e-6, so 1e-4 leaves a wide margin and still catches every bug this package plants.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Largest ``max_rel_err`` still reported as agreement (rounding), by dtype of the compared models.
AGREE_RTOL: dict[str, float] = {"float32": 1e-4, "float64": 1e-9}


def agree_rtol(dtype: np.dtype | type | str) -> float:
    """The agreement tolerance for a model of ``dtype`` (float32's for anything else)."""
    return AGREE_RTOL.get(np.dtype(dtype).name, AGREE_RTOL["float32"])


@dataclass
class TensorDiff:
    """The comparison numbers of one tensor against its reference (see the module docstring)."""

    shape: tuple[int, ...]
    ref_shape: tuple[int, ...]
    max_abs_err: float
    max_rel_err: float
    cosine: float
    norm_ratio: float
    norm_rel_err: float
    finite: bool

    @property
    def same_shape(self) -> bool:
        return self.shape == self.ref_shape

    def agrees(self, rtol: float) -> bool:
        """Same shape, finite, and ``max_rel_err <= rtol``."""
        return self.same_shape and self.finite and self.max_rel_err <= rtol

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and inf become None."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
            elif isinstance(v, tuple):
                out[k] = list(v)
        return out


def tensor_diff(value: np.ndarray, reference: np.ndarray) -> TensorDiff:
    """Compare ``value`` with ``reference`` (any shapes; mismatched shapes give NaN numbers)."""
    a = np.asarray(value, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    nan = float("nan")
    if a.shape != b.shape or not finite:
        return TensorDiff(a.shape, b.shape, nan, nan, nan, nan, nan, finite)
    if a.size == 0:
        return TensorDiff(a.shape, b.shape, 0.0, 0.0, 1.0, 1.0, 0.0, True)
    err = float(np.abs(a - b).max())
    scale = float(np.abs(b).max())
    rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na > 0 and nb > 0:
        cosine = float(np.dot(a.ravel(), b.ravel()) / (na * nb))
    else:
        cosine = 1.0 if na == nb else 0.0
    ratio = na / nb if nb > 0 else (1.0 if na == 0 else math.inf)
    nd = float(np.linalg.norm(a - b))
    norm_rel = nd / nb if nb > 0 else (0.0 if nd == 0 else math.inf)
    return TensorDiff(a.shape, b.shape, err, rel, cosine, ratio, norm_rel, True)
