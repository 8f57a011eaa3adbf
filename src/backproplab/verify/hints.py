"""Likely causes of a parity difference, from the comparison numbers and the arrays.

Every hint is a pure function of one :class:`RowContext` (a row of the parity table: the NumPy
value, the PyTorch reference, their :class:`~backproplab.verify.diff.TensorDiff`, and the
layer's input, output and upstream gradient on the NumPy side) returning a one-line hint or
None. Each one tests a precise hypothesis by recomputing what the buggy code would have produced
and checking that it explains the NumPy value to :data:`EXPLAIN_RTOL`:

* ``loss_reduction``: the loss or its gradient is B times the reference, B = batch size >= 2
  (within :data:`BATCH_RATIO_TOL`), same direction -> sum instead of mean reduction. At B = 1
  sum and mean coincide, so nothing can (or should) fire.
* ``transposed_weight``: dL/dW equals the reference's transpose (square layer) or has the
  transposed shape; or Y = X W + b / dL/dX = G W^T explain the forward / input gradient.
* ``layernorm``: per-group rescaling of the normalised output by sqrt(var+eps)/sqrt(var*n/(n-1)+eps)
  (unbiased variance), or by the factor a different eps (inside or outside the square root) gives.
* ``elu_output_derivative``: the input gradient differs only where x <= 0, and there equals
  G * alpha * exp(y) (the derivative evaluated at the output y instead of the input x).
* ``softmax_axis``: the output sums to 1 along another axis than ``dim``; or the input gradient
  is the softmax Jacobian-vector product along another axis.
* ``double_softmax``: the model outputs probabilities, and the loss (or its gradient) equals the
  cross-entropy of softmax(probabilities), i.e. softmax applied twice.
* ``logits_as_probabilities``: the model outputs logits and the loss equals -log(max(logit, tiny))
  at the target, i.e. a loss on probabilities was given logits.

:func:`diagnose` returns the hints that fire, most specific first, or a generic description of
the difference (a constant factor, a sign flip, a few elements) when none does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backproplab.nn.activations import ELU
from backproplab.nn.module import Module
from backproplab.nn.softmax import Softmax, softmax
from backproplab.verify.diff import TensorDiff

#: A hypothesis "explains" a value when it reproduces it to this relative error (max |a-b| / max |b|).
EXPLAIN_RTOL = 1e-3
#: |norm ratio / batch size - 1| below this counts as "the batch size" for the reduction hint.
BATCH_RATIO_TOL = 0.03
#: Cosine similarity above 1 - this counts as "same direction".
SAME_DIRECTION_TOL = 1e-3
#: A row whose differing elements are below this fraction is described as "differs in k of n".
FEW_ELEMENTS_FRACTION = 0.05
#: Rows of a probability output sum to 1 within this.
PROB_SUM_TOL = 1e-3


@dataclass
class RowContext:
    """One parity-table row and the NumPy-side arrays around it.

    ``quantity`` is "output", "input grad", "<param> grad", "loss" or "loss grad". For loss rows
    ``output`` is the model output the loss was applied to and ``target`` the labels.
    """

    layer: str
    quantity: str
    value: np.ndarray
    reference: np.ndarray
    diff: TensorDiff
    rtol: float
    module: Module | None = None
    input: np.ndarray | None = None
    output: np.ndarray | None = None
    grad_output: np.ndarray | None = None
    target: np.ndarray | None = None
    batch_size: int = 1


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def explains(candidate: np.ndarray, value: np.ndarray, rtol: float = EXPLAIN_RTOL) -> bool:
    """True when ``candidate`` reproduces ``value``: same shape and max |c - v| <= rtol * max |v|."""
    c, v = _f64(candidate), _f64(value)
    if c.shape != v.shape or not np.isfinite(c).all():
        return False
    scale = float(np.abs(v).max()) if v.size else 0.0
    return bool(np.abs(c - v).max() <= rtol * scale) if v.size else True


def _onehot(target: np.ndarray, like: np.ndarray) -> np.ndarray | None:
    t = np.asarray(target)
    if t.ndim == 1 and np.issubdtype(t.dtype, np.integer) and like.ndim == 2 and t.shape[0] == like.shape[0]:
        out = np.zeros(like.shape, dtype=np.float64)
        out[np.arange(len(t)), t] = 1
        return out
    if t.shape == like.shape:
        return _f64(t)
    return None


def is_probability_rows(a: np.ndarray) -> bool:
    """2-D, non-negative, and every row sums to 1 within :data:`PROB_SUM_TOL`."""
    a = _f64(a)
    return (
        a.ndim == 2
        and a.size > 0
        and bool((a >= -PROB_SUM_TOL).all())
        and bool(np.abs(a.sum(axis=1) - 1).max() <= PROB_SUM_TOL)
    )


# ---------------------------------------------------------------------------- hypotheses
def loss_reduction(ctx: RowContext) -> str | None:
    """Loss or gradient B times (or 1/B of) the reference, B = batch size >= 2."""
    d, b = ctx.diff, ctx.batch_size
    if b < 2 or not d.same_shape or not d.finite or d.cosine < 1 - SAME_DIRECTION_TOL:
        return None
    what = "loss" if ctx.quantity == "loss" else "gradient"
    if abs(d.norm_ratio / b - 1) <= BATCH_RATIO_TOL:
        return (
            f"{what} = {d.norm_ratio:.4g}x reference = batch size {b}: sum instead of mean reduction? (loss)"
        )
    if abs(d.norm_ratio * b - 1) <= BATCH_RATIO_TOL:
        return (
            f"{what} = 1/{b} of the reference = 1/batch size: divided by the batch size once too often? "
            "(loss)"
        )
    return None


def transposed_weight(ctx: RowContext) -> str | None:
    """dL/dW (or Y, or dL/dX) explained by using W where W^T belongs, or the reverse."""
    m = ctx.module
    weight = getattr(getattr(m, "weight", None), "data", None)
    if not isinstance(weight, np.ndarray) or weight.ndim != 2:
        return None
    v, r = ctx.value, ctx.reference
    if ctx.quantity == "weight grad":
        if v.ndim == 2 and v.shape != r.shape and v.shape == r.T.shape:
            return (
                f"transposed weight: dL/dW has shape {v.shape}, the reference {r.shape} (dL/dW = G^T X is "
                "(out, in))"
            )
        if v.shape == r.shape and v.shape[0] == v.shape[1] and explains(r.T, v):
            return (
                "transposed weight: dL/dW equals the reference's transpose (dL/dW = G^T X, shape (out, in))"
            )
        return None
    if weight.shape[0] != weight.shape[1]:
        return None
    w = _f64(weight)
    if ctx.quantity == "output" and ctx.input is not None and ctx.input.ndim == 2:
        bias = getattr(getattr(m, "bias", None), "data", None)
        alt = _f64(ctx.input) @ w + (0 if bias is None else _f64(bias))  # (N, in) @ (in, out)
        if explains(alt, v):
            return "transposed weight in forward: Y = X W + b where Y = X W^T + b belongs"
    if ctx.quantity == "input grad" and ctx.grad_output is not None and ctx.grad_output.ndim == 2:
        if explains(_f64(ctx.grad_output) @ w.T, v):  # (N, out) @ (out, in)
            return "transposed weight in backward: dL/dX = G W^T where dL/dX = G W belongs"
    return None


def layernorm(ctx: RowContext) -> str | None:
    """LayerNorm output off by the variance convention (unbiased) or by a different eps."""
    m = ctx.module
    shape = getattr(m, "normalized_shape", None)
    eps = getattr(m, "eps", None)
    if ctx.quantity != "output" or shape is None or eps is None or ctx.input is None:
        return None
    n = int(np.prod(shape))
    if n < 2 or ctx.value.shape != ctx.reference.shape or ctx.input.shape != ctx.value.shape:
        return None
    bias = np.asarray(getattr(getattr(m, "bias", None), "data", 0.0))
    groups = (-1, n)
    a = (_f64(ctx.value) - _f64(bias)).reshape(groups)  # gamma * x_hat (NumPy), (G, n)
    b = (_f64(ctx.reference) - _f64(bias)).reshape(groups)  # gamma * x_hat (torch), (G, n)
    bb = (b * b).sum(axis=1)
    if (bb <= 0).any():
        return None
    r = (a * b).sum(axis=1) / bb  # per-group scale of NumPy over torch, (G,)
    if not explains(r[:, None] * b, a):
        return None  # not a per-group rescaling
    x = _f64(ctx.input).reshape(groups)
    var = x.var(axis=1)  # biased, (G,)
    dev = np.abs(r - 1).max()
    if dev == 0:
        return None
    r_unbiased = np.sqrt((var + eps) / (var * n / (n - 1) + eps))
    if np.abs(r - r_unbiased).max() <= 0.05 * dev:
        return (
            "unbiased variance (LayerNorm uses biased): the output is sqrt((n-1)/n) = "
            f"{math.sqrt((n - 1) / n):.4f} "
            f"times the reference for n = {n} (divide by n, not n-1)"
        )
    implied = (var + eps) / r**2 - var  # eps that gives r inside the square root, (G,)
    if (implied > 0).all() and np.ptp(implied) <= 0.1 * np.median(implied):
        return (
            f"eps: the NumPy output matches eps = {np.median(implied):.3g} inside the square root, torch "
            f"uses {eps:g}"
        )
    outside = np.sqrt(var + eps) / r - np.sqrt(var)  # eps that gives r as sqrt(var) + eps, (G,)
    if (outside > 0).all() and np.ptp(outside) <= 0.1 * np.median(outside):
        return (
            f"eps: the NumPy output matches sqrt(var) + {np.median(outside):.3g}, eps outside the square "
            f"root (torch: sqrt(var + {eps:g}))"
        )
    return None


def elu_output_derivative(ctx: RowContext) -> str | None:
    """ELU input gradient wrong only on negative inputs, equal there to G * alpha * exp(y)."""
    m = ctx.module
    if not isinstance(m, ELU) or ctx.quantity != "input grad":
        return None
    x, y, g = ctx.input, ctx.output, ctx.grad_output
    if x is None or y is None or g is None or ctx.value.shape != x.shape:
        return None
    v, r = _f64(ctx.value), _f64(ctx.reference)
    scale = float(np.abs(r).max()) if r.size else 0.0
    wrong = np.abs(v - r) > EXPLAIN_RTOL * scale
    neg = _f64(x) <= 0
    if not wrong.any() or wrong[~neg].any():
        return None
    alt = _f64(g) * m.alpha * np.exp(_f64(y))  # derivative at the output y
    if explains(alt[neg], v[neg]):
        return (
            "ELU derivative taken from the output: alpha*exp(y) instead of alpha*exp(x) = y + alpha for x "
            "<= 0"
        )
    return "ELU input gradient wrong only where x <= 0: check the derivative alpha*exp(x) = y + alpha there"


def _normalised_axes(y: np.ndarray) -> list[int]:
    y = _f64(y)
    if y.ndim == 0 or (y < -PROB_SUM_TOL).any():
        return []
    return [ax for ax in range(y.ndim) if np.abs(y.sum(axis=ax) - 1).max() <= PROB_SUM_TOL]


def softmax_axis(ctx: RowContext) -> str | None:
    """Softmax normalised (or differentiated) along another axis than its ``dim``."""
    m = ctx.module
    dim = getattr(m, "dim", None)
    if not isinstance(m, Softmax) or dim is None or ctx.value.ndim == 0:
        return None
    want = dim % ctx.value.ndim
    if ctx.quantity == "output":
        axes = _normalised_axes(ctx.value)
        if axes and want not in axes:
            return (
                f"softmax over the wrong axis: the output sums to 1 along dim {axes[0]}, not along dim {want}"
            )
        return None
    if ctx.quantity == "input grad" and ctx.output is not None and ctx.grad_output is not None:
        y, g = _f64(ctx.output), _f64(ctx.grad_output)
        for ax in range(y.ndim):
            if ax != want and explains(y * (g - (g * y).sum(axis=ax, keepdims=True)), ctx.value):
                return f"softmax backward over the wrong axis: dim {ax} where dim {want} belongs"
    return None


def _ce_candidates(logits: np.ndarray, t: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
    p = softmax(_f64(logits), 1)
    logp = np.log(np.maximum(p, np.finfo(np.float64).tiny))
    per = -(t * logp).sum()
    n = logits.shape[0]
    return [("mean", per / n, (p - t) / n), ("sum", per, p - t)]


def double_softmax(ctx: RowContext) -> str | None:
    """The model outputs probabilities and the loss applies softmax to them again."""
    if ctx.quantity not in ("loss", "loss grad") or ctx.output is None or ctx.target is None:
        return None
    o = ctx.output
    t = _onehot(ctx.target, o)
    if t is None or not is_probability_rows(o) or o.shape[1] < 2:
        return None
    for reduction, loss, grad in _ce_candidates(o, t):
        cand = np.asarray(loss) if ctx.quantity == "loss" else grad
        if explains(cand, ctx.value):
            also = (
                "; the loss also sums over the batch instead of averaging"
                if reduction == "sum" and len(o) > 1
                else ""
            )
            return (
                "probabilities passed where logits are expected (double softmax): the model already ends in "
                "a "
                "softmax; give the loss on logits the pre-softmax output, or use a loss on "
                f"probabilities{also}"
            )
    return None


def logits_as_probabilities(ctx: RowContext) -> str | None:
    """The model outputs logits and the loss takes -log of them as if they were probabilities."""
    if ctx.quantity != "loss" or ctx.output is None or ctx.target is None:
        return None
    o = _f64(ctx.output)
    t = _onehot(ctx.target, o)
    if t is None or is_probability_rows(o):
        return None
    per = -(t * np.log(np.maximum(o, np.finfo(np.float32).tiny))).sum()
    for cand in (per / o.shape[0], per):
        if explains(np.asarray(cand), ctx.value):
            return (
                "logits passed where probabilities are expected: this loss takes softmax outputs (use "
                "SoftmaxCrossEntropy on logits)"
            )
    return None


HINTS: list[Callable[[RowContext], str | None]] = [
    double_softmax,
    logits_as_probabilities,
    loss_reduction,
    transposed_weight,
    layernorm,
    elu_output_derivative,
    softmax_axis,
]


def describe(ctx: RowContext) -> str:
    """A generic one-line description of a difference no hypothesis explains."""
    d = ctx.diff
    if not d.same_shape:
        return f"shape {d.shape} where the reference has {d.ref_shape}"
    if not d.finite:
        side = "NumPy" if not np.isfinite(_f64(ctx.value)).all() else "reference"
        return f"non-finite values (NaN or inf) on the {side} side"
    if d.cosine >= 1 - SAME_DIRECTION_TOL:
        return f"same direction, {d.norm_ratio:.4g}x the reference's norm: a constant factor"
    if d.cosine <= -1 + SAME_DIRECTION_TOL:
        return f"opposite sign ({d.norm_ratio:.4g}x the reference's norm)"
    v, r = _f64(ctx.value), _f64(ctx.reference)
    wrong = np.abs(v - r) > ctx.rtol * float(np.abs(r).max())
    k = int(wrong.sum())
    if 0 < k <= FEW_ELEMENTS_FRACTION * wrong.size:
        return f"differs in {k} of {wrong.size} elements (cosine {d.cosine:.4f})"
    return f"differs: cosine {d.cosine:.4f}, norm ratio {d.norm_ratio:.4g}"


def diagnose(ctx: RowContext) -> list[str]:
    """The hints that explain the row, most specific first; a generic description if none does."""
    found = [h for h in (hint(ctx) for hint in HINTS) if h]
    return found or [describe(ctx)]


def agreement(ctx_dtype: str, diff: TensorDiff) -> str:
    """The status of an agreeing row: "exact", or "agree (float32 rounding)" for the dtype."""
    return "exact" if diff.max_abs_err == 0 else f"agree ({ctx_dtype} rounding)"
