"""Softmax along one dimension."""

from __future__ import annotations

import numpy as np

from backproplab.nn.module import Module, check_dout, check_input


def softmax(x: np.ndarray, dim: int = -1) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along ``dim``; the max trick keeps exp from overflowing."""
    z = x - x.max(axis=dim, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=dim, keepdims=True)
    return z


def log_softmax(x: np.ndarray, dim: int = -1) -> np.ndarray:
    """x - max - log(sum(exp(x - max))) along ``dim``, stable for large or very negative x."""
    z = x - x.max(axis=dim, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=dim, keepdims=True))
    return z


class Softmax(Module):
    """Y = softmax(X) along ``dim`` (default: the last), as ``torch.nn.Softmax(dim)``.

    Backward: dX = Y * (dY - sum(dY * Y, dim)), the Jacobian-vector product of softmax without
    building the (C, C) Jacobian. Caches Y.
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, range(1, 33), {})
        y = softmax(x, self.dim)
        self._save_for_backward(y)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (y,) = self._saved()
        check_dout(self, dout, y.shape)
        return y * (dout - (dout * y).sum(axis=self.dim, keepdims=True))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
