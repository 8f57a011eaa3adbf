"""Likely causes of a parity difference, from the comparison numbers and the arrays.

Every hint is a pure function of one :class:`RowContext` (a row of the parity table: the NumPy
value, the PyTorch reference, their :class:`~backproplab.verify.diff.TensorDiff`, and the
layer's input, output and upstream gradient on the NumPy side) returning a one-line hint or
None. Each one tests a precise hypothesis by recomputing what the buggy code would have produced
and checking that it explains the NumPy value to :data:`EXPLAIN_RTOL`:

* ``loss_reduction``: the loss or its gradient is B times the reference, B = batch size >= 2
  (within :data:`BATCH_RATIO_TOL`), same direction -> sum instead of mean reduction. At B = 1
  sum and mean coincide, so nothing can (or should) fire. Only the loss rows blame the loss: a
  layer's row that is B times (element-wise) its reference, while that layer got the same upstream
  gradient as its twin, means the *layer* scales by the batch size (the loss rows agree then).
* ``transposed_weight``: dL/dW equals the reference's transpose (square layer) or has the
  transposed shape; or Y = X W + b / dL/dX = G W^T explain the forward / input gradient.
* ``layernorm`` / ``batchnorm``: per-group rescaling of the normalised output by
  sqrt(var+eps)/sqrt(var*n/(n-1)+eps) (unbiased variance), or by the factor a different eps (inside
  or outside the square root) gives. A LayerNorm group is one sample's n = prod(normalized_shape)
  values; a BatchNorm group (training mode) is one channel's M = N * prod(spatial) values.
* ``batchnorm_running_var``: ``running_var`` updated with the biased batch variance, where torch
  uses the unbiased var * M / (M - 1) (the normalisation itself uses the biased one).
* ``dropout``: a Dropout layer's output or input gradient is the reference times 1 - p (the
  1 / (1 - p) scaling forgotten) or 1 / (1 - p) (applied twice), or its input gradient's zeros
  are not those of the forward's mask (a different mask in backward).
* ``elu_output_derivative``: the input gradient differs only where x <= 0, and there equals
  G * alpha * exp(y) (the derivative evaluated at the output y instead of the input x).
* ``softmax_axis``: the output sums to 1 along another axis than ``dim``; or the input gradient
  is the softmax Jacobian-vector product along another axis.
* ``double_softmax``: the model outputs probabilities, and the loss (or its gradient) equals the
  cross-entropy of softmax(probabilities), i.e. softmax applied twice.
* ``logits_as_probabilities``: the model outputs logits and the loss equals -log(max(logit, tiny))
  at the target, i.e. a loss on probabilities was given logits.
* ``softmax_backward``: the softmax input gradient is y * (1 - y) * G (the Jacobian's diagonal
  only) or y * (G - sum G).
* ``batchnorm_backward``: the BatchNorm input gradient without the term through the batch mean,
  the one through the batch variance, or both.
* ``spatial_batchnorm_reshape``: a spatial BatchNorm through (N*H*W, C) rows made by a reshape
  without the transpose (forward and backward, or backward only).
* ``conv_flipped_kernel``: a convolution's output, input gradient or weight gradient computed
  with the kernel rotated by 180 degrees.
* ``activation_backward``: a ReLU input gradient masked by the upstream gradient (or not at all),
  a tanh or sigmoid derivative evaluated at the input or missing a factor.
* ``layernorm_backward_axis``: the LayerNorm input gradient with its sums over the batch axis.
* ``window_stride``: a strided convolution or pooling whose windows step by 1 (the output equals
  the stride-1 forward cut to its size).
* ``maxpool_backward``: the max-pool input gradient sent to every position of each window, or
  spread evenly over it, instead of to the maximum only.

:func:`diagnose` returns the hints that fire, most specific first, or a generic description of
the difference when none does (:func:`describe`): a constant factor only when value / reference
is constant element-wise (:func:`constant_factor`), else *where* it differs: only where the input
is negative (or positive), only in some rows / columns / channels, or in k of n elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backproplab.nn.activations import ELU
from backproplab.nn.batchnorm import BatchNorm2d, _BatchNorm
from backproplab.nn.conv import Conv2d
from backproplab.nn.dropout import Dropout
from backproplab.nn.module import Module
from backproplab.nn.pooling import MaxPool2d
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
#: At most this many differing elements are listed by index.
FEW_ELEMENTS_SHOWN = 3
#: Rows of a probability output sum to 1 within this.
PROB_SUM_TOL = 1e-3
#: A constant factor c is named after a known value v (batch size, 2, -1, ...) when |c / v - 1| <= this.
FACTOR_NAME_RTOL = 1e-3


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
    #: Whether the loss rows (value and gradient) agree with the reference; None when unknown.
    loss_agrees: bool | None = None
    #: True for a row of the composed model (the twin run from the input alone).
    end_to_end: bool = False
    #: The layer's kind (:func:`~backproplab.verify.protocol.kind_from_name`) when known.
    kind: str | None = None


def _is_dropout(m: Module | None) -> bool:
    """A Dropout (or a student's layer named like one, with a probability ``p``)."""
    return isinstance(m, Dropout) or (
        m is not None and "dropout" in type(m).__name__.lower() and isinstance(getattr(m, "p", None), float)
    )


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def explains(candidate: np.ndarray, value: np.ndarray, rtol: float = EXPLAIN_RTOL) -> bool:
    """True when ``candidate`` reproduces ``value``: same shape and max |c - v| <= rtol * max |v|."""
    c, v = _f64(candidate), _f64(value)
    if c.shape != v.shape or not np.isfinite(c).all():
        return False
    scale = float(np.abs(v).max()) if v.size else 0.0
    return bool(np.abs(c - v).max() <= rtol * scale) if v.size else True


def constant_factor(value: np.ndarray, reference: np.ndarray, rtol: float = EXPLAIN_RTOL) -> float | None:
    """The c with value = c * reference element-wise (to ``rtol``, see :func:`explains`), else None.

    c is the least-squares fit <v, r> / <r, r>; it counts only when c * r reproduces v in every
    element, so a difference confined to a few elements (cosine ~1, norm ratio ~1) is no factor.
    """
    v, r = _f64(value), _f64(reference)
    if v.shape != r.shape or v.size == 0 or not (np.isfinite(v).all() and np.isfinite(r).all()):
        return None
    rr = float((r * r).sum())
    if rr == 0:
        return None
    c = float((v * r).sum() / rr)
    return c if explains(c * r, v, rtol) else None


def factor_meaning(
    c: float, batch_size: int | None = None, extra: dict[str, float] | None = None
) -> str | None:
    """What a constant factor c = value / reference suggests, or None when it is no known value.

    Known values (within :data:`FACTOR_NAME_RTOL`): the batch size N ("a sum where the mean
    belongs, or a missing 1/N") and 1/N, -1 (sign flipped), 2 (a term counted twice), 1/2, 0,
    and any ``extra`` {name: value} (e.g. {"1 - p": 0.7} for a Dropout).
    """
    if c == 0:
        return "zero everywhere: the gradient was never written or is multiplied by zero"

    def near(v: float) -> bool:
        return v != 0 and abs(c / v - 1) <= FACTOR_NAME_RTOL

    for name, v in (extra or {}).items():
        if near(v):
            return name
    if batch_size is not None and batch_size >= 2:
        if near(batch_size):
            return f"the batch size {batch_size}: a sum where the loss averages, or a missing 1/N"
        if near(1 / batch_size):
            return (
                f"1/batch size (1/{batch_size}): divided by N once too often (the mean's 1/N applied twice)"
            )
        if near(-batch_size) or near(-1 / batch_size):
            return "minus the batch size (or its inverse): a sign flip and a reduction mismatch"
    if near(-1):
        return "sign flipped"
    if near(2):
        return "a term counted twice (or a missing 1/2)"
    if near(0.5):
        return "half: a missing factor 2 (e.g. the derivative of x^2), or a term counted once of two"
    return None


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
    """Loss or gradient B times (or 1/B of) the reference, B = batch size >= 2.

    The loss rows (``loss``, ``loss grad``) blame the loss's reduction. Any other row must be B
    (or 1/B) times its reference element-wise; a per-layer row then blames the layer itself (its
    twin got the same input and upstream gradient), an end-to-end row blames the loss only when
    the loss rows diverge too (``ctx.loss_agrees`` False).
    """
    d, b = ctx.diff, ctx.batch_size
    if b < 2 or not d.same_shape or not d.finite or d.cosine < 1 - SAME_DIRECTION_TOL:
        return None
    if abs(d.norm_ratio / b - 1) <= BATCH_RATIO_TOL:
        up = True
    elif abs(d.norm_ratio * b - 1) <= BATCH_RATIO_TOL:
        up = False
    else:
        return None
    if ctx.quantity in ("loss", "loss grad"):
        what = "loss" if ctx.quantity == "loss" else "gradient"
        if up:
            return f"{what} = {d.norm_ratio:.4g}x reference = batch size {b}: sum instead of mean reduction? (loss)"
        return (
            f"{what} = 1/{b} of the reference = 1/batch size: divided by the batch size once too often? "
            "(loss)"
        )
    c = constant_factor(ctx.value, ctx.reference)
    if c is None or abs((c if up else 1 / c) / b - 1) > BATCH_RATIO_TOL:
        return None  # not the same factor in every element: no reduction bug
    times = f"{c:.4g} x reference = batch size {b}" if up else f"1/{b} of the reference (1/batch size)"
    if ctx.end_to_end:
        if ctx.loss_agrees is False:
            return f"gradient = {times}: follows from the loss's reduction (see the loss rows) (loss)"
        if ctx.loss_agrees:
            return (
                f"gradient = {times} while the loss gradient agrees: a layer's backward scales by the batch "
                "size (see the per-layer rows)"
            )
        return f"gradient = {times}: a reduction over the batch differs (the loss's or a layer's)"
    loss = " while the loss gradient agrees" if ctx.loss_agrees else ""
    if up:
        return (
            f"this layer's gradient is {times}{loss}, with the same upstream gradient as its reference: the "
            "layer scales by the batch size (a sum over the batch on top of the loss's mean, or a "
            "multiplication by N)"
        )
    return (
        f"this layer's gradient is {times}{loss}, with the same upstream gradient as its reference: the "
        "layer divides by the batch size, which the loss's mean already did"
    )


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


def bias_reduction(ctx: RowContext) -> str | None:
    """dL/db explained by one sample's upstream gradient G[n] (summed over its spatial positions
    for a convolution) where the sum over the whole batch belongs. (A mean instead of the sum is a
    constant factor, which :func:`describe` names.)"""
    g = ctx.grad_output
    if ctx.quantity != "bias grad" or g is None or g.ndim < 2:
        return None
    g, v = _f64(g), _f64(ctx.value).reshape(-1)
    if g.shape[1] != v.size:
        return None
    spatial = tuple(range(1, g.ndim - 1))  # a sample's spatial axes, (C, *S) -> (C,); none for (N, D)
    for n in range(min(len(g), 8)):
        if explains(g[n].sum(axis=spatial), v):
            where = (
                "the batch and the spatial positions (axes 0, 2, ...)" if spatial else "the batch (axis 0)"
            )
            return f"dL/db equals sample {n}'s upstream gradient alone: sum G over {where}"
    return None


def _variance_hint(
    a: np.ndarray, b: np.ndarray, x: np.ndarray, eps: float, what: str, n_text: str
) -> str | None:
    """Per-group hypotheses on a normalised output: unbiased variance, another eps.

    ``a`` and ``b`` are gamma * x_hat of the NumPy side and of the reference, ``x`` the input,
    all (G, n) with one normalisation group per row.
    """
    n = a.shape[1]
    bb = (b * b).sum(axis=1)
    if n < 2 or (bb <= 0).any():
        return None
    r = (a * b).sum(axis=1) / bb  # per-group scale of NumPy over torch, (G,)
    if not explains(r[:, None] * b, a):
        return None  # not a per-group rescaling
    var = x.var(axis=1)  # biased, (G,)
    dev = np.abs(r - 1).max()
    if dev == 0:
        return None
    r_unbiased = np.sqrt((var + eps) / (var * n / (n - 1) + eps))
    if np.abs(r - r_unbiased).max() <= 0.05 * dev:
        return (
            f"unbiased variance ({what} uses biased): the output is sqrt((n-1)/n) = "
            f"{math.sqrt((n - 1) / n):.4f} "
            f"times the reference for {n_text} = {n} (divide by n, not n-1)"
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
    x = _f64(ctx.input).reshape(groups)
    hint = _variance_hint(a, b, x, eps, "LayerNorm", "n")
    if hint is None and ctx.input.ndim == 2:
        weight = np.asarray(getattr(getattr(m, "weight", None), "data", 1.0))
        xi = _f64(ctx.input)
        for axis, what in ((0, "over the batch (axis 0), as BatchNorm does"), (None, "over the whole array")):
            mu, var = xi.mean(axis=axis, keepdims=True), xi.var(axis=axis, keepdims=True)
            alt = _f64(weight) * (xi - mu) / np.sqrt(var + eps) + _f64(bias)  # (N, D)
            if explains(alt, _f64(ctx.value)):
                return (
                    f"normalised {what}: LayerNorm normalises each sample over its own features "
                    "(mean and variance over the last axis, keepdims)"
                )
    return hint


def _channel_groups(a: np.ndarray) -> np.ndarray:
    """(N, C, *S) -> (C, N * prod(S)): one row per channel, BatchNorm's normalisation groups."""
    return np.moveaxis(_f64(a), 1, -1).reshape(-1, a.shape[1]).T


def _is_batchnorm(m: Module | None) -> bool:
    return isinstance(m, _BatchNorm)


def batchnorm(ctx: RowContext) -> str | None:
    """BatchNorm1d/2d training-mode output off by the variance convention or by eps.

    Training mode normalises with the *biased* batch variance (divide by M = N * prod(spatial)),
    as torch; the unbiased M / (M - 1) one only enters ``running_var``.
    """
    m = ctx.module
    if ctx.quantity != "output" or not _is_batchnorm(m) or ctx.input is None:
        return None
    assert isinstance(m, _BatchNorm)
    if (
        not m._uses_batch_stats()
        or ctx.value.shape != ctx.reference.shape
        or ctx.input.shape != ctx.value.shape
    ):
        return None
    if ctx.value.ndim < 2:
        return None
    c = ctx.value.shape[1]
    bias = _f64(m.bias.data) if m.bias is not None else np.zeros(c)
    a = _channel_groups(ctx.value) - bias[:, None]  # gamma * x_hat per channel, (C, M)
    b = _channel_groups(ctx.reference) - bias[:, None]
    x = _channel_groups(ctx.input)
    spatial = " * ".join(["N", *("HW"[: ctx.value.ndim - 2] if ctx.value.ndim <= 4 else ["prod(spatial)"])])
    name = next(c.__name__ for c in type(m).__mro__ if c.__module__ == _BatchNorm.__module__)
    hint = _variance_hint(a, b, x, m.eps, name + " training", f"M = {spatial}")
    if hint and hint.startswith("unbiased"):
        hint += "; the unbiased variance belongs only in the running_var update"
    return hint


def batchnorm_running_var(ctx: RowContext) -> str | None:
    """``running_var`` updated with the biased batch variance (torch: the unbiased var * M / (M - 1))."""
    m = ctx.module
    if ctx.quantity != "running_var" or not _is_batchnorm(m) or ctx.input is None:
        return None
    assert isinstance(m, _BatchNorm)
    if ctx.value.shape != ctx.reference.shape or ctx.input.ndim < 2:
        return None
    x = _channel_groups(ctx.input)  # (C, M)
    big_m = x.shape[1]
    if big_m < 2:
        return None
    nbt = int(getattr(m, "num_batches_tracked", 1))
    factor = m.momentum if m.momentum is not None else 1.0 / max(nbt, 1)
    var_b = x.var(axis=1)  # biased, (C,)
    ref = _f64(ctx.reference)
    biased = ref - factor * var_b / (big_m - 1)  # what a biased update gives from the same start
    if explains(biased - ref, _f64(ctx.value) - ref):
        return (
            f"running_var updated with the biased batch variance (divide by M = {big_m}); torch uses the "
            f"unbiased one, var * M / (M - 1), for running_var (and the biased one to normalise)"
        )
    return None


def dropout(ctx: RowContext) -> str | None:
    """A Dropout's scaling 1 / (1 - p) forgotten or doubled, or a backward mask not the forward's."""
    m = ctx.module
    p = getattr(m, "p", None)
    if (
        not _is_dropout(m)
        or not isinstance(p, float)
        or not 0 < p < 1
        or ctx.quantity not in ("output", "input grad")
    ):
        return None
    v, r = _f64(ctx.value), _f64(ctx.reference)
    if v.shape != r.shape:
        return None
    c = constant_factor(v, r)
    where = "forward" if ctx.quantity == "output" else "backward"
    if c is not None and abs(c / (1 - p) - 1) <= FACTOR_NAME_RTOL:
        return (
            f"Dropout {where} not scaled by 1/(1-p): the {ctx.quantity} is (1-p) = {1 - p:g} x the reference"
        )
    if c is not None and abs(c * (1 - p) - 1) <= FACTOR_NAME_RTOL:
        return f"Dropout {where} scaled by 1/(1-p) twice: the {ctx.quantity} is 1/(1-p) = {1 / (1 - p):.4g} x the reference"
    if ctx.quantity == "input grad" and ctx.grad_output is not None and ctx.grad_output.shape == v.shape:
        live = _f64(ctx.grad_output) != 0  # where the upstream gradient can pass
        other = ((v == 0) != (r == 0)) & live
        if other.any():
            return (
                "Dropout backward uses a different mask from its forward: the input gradient is zero in other "
                f"places than the forward's mask ({int(other.sum())} of {v.size} elements); reuse the mask "
                "saved in forward"
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


def softmax_backward(ctx: RowContext) -> str | None:
    """Softmax input gradient from part of the Jacobian: its diagonal only, y * (1 - y) * G, or
    y * (G - sum G) where y * (G - sum(G * y)) belongs."""
    m = ctx.module
    dim = getattr(m, "dim", None)
    if not isinstance(m, Softmax) or dim is None or ctx.quantity != "input grad":
        return None
    if ctx.output is None or ctx.grad_output is None or ctx.output.shape != ctx.value.shape:
        return None
    y, g = _f64(ctx.output), _f64(ctx.grad_output)
    if explains(y * (1 - y) * g, ctx.value):
        return (
            "softmax backward with the Jacobian's diagonal only, y * (1 - y) * dout: the off-diagonal "
            "terms -y_i * y_j are missing (dx = y * (dout - sum(dout * y)))"
        )
    if explains(y * (g - g.sum(axis=dim, keepdims=True)), ctx.value):
        return "softmax backward with sum(dout) where sum(dout * y) belongs: dx = y * (dout - sum(dout * y))"
    return None


def batchnorm_backward(ctx: RowContext) -> str | None:
    """BatchNorm (training mode) input gradient without the terms through the batch statistics.

    Per normalisation group (a channel's M values), with x_hat the normalised input and
    G' = gamma * G: dX = (G' - mean(G') - x_hat * mean(G' * x_hat)) / sqrt(var + eps). Dropping
    the mean term, the variance term or both (the statistics taken as constants) is recomputed.
    """
    m = ctx.module
    if not _is_batchnorm(m) or ctx.quantity != "input grad" or ctx.input is None or ctx.grad_output is None:
        return None
    assert isinstance(m, _BatchNorm)
    if not m._uses_batch_stats() or ctx.input.shape != ctx.value.shape or ctx.value.ndim < 2:
        return None
    x, g, v = (
        _channel_groups(ctx.input),
        _channel_groups(ctx.grad_output),
        _channel_groups(ctx.value),
    )  # (C, M)
    gamma = _f64(m.weight.data)[:, None] if m.weight is not None else 1.0
    inv = 1.0 / np.sqrt(x.var(axis=1, keepdims=True) + m.eps)  # (C, 1), the biased variance
    xhat = (x - x.mean(axis=1, keepdims=True)) * inv  # (C, M)
    gg = gamma * g
    mean_term = gg.mean(axis=1, keepdims=True)
    var_term = xhat * (gg * xhat).mean(axis=1, keepdims=True)
    for cand, what in (
        ((gg - var_term) * inv, "the term through the batch mean, - mean(gamma * dout), is missing"),
        ((gg - mean_term) * inv, "the term through the batch variance, - x_hat * mean(gamma * dout * x_hat), is missing"),
        (gg * inv, "the batch mean and variance are treated as constants: dx = gamma * dout / sqrt(var + eps)"),
    ):  # fmt: skip
        if explains(cand, v):
            return f"BatchNorm backward: {what} (dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps), g = gamma * dout)"
    return None


def _reference_batchnorm2d(m: _BatchNorm) -> BatchNorm2d:
    """A correct float64 BatchNorm2d (training mode) with ``m``'s settings and affine parameters:
    the hypotheses must not run the module under test, which may be the buggy one."""
    bn = BatchNorm2d(m.num_features, eps=m.eps, affine=m.weight is not None, dtype=np.float64)
    if m.weight is not None and bn.weight is not None and m.bias is not None and bn.bias is not None:
        bn.weight.data = _f64(m.weight.data).copy()
        bn.bias.data = _f64(m.bias.data).copy()
    return bn


def _reference_conv(
    m: Conv2d, weight: np.ndarray | None = None, stride: tuple[int, int] | None = None
) -> Conv2d:
    """A correct float64 im2col Conv2d with ``m``'s settings and parameters (``weight`` and
    ``stride`` replaced when given)."""
    w = _f64(m.weight.data) if weight is None else weight
    f, c, kh, kw = w.shape
    conv = Conv2d(c, f, (kh, kw), stride or m.stride, m.padding, bias=m.bias is not None, dtype=np.float64,
                  algorithm="im2col", rng=np.random.default_rng(0))  # fmt: skip
    conv.weight.data = np.ascontiguousarray(w)
    if m.bias is not None and conv.bias is not None:
        conv.bias.data = _f64(m.bias.data).copy()
    return conv


def _misread_channels_last(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) whose memory is read as rows of C values (``reshape(-1, C)`` without the
    transpose), returned in the (N, C, H, W) layout: the values each channel then gets."""
    n, c, h, w = a.shape
    return a.reshape(-1, c).reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _miswritten_channels_last(b: np.ndarray) -> np.ndarray:
    """The inverse mistake: rows of C values (here in the (N, C, H, W) layout) written back with a
    plain ``reshape(N, C, H, W)``."""
    n, c, h, w = b.shape
    return b.transpose(0, 2, 3, 1).reshape(-1, c).reshape(n, c, h, w)


def spatial_batchnorm_reshape(ctx: RowContext) -> str | None:
    """Spatial BatchNorm through (N*H*W, C) rows made by a reshape without the transpose, in
    forward and backward, or in backward only (the upstream gradient and the result)."""
    m = ctx.module
    x, g = ctx.input, ctx.grad_output
    if (
        not _is_batchnorm(m)
        or x is None
        or x.ndim != 4
        or ctx.quantity not in ("output", "input grad", "weight grad", "bias grad")
    ):
        return None
    v = _f64(ctx.value)
    # a gradient is first explained by backward alone (forward's own row says when forward is wrong
    # too); the result may be written back right or with the same plain reshape
    cases = (
        [(True, True, "forward and backward")]
        if ctx.quantity == "output"
        else [(False, True, "backward"), (False, False, "backward"), (True, True, "forward and backward")]
    )
    assert isinstance(m, _BatchNorm)
    for misread_x, miswrite, where in cases:
        bn = _reference_batchnorm2d(m)
        out = bn(_misread_channels_last(_f64(x)) if misread_x else _f64(x))
        cand: np.ndarray | None
        if ctx.quantity == "output":
            cand = _miswritten_channels_last(out)
        else:
            if g is None or g.shape != x.shape:
                return None
            dx = bn.backward(_misread_channels_last(_f64(g)))
            grads = {"input grad": _miswritten_channels_last(dx) if miswrite else dx}
            for name in ("weight", "bias"):
                p = getattr(bn, name, None)
                if p is not None and p.grad is not None:
                    grads[f"{name} grad"] = p.grad
            cand = grads.get(ctx.quantity)
        if cand is not None and cand.shape == v.shape and explains(cand, v):
            return (
                f"a reshape without its transpose in {where}: (N, C, H, W) -> (N*H*W, C) rows is "
                "x.transpose(0, 2, 3, 1).reshape(-1, C), and back .reshape(N, H, W, C).transpose(0, 3, 1, 2); "
                "a plain reshape mixes the channels"
            )
    return None


def conv_flipped_kernel(ctx: RowContext) -> str | None:
    """A convolution computed with the kernel rotated by 180 degrees: a true convolution in forward
    (torch's Conv2d cross-correlates), a missing or extra rotation in the input gradient, or a
    weight gradient rotated."""
    m = ctx.module
    if not isinstance(m, Conv2d) or m.kernel_size == (1, 1) or ctx.input is None:
        return None
    v = _f64(ctx.value)
    if ctx.quantity == "weight grad":
        rotated = _f64(ctx.reference)[..., ::-1, ::-1]
        if rotated.shape == v.shape and explains(rotated, v):
            return "weight gradient rotated by 180 degrees (dW[:, :, ::-1, ::-1]): a kernel flip in backward"
        return None
    if ctx.quantity not in ("output", "input grad"):
        return None
    flipped = _reference_conv(m, weight=_f64(m.weight.data)[..., ::-1, ::-1])
    with np.errstate(all="ignore"):
        out = flipped(_f64(ctx.input))
        if ctx.quantity == "output":
            if out.shape == v.shape and explains(out, v):
                return (
                    "convolution with the kernel rotated by 180 degrees (a true convolution): torch's Conv2d is "
                    "a cross-correlation, out[f, i, j] = sum w[f, c, di, dj] * x[c, i + di, j + dj]"
                )
            return None
        if ctx.grad_output is None or ctx.grad_output.shape != out.shape:
            return None
        dx = flipped.backward(_f64(ctx.grad_output))
    if dx is not None and dx.shape == v.shape and explains(dx, v):
        return (
            "input gradient with the kernel rotation wrong: dX is the full correlation of dout with the kernel "
            "rotated by 180 degrees (the transposed convolution with W); this one used the other orientation"
        )
    return None


def activation_backward(ctx: RowContext) -> str | None:
    """An element-wise activation's input gradient from the wrong quantity: a ReLU mask taken from
    the upstream gradient, a tanh or sigmoid derivative evaluated at the input instead of through
    the output, or a factor of it left out."""
    if ctx.quantity != "input grad" or ctx.kind not in ("relu", "leaky_relu", "tanh", "sigmoid"):
        return None
    x, y, g = ctx.input, ctx.output, ctx.grad_output
    if x is None or y is None or g is None or not (x.shape == y.shape == g.shape == ctx.value.shape):
        return None
    x, y, g = _f64(x), _f64(y), _f64(g)
    candidates: list[tuple[np.ndarray, str]] = []
    if ctx.kind in ("relu", "leaky_relu"):
        candidates.append(
            (
                g * (g > 0),
                "the mask is taken from the upstream gradient (dout > 0), not from the input (x > 0)",
            )
        )
        candidates.append((g, "the mask is missing: the upstream gradient passes everywhere"))
    elif ctx.kind == "tanh":
        candidates.append(
            (
                g * (1 - x * x),
                "the derivative is evaluated at the input, 1 - x^2, where it is 1 - tanh(x)^2 = 1 - y^2",
            )
        )
        candidates.append((g * (1 - y), "1 - y where the derivative is 1 - y^2"))
    else:
        candidates.append(
            (
                g * x * (1 - x),
                "the derivative is evaluated at the input, x (1 - x), where it is y (1 - y) with y = sigmoid(x)",
            )
        )
        candidates.append((g * y, "the factor (1 - y) of the derivative y (1 - y) is missing"))
    for cand, what in candidates:
        if explains(cand, ctx.value):
            return f"{ctx.kind} backward: {what}"
    return None


def layernorm_backward_axis(ctx: RowContext) -> str | None:
    """LayerNorm's input gradient with its sums over the batch axis (0) instead of the features."""
    m = ctx.module
    if (
        ctx.quantity != "input grad"
        or type(m).__name__ != "LayerNorm"
        or ctx.input is None
        or ctx.grad_output is None
    ):
        return None
    x, g = _f64(ctx.input), _f64(ctx.grad_output)
    if x.ndim != 2 or x.shape != ctx.value.shape:
        return None
    eps = float(getattr(m, "eps", 1e-5))
    weight = getattr(m, "weight", None)
    gamma = _f64(weight.data) if weight is not None else 1.0
    inv = 1.0 / np.sqrt(x.var(axis=1, keepdims=True) + eps)  # (N, 1)
    xhat = (x - x.mean(axis=1, keepdims=True)) * inv  # (N, D)
    gg = g * gamma
    n, d = x.shape
    for scale in (d, n):
        cand = (
            inv
            / scale
            * (scale * gg - gg.sum(axis=0, keepdims=True) - xhat * (gg * xhat).sum(axis=0, keepdims=True))
        )
        if explains(cand, ctx.value):
            return (
                "LayerNorm backward sums over the batch axis (axis 0): its sums run over each sample's "
                "features (axis 1, keepdims), as the statistics in forward do"
            )
    return None


def window_stride(ctx: RowContext) -> str | None:
    """A strided convolution or pooling whose output i reads the window at i (stride 1) instead
    of at i * stride: the forward with stride 1, cut to the output's size."""
    m = ctx.module
    if not isinstance(m, (Conv2d, MaxPool2d)) or ctx.quantity != "output" or ctx.input is None:
        return None
    if m.stride == (1, 1) or ctx.value.ndim != 4:
        return None
    unit = (
        _reference_conv(m, stride=(1, 1)) if isinstance(m, Conv2d) else MaxPool2d(m.kernel_size, 1, m.padding)
    )
    with np.errstate(all="ignore"):
        out = unit(_f64(ctx.input))
    ho, wo = ctx.value.shape[2:]
    if out.shape[2] < ho or out.shape[3] < wo or not explains(out[:, :, :ho, :wo], ctx.value):
        return None
    return (
        f"the windows step by 1, not by the stride {m.stride[0]}: output (i, j) must read the input window "
        "starting at (i * stride, j * stride)"
    )


def maxpool_backward(ctx: RowContext) -> str | None:
    """Max-pool input gradient spread over the whole window: to every position (as if each were
    the maximum) or evenly (average-pool's backward), where only the maximum gets it."""
    m = ctx.module
    if not isinstance(m, MaxPool2d) or ctx.quantity != "input grad" or ctx.input is None:
        return None
    g = ctx.grad_output
    if g is None or g.ndim != 4 or ctx.input.ndim != 4 or ctx.value.shape != ctx.input.shape:
        return None
    (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding
    n, c, h, w = ctx.input.shape
    ho, wo = g.shape[2:]
    spread = np.zeros((n, c, h + 2 * ph, w + 2 * pw))  # padded input grid
    for i in range(kh):
        for j in range(kw):
            spread[:, :, i : i + sh * ho : sh, j : j + sw * wo : sw] += _f64(g)
    spread = spread[:, :, ph : ph + h, pw : pw + w]  # (N, C, H, W)
    if explains(spread, ctx.value):
        return "max-pool backward sends each upstream gradient to every position of its window; only the maximum should get it"
    if explains(spread / (kh * kw), ctx.value):
        return "max-pool backward spreads each upstream gradient evenly over its window (average-pool's backward); only the maximum should get it"
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


def _probabilities_of(o: np.ndarray) -> np.ndarray:
    """The probabilities a loss saw: ``o`` itself when its rows are probabilities, else softmax(o)."""
    return o if is_probability_rows(o) else softmax(o, 1)


#: The eps values tried for a loss that takes log(p + eps) or log(max(p, eps)).
LOG_EPS_CANDIDATES = (1e-7, 1e-8, 1e-6, 1e-5, 1e-9, 1e-10, 1e-12, 1e-15, 1e-16, 1e-20)
#: What :func:`clipped_log` says first: a row with this hint is a WARN, not a FAIL (see loss_rows).
CLIPPED_LOG_HINT = "the loss takes the log of the probabilities plus a small eps"


def clipped_log(ctx: RowContext) -> str | None:
    """The loss is -log(p + eps) (or -log(max(p, eps))) at the target: exact where p >> eps,
    bounded by -log(eps) where the prediction is very wrong (PyTorch's log-softmax is not)."""
    if ctx.quantity != "loss" or ctx.output is None or ctx.target is None:
        return None
    o = _f64(ctx.output)
    t = _onehot(ctx.target, o)
    if t is None:
        return None
    pt = (_probabilities_of(o) * t).sum(axis=1)  # (N,): the target's probability
    exact = -np.log(np.maximum(pt, np.finfo(np.float64).tiny)).mean()
    if not explains(np.asarray(exact), ctx.reference, 1e-9):
        return None  # the reference saw other scores: the difference comes from before the loss
    for eps in LOG_EPS_CANDIDATES:
        for cand in (-np.log(pt + eps).mean(), -np.log(np.maximum(pt, eps)).mean()):
            if explains(np.asarray(cand), ctx.value, 1e-9):
                return (
                    f"{CLIPPED_LOG_HINT} (log(p + {eps:g}) or a clip at {eps:g}): exact while p >> {eps:g}, "
                    f"but bounded by -log({eps:g}) = {-math.log(eps):.3g} for predictions this wrong (target "
                    f"probability down to {pt.min():.2g}); log-softmax, x - logsumexp(x), is exact"
                )
    return None


def label_smoothing(ctx: RowContext) -> str | None:
    """The loss (or its gradient) is cross-entropy against smoothed targets (1 - a) y + a / C."""
    if ctx.quantity not in ("loss", "loss grad") or ctx.output is None or ctx.target is None:
        return None
    o = _f64(ctx.output)
    t = _onehot(ctx.target, o)
    if t is None or o.ndim != 2 or o.shape[1] < 2:
        return None
    n, c = o.shape
    p = _probabilities_of(o)
    logp = np.log(np.maximum(p, np.finfo(np.float64).tiny))
    if ctx.quantity == "loss":
        ce, uniform = float(-(t * logp).sum() / n), float(-logp.sum() / (n * c))
        if uniform == ce or not explains(np.asarray(ce), ctx.reference, 1e-6):
            return None  # the reference saw other scores
        a = (float(_f64(ctx.value)) - ce) / (uniform - ce)
        a_round = float(f"{a:.2g}")
        if not (0 < a < 1 and abs(a - a_round) <= 1e-6 * a):
            return None  # one scalar fits any a: only a round one counts (up to an eps in the log)
    else:
        v = _f64(ctx.value)
        if is_probability_rows(o):  # dL/dp = -t_a / (N p), t_a = t + a (1/C - t)
            pp = np.maximum(p, np.finfo(np.float64).tiny)
            base, shift = -t / (n * pp), -(1.0 / c - t) / (n * pp)
        else:  # dL/ds = (p - t_a) / N
            base, shift = (p - t) / n, (t - 1.0 / c) / n
        a = float(((v - base) * shift).sum() / (shift * shift).sum())
        if not (0 < a < 1 and explains(base + a * shift, v)):
            return None
    return (
        f"the targets are smoothed: this is cross-entropy against (1 - {a:.3g}) one-hot + {a:.3g} / C "
        f"(label smoothing {a:.3g}); PyTorch's reference uses the one-hot targets"
    )


HINTS: list[Callable[[RowContext], str | None]] = [
    clipped_log,
    label_smoothing,
    double_softmax,
    logits_as_probabilities,
    loss_reduction,
    transposed_weight,
    bias_reduction,
    layernorm,
    batchnorm,
    batchnorm_running_var,
    dropout,
    elu_output_derivative,
    softmax_axis,
    softmax_backward,
    batchnorm_backward,
    spatial_batchnorm_reshape,
    conv_flipped_kernel,
    activation_backward,
    layernorm_backward_axis,
    window_stride,
    maxpool_backward,
]


_AXIS_NAMES: dict[int, tuple[str, ...]] = {
    1: ("element",),
    2: ("row", "column"),
    3: ("index of axis 0", "index of axis 1", "index of axis 2"),
    4: ("sample", "channel", "row", "column"),
}


def _slab(wrong: np.ndarray) -> str | None:
    """ "only in column 3", "only in the last row", "only in channels 0, 5": the axis that confines the
    differing elements to the smallest fraction of its indices, or None when none does."""
    if wrong.ndim == 0 or wrong.ndim > 4:
        return None
    best: tuple[float, int, np.ndarray] | None = None
    for axis in range(wrong.ndim):
        others = tuple(a for a in range(wrong.ndim) if a != axis)
        idx = np.flatnonzero(wrong.any(axis=others) if others else wrong)
        size = wrong.shape[axis]
        if size < 2 or len(idx) >= size:
            continue
        frac = len(idx) / size
        if best is None or frac < best[0]:
            best = (frac, axis, idx)
    if best is None:
        return None
    _, axis, idx = best
    if int(wrong.sum()) <= len(idx):
        return None  # one element per index: "in k of n elements" says more
    name, size = _AXIS_NAMES[wrong.ndim][axis], wrong.shape[axis]
    if wrong.ndim == 1:
        return None  # "in k of n elements" says it all
    if len(idx) == 1:
        i = int(idx[0])
        which = "the last " + name if i == size - 1 else "the first " + name if i == 0 else f"{name} {i}"
        return f"only in {which}"
    shown = ", ".join(str(int(i)) for i in idx[:6]) + (", ..." if len(idx) > 6 else "")
    return f"only in {name}s {shown} ({len(idx)} of {size})"


def _sign_region(wrong: np.ndarray, x: np.ndarray | None) -> str | None:
    """ "only where the input is negative" (or <= 0, positive, >= 0) when that confines the difference."""
    if x is None or np.shape(x) != wrong.shape:
        return None
    x = _f64(x)
    for cond, text in ((x < 0, "negative"), (x <= 0, "<= 0"), (x > 0, "positive"), (x >= 0, ">= 0")):
        if cond.any() and not cond.all() and not wrong[~cond].any():
            return f"only where the input is {text}"
    return None


def describe(ctx: RowContext) -> str:
    """A generic one-line description of a difference no hypothesis explains.

    A constant factor is claimed only when value / reference is constant element-wise
    (:func:`constant_factor`). Otherwise it says where the elements that differ (|v - r| > rtol *
    max |r|) lie: only where the input is negative / positive, only in some rows, columns or
    channels, in k of n elements; and, when it holds there, that the value is c x the reference
    or zero on those elements.
    """
    d = ctx.diff
    if not d.same_shape:
        return f"shape {d.shape} where the reference has {d.ref_shape}"
    if not d.finite:
        side = "NumPy" if not np.isfinite(_f64(ctx.value)).all() else "reference"
        return f"non-finite values (NaN or inf) on the {side} side"
    v, r = _f64(ctx.value), _f64(ctx.reference)
    c = constant_factor(v, r)
    if c is not None:
        meaning = factor_meaning(c, ctx.batch_size)
        if c < 0 and abs(c + 1) <= FACTOR_NAME_RTOL:
            return "opposite sign (-1 x the reference in every element): sign flipped"
        text = f"{c:.4g} x the reference" + (" in every element: a constant factor" if v.size > 1 else "")
        return f"{text} ({meaning})" if meaning else text
    scale = float(np.abs(r).max()) if r.size else 0.0
    if scale == 0:
        return f"the reference is exactly 0 here, the value is up to {float(np.abs(v).max()):.3g} in size"
    wrong = np.abs(v - r) > ctx.rtol * scale
    k, n = int(wrong.sum()), wrong.size
    if k == 0:
        return f"differs: cosine {d.cosine:.4f}, norm ratio {d.norm_ratio:.4g}"
    where = [w for w in (_sign_region(wrong, ctx.input), _slab(wrong)) if w]
    there = ""
    if (v[wrong] == 0).all():
        there = ", there zero where the reference is not"
    else:
        cw = constant_factor(v[wrong], r[wrong])
        if cw is not None:
            meaning = factor_meaning(cw, ctx.batch_size)
            there = f", there {cw:.4g} x the reference" + (f" ({meaning})" if meaning else "")
    count = f"{k} of {n} elements"
    if where:
        return f"differs {' and '.join(where)} ({count}){there}"
    if k <= FEW_ELEMENTS_FRACTION * n or there:
        at = ""
        if k <= FEW_ELEMENTS_SHOWN:
            at = " at " + ", ".join(str(list(map(int, i))) for i in np.argwhere(wrong))
        return f"differs in {count}{at}{there} (cosine {d.cosine:.4f})"
    if d.cosine <= -1 + SAME_DIRECTION_TOL:
        return f"opposite sign ({d.norm_ratio:.4g}x the reference's norm), not by one constant factor"
    return f"differs in {count}: cosine {d.cosine:.4f}, norm ratio {d.norm_ratio:.4g}"


def diagnose(ctx: RowContext) -> list[str]:
    """The hints that explain the row, most specific first; a generic description if none does."""
    found = []
    for hint in HINTS:
        try:
            with np.errstate(all="ignore"):
                text = hint(ctx)
        except Exception:  # a hypothesis that cannot be computed on these arrays does not apply
            continue
        if text:
            found.append(text)
    return found or [describe(ctx)]


def agreement(ctx_dtype: str, diff: TensorDiff) -> str:
    """The status of an agreeing row: "exact", or "agree (float32 rounding)" for the dtype."""
    return "exact" if diff.max_abs_err == 0 else f"agree ({ctx_dtype} rounding)"
