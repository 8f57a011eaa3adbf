"""NumPy layers with one planted bug each (subclasses of the real modules), and model builders.

Each bug is the kind a student makes; the parity tests check that it is flagged with the right
hint, and that the unmodified modules raise no false alarm.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from backproplab import nn
from backproplab.nn.softmax import softmax

N_IN, WIDTH, N_CLASSES = 12, 16, 5


class TransposedGradLinear(nn.Linear):
    """Bug: dL/dW = X^T G (in, out), the transpose of G^T X; only square layers accept it."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(x.T @ dout)  # (in, N) @ (N, out): transposed
        if self.bias is not None:
            self.bias.accumulate(dout.sum(axis=0))
        return dout @ self.weight.data  # type: ignore[no-any-return]


class TransposedForwardLinear(nn.Linear):
    """Bug: Y = X W + b (W where W^T belongs; square layers only)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight.data + self.bias.data  # type: ignore[union-attr]
        self._save_for_backward(x)
        return y  # type: ignore[no-any-return]


class UnbiasedLayerNorm(nn.LayerNorm):
    """Bug: the variance divides by n - 1 (NumPy's ddof=1) where LayerNorm uses the biased n."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        axes = self._axes
        n = int(np.prod(self.normalized_shape))
        xc = x - x.mean(axis=axes, keepdims=True)
        var = (xc * xc).sum(axis=axes, keepdims=True) / (n - 1)  # unbiased: the bug
        rstd = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
        x_hat = xc * rstd
        self._save_for_backward(x_hat, rstd)
        return x_hat * self.weight.data + self.bias.data  # type: ignore[no-any-return]


class EpsLayerNorm(nn.LayerNorm):
    """Bug: computes with eps = ``used_eps`` while declaring (and the twin using) ``self.eps``."""

    used_eps = 1e-3

    def forward(self, x: np.ndarray) -> np.ndarray:
        declared = self.eps
        self.eps = self.used_eps
        try:
            return super().forward(x)
        finally:
            self.eps = declared


class EpsOutsideLayerNorm(nn.LayerNorm):
    """Bug: x_hat = (x - mu) / (sqrt(var) + eps), eps outside the square root."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        axes = self._axes
        xc = x - x.mean(axis=axes, keepdims=True)
        var = (xc * xc).mean(axis=axes, keepdims=True)
        rstd = (1.0 / (np.sqrt(var) + self.eps)).astype(x.dtype)  # the bug
        x_hat = xc * rstd
        self._save_for_backward(x_hat, rstd)
        return x_hat * self.weight.data + self.bias.data  # type: ignore[no-any-return]


class OutputDerivativeELU(nn.ELU):
    """Bug: the derivative alpha * exp(.) is evaluated at the output y instead of the input x."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (y,) = self._saved()
        return np.where(y > 0, dout, dout * self.alpha * np.exp(y)).astype(dout.dtype)


class WrongAxisSoftmax(nn.Softmax):
    """Bug: normalises (and differentiates) along axis 0, the batch, instead of ``dim``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = softmax(x, 0)
        self._save_for_backward(y)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (y,) = self._saved()
        return y * (dout - (dout * y).sum(axis=0, keepdims=True))  # type: ignore[no-any-return]


def mlp_modules(
    depth: int,
    rng: np.random.Generator,
    *,
    activation: Callable[[], nn.Module] = nn.ELU,
    linear: Callable[..., nn.Linear] = nn.Linear,
    linear_at: int | None = None,
    dtype: type = np.float32,
    width: int = WIDTH,
) -> list[nn.Module]:
    """Linear (-> activation -> Linear) x (depth - 1) with PyTorch's default init: N_IN -> N_CLASSES.

    ``linear`` builds the Linear at index ``linear_at`` (a square hidden one for the transposed bugs).
    """
    widths = [N_IN] + [width] * (depth - 1) + [N_CLASSES]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        make = linear if i == linear_at else nn.Linear
        mods.append(make(a, b, rng=rng, dtype=dtype))
        if i < depth - 1:
            mods.append(activation())
    return mods


def batch(
    n: int, rng: np.random.Generator, dtype: type = np.float32, n_in: int = N_IN
) -> tuple[np.ndarray, np.ndarray]:
    """x ~ N(0, 1) (n, n_in) and labels in [0, N_CLASSES)."""
    return rng.standard_normal((n, n_in)).astype(dtype), rng.integers(0, N_CLASSES, n)


# ---------------------------------------------------------------------------- more planted bugs
class UnscaledBackwardDropout(nn.Dropout):
    """Bug: the backward multiplies by the 0/1 mask, forgetting the 1 / (1 - p) of the forward."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (mask,) = self._saved()
        return dout * (mask != 0)  # type: ignore[no-any-return]


class RedrawMaskDropout(nn.Dropout):
    """Bug: the backward draws a new mask instead of reusing the forward's."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        keep = self.rng.random(dout.shape) >= self.p
        return (dout * keep / (1 - self.p)).astype(dout.dtype)  # type: ignore[no-any-return]


class LastRowWeightGradLinear(nn.Linear):
    """Bug: the last row of dL/dW (the last output unit) is counted twice."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        gw = dout.T @ x  # (out, in)
        gw[-1] *= 2
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(dout.sum(axis=0))
        return dout @ self.weight.data  # type: ignore[no-any-return]


class LeakyBackwardReLU(nn.ReLU):
    """Bug: the backward lets 0.1 * G through where the input is negative."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._save_for_backward(x)
        return np.maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        return np.where(x > 0, dout, 0.1 * dout).astype(dout.dtype)  # type: ignore[no-any-return]


class BatchScaledBiasLinear(nn.Linear):
    """Bug: the bias gradient is multiplied by the batch size (the loss's mean undone in the layer)."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(dout.T @ x)
        self.bias.accumulate(dout.sum(axis=0) * len(dout))  # type: ignore[union-attr]
        return dout @ self.weight.data  # type: ignore[no-any-return]


class TransposedAccumulateLinear(nn.Linear):
    """Bug: dL/dW = X^T G, of shape (in, out); a non-square layer's Parameter.accumulate refuses it."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(x.T @ dout)
        return dout @ self.weight.data  # type: ignore[no-any-return]


def unbiased_batchnorm(cls: type[nn.Module]) -> type[nn.Module]:
    """Bug (forward): BatchNorm normalising with the unbiased variance (divide by M - 1)."""

    class UnbiasedBatchNorm(cls):  # type: ignore[misc,valid-type]
        def forward(self, x: np.ndarray) -> np.ndarray:
            y = super().forward(x)
            rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]).astype(np.float64)  # (M, C)
            m = rows.shape[0]
            var = rows.var(axis=0)  # biased, (C,)
            shape = (1, -1) + (1,) * (x.ndim - 2)
            f = np.sqrt((var + self.eps) / (var * m / (m - 1) + self.eps)).reshape(shape)
            b = self.bias.data.reshape(shape)
            return ((y - b) * f + b).astype(x.dtype)  # type: ignore[no-any-return]

    return UnbiasedBatchNorm


def biased_running_var_batchnorm(cls: type[nn.Module]) -> type[nn.Module]:
    """Bug: running_var updated with the biased batch variance (torch uses the unbiased one)."""

    class BiasedRunningVarBatchNorm(cls):  # type: ignore[misc,valid-type]
        def _update_running_stats(self, mean: np.ndarray, var_biased: np.ndarray, m: int) -> None:
            super()._update_running_stats(mean, var_biased * (m - 1) / m, m)

    return BiasedRunningVarBatchNorm
