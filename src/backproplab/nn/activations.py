"""Element-wise activations: ELU, ReLU, Tanh (shape-preserving, any number of dimensions)."""

from __future__ import annotations

import numpy as np

from backproplab.nn.fastmath import expm1_nonpositive, zeros
from backproplab.nn.module import Module, check_dout, check_input
from backproplab.nn.parallel import parallel_blocks


def _check(module: Module, x: np.ndarray) -> None:
    check_input(module, x, range(0, 33), {})


def _check_dout(module: Module, dout: np.ndarray, y: np.ndarray) -> None:
    check_dout(module, dout, y.shape)


class ELU(Module):
    """ELU(x) = x for x > 0, alpha * (exp(x) - 1) otherwise, as ``torch.nn.ELU``.

    Derivative: 1 for x > 0, alpha * exp(x) = ELU(x) + alpha otherwise. Since ELU(x) > 0 exactly
    when x > 0, the output Y alone determines the derivative, so only Y is cached. exp(x) - 1 comes
    from :func:`~backproplab.nn.fastmath.expm1_nonpositive` (vectorised, within a few ulps of
    ``np.expm1``, which is scalar code and 8x slower), in cache-sized blocks spread over the threads
    (:func:`~backproplab.nn.parallel.parallel_blocks`).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check(self, x)
        y = np.empty(x.shape, dtype=x.dtype)
        xf, yf = x.reshape(-1), y.reshape(-1)  # xf copies only if x is not contiguous

        def block(s: slice) -> None:  # cache-sized blocks, spread over the threads
            xs, ys = xf[s], yf[s]
            neg = np.minimum(xs, zeros(xs.size, xs.dtype))  # min(x, 0)
            expm1_nonpositive(neg, out=ys)  # exp(min(x, 0)) - 1: 0 where x > 0, no overflow for large x
            if self.alpha != 1.0:
                ys *= self.alpha
            ys += np.subtract(xs, neg, out=neg)  # + max(x, 0) = x - min(x, 0), exactly

        parallel_blocks(y.size, block)
        self._save_for_backward(y)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (y,) = self._saved()
        _check_dout(self, dout, y)
        if self.alpha != 1.0:
            return np.where(y > 0, 1, np.minimum(y, 0) + self.alpha).astype(y.dtype) * dout
        dx = np.empty(y.shape, dtype=dout.dtype)
        yf, df, dxf = y.reshape(-1), dout.reshape(-1), dx.reshape(-1)

        def block(s: slice) -> None:  # derivative min(y, 0) + 1: exp(x) where x <= 0, else 1
            dxs = np.minimum(yf[s], zeros(dxf[s].size, y.dtype), out=dxf[s])
            dxs += 1
            dxs *= df[s]

        parallel_blocks(dx.size, block)
        return dx

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class ReLU(Module):
    """ReLU(x) = max(x, 0); derivative 1 for x > 0 and 0 otherwise (0 at x = 0, as PyTorch)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check(self, x)
        y = np.maximum(x, 0)
        self._save_for_backward(y)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (y,) = self._saved()
        _check_dout(self, dout, y)
        return np.where(y > 0, dout, 0).astype(dout.dtype, copy=False)


class Tanh(Module):
    """Tanh(x); derivative 1 - tanh(x)^2, computed from the cached output."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check(self, x)
        y = np.tanh(x)
        self._save_for_backward(y)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (y,) = self._saved()
        _check_dout(self, dout, y)
        return dout * (1 - y * y)
