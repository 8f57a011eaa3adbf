"""Residual connection: Y = X + F(X)."""

from __future__ import annotations

from typing import Any

import numpy as np

from backproplab.nn.module import Module, check_dout


class Residual(Module):
    """Y = X + inner(X) for a shape-preserving ``inner`` module (He et al., 2016).

    Backward: dL/dX = G + inner.backward(G), the identity path plus the branch. ``inner`` is
    registered as the child ``inner`` (state dict keys ``inner.*``). Subclasses with their own
    children (e.g. :class:`~backproplab.nn.convnet.PreActBlock`) override :meth:`branch` and
    :meth:`branch_backward` instead of passing ``inner``. Caches nothing itself; raises
    :class:`RuntimeError` if backward comes without a forward.
    """

    #: True when :meth:`branch` returns a new array that nothing caches and :meth:`branch_backward`
    #: returns a new array, so the skip connection may be added in place.
    branch_returns_fresh = False

    def __init__(self, inner: Module | None = None) -> None:
        super().__init__()
        if inner is not None:
            self.inner = inner

    def branch(self, x: np.ndarray) -> np.ndarray:
        """F(X)."""
        return self.inner(x)

    def branch_backward(self, dout: np.ndarray) -> np.ndarray:
        """dL/dX through F alone."""
        return self.inner.backward(dout)

    def forward(self, x: np.ndarray) -> np.ndarray:
        f = self.branch(x)
        if f.shape != x.shape:
            raise ValueError(
                f"{type(self).__name__}: the branch maps shape {x.shape} to {f.shape}; it must keep the shape"
            )
        self._save_for_backward(x.shape)
        if self.branch_returns_fresh:
            f += x
            return f
        return np.add(x, f)  # a new array: the branch's output may be cached by its last layer

    def backward(self, dout: np.ndarray) -> Any:
        (shape,) = self._saved()
        check_dout(self, dout, shape)
        d = self.branch_backward(dout)
        if self.branch_returns_fresh:
            d += dout
            return d
        return np.add(dout, d)  # a new array: the branch may return dout itself (an identity-like inner)
