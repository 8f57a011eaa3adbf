"""Cross-entropy losses: on probabilities (the practical's module) and fused with softmax on logits.

Targets are class indices (N,) of an integer dtype in [0, C), or per-class target distributions
(N, C) such as one-hot rows. ``reduction="mean"`` (the default, as PyTorch) divides the summed
loss by the batch size N; ``"sum"`` does not, so its gradient is exactly N times larger: the bug
that keeps a hand-written MLP from learning.
"""

from __future__ import annotations

import numpy as np

from backproplab.errors import DataError, ShapeError
from backproplab.nn.module import Module
from backproplab.nn.softmax import log_softmax, softmax

REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _scalar_dout(module: Module, dout: float | np.ndarray) -> float:
    """``dout`` as a float; anything but a scalar (the loss's shape) is a :class:`ShapeError`."""
    if np.ndim(dout) != 0:
        raise ShapeError(
            f"{type(module).__name__}.backward expects dout of shape () (the loss is a scalar), "
            f"got shape {np.shape(dout)}"
        )
    return float(dout)


def as_target_matrix(name: str, scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Validate ``scores`` (N, C) and ``target``; return the target as an (N, C) matrix.

    Index targets must be integers in [0, C) of shape (N,); distribution targets must have the
    shape of ``scores``. Anything else raises a :class:`ShapeError` or :class:`DataError` that
    names the expected and actual value.
    """
    if not isinstance(scores, np.ndarray) or scores.ndim != 2:
        shape = getattr(scores, "shape", type(scores).__name__)
        raise ShapeError(f"{name} expects scores of shape (N, C), got {shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        raise ShapeError(f"{name} expects floating-point scores, got dtype {scores.dtype}")
    n, c = scores.shape
    target = np.asarray(target)
    if target.ndim == 1:
        if not np.issubdtype(target.dtype, np.integer):
            raise DataError(f"{name}: index targets must be integers, got dtype {target.dtype}")
        if target.shape[0] != n:
            raise ShapeError(f"{name}: {n} score rows but {target.shape[0]} targets")
        if n and (target.min() < 0 or target.max() >= c):
            raise DataError(
                f"{name}: labels must lie in [0, {c - 1}] for {c} classes, got range [{target.min()}, {target.max()}]"
            )
        onehot = np.zeros_like(scores)
        onehot[np.arange(n), target] = 1
        return onehot
    if target.shape != scores.shape:
        raise ShapeError(f"{name} expects targets of shape ({n},) or {scores.shape}, got {target.shape}")
    if not np.all(np.isfinite(target)):
        raise DataError(f"{name}: targets contain NaN or inf")
    return target.astype(scores.dtype, copy=False)


class CrossEntropy(Module):
    """L = -sum_n sum_c T[n,c] log P[n,c], divided by N for ``reduction="mean"``.

    Takes probabilities P (N, C), e.g. a :class:`~backproplab.nn.Softmax` output, as the
    practical's NumPy module does; log(P) is taken as log(max(P, tiny)) so that a probability
    that underflowed to 0 gives a large finite loss instead of inf. PyTorch equivalent:
    ``nll_loss(log(P), T, reduction=...)``.

    Backward: dL/dP = -dout * T / max(P, tiny) (/ N for mean). Caches P (clipped), T and the scale.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, probs: np.ndarray, target: np.ndarray) -> np.floating:
        t = as_target_matrix("CrossEntropy", probs, target)
        p = np.maximum(probs, np.finfo(probs.dtype).tiny)
        scale = 1.0 / probs.shape[0] if self.reduction == "mean" else 1.0
        loss = -(t * np.log(p)).sum() * scale
        self._save_for_backward(p, t, scale)
        return probs.dtype.type(loss)

    def backward(self, dout: float | np.ndarray = 1.0) -> np.ndarray:
        p, t, scale = self._saved()
        return (-(_scalar_dout(self, dout) * scale) * t / p).astype(p.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class SoftmaxCrossEntropy(Module):
    """L = -sum_n sum_c T[n,c] log softmax(Z)[n,c], divided by N for ``reduction="mean"``.

    Takes logits Z (N, C), as ``torch.nn.CrossEntropyLoss``; log-softmax uses the max trick, so
    the loss is finite for any finite logits. Backward: dL/dZ = dout * (softmax(Z) - T) (/ N for
    mean). Caches softmax(Z), T and the scale.

    ``label_smoothing`` = eps replaces the target by (1 - eps) T + eps / C, as
    ``torch.nn.CrossEntropyLoss(label_smoothing=eps)``.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: np.ndarray, target: np.ndarray) -> np.floating:
        t = as_target_matrix("SoftmaxCrossEntropy", logits, target)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / logits.shape[1]  # (N, C)
        scale = 1.0 / logits.shape[0] if self.reduction == "mean" else 1.0
        loss = -(t * log_softmax(logits, 1)).sum() * scale
        self._save_for_backward(softmax(logits, 1), t, scale)
        return logits.dtype.type(loss)

    def backward(self, dout: float | np.ndarray = 1.0) -> np.ndarray:
        p, t, scale = self._saved()
        return ((p - t) * (_scalar_dout(self, dout) * scale)).astype(p.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"
