"""Layer normalisation in the NumPy engine, the twin of ``torch.nn.LayerNorm``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backproplab.errors import ShapeError
from backproplab.nn import init
from backproplab.nn.module import Module, check_dout, check_input
from backproplab.nn.parameter import Parameter


class LayerNorm(Module):
    """y = gamma * (x - mu) / sqrt(var + eps) + beta over the last ``len(normalized_shape)`` axes.

    mu and the biased variance var are taken over the M trailing elements of each group, as
    ``torch.nn.LayerNorm`` (eps = 1e-5 by default). Shapes: x (*, *normalized_shape) -> y of the
    same shape. Parameters ``weight`` (gamma, init 1) and ``bias`` (beta, init 0), both of shape
    ``normalized_shape``, under torch's names, so state dicts load across.

    Backward, for upstream gradient G = dL/dy, rstd = 1 / sqrt(var + eps), means over each group:
    dL/dbeta = sum_batch G, dL/dgamma = sum_batch G * x_hat,
    dL/dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) with g = G * gamma.
    Caches x_hat and rstd. A wrong trailing shape is a :class:`ShapeError`.
    """

    def __init__(
        self, normalized_shape: int | Sequence[int], eps: float = 1e-5, *, dtype: np.dtype | type = np.float32
    ) -> None:
        super().__init__()
        shape = (
            (normalized_shape,)
            if isinstance(normalized_shape, int)
            else tuple(int(s) for s in normalized_shape)
        )
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"normalized_shape must be positive sizes, got {normalized_shape!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.normalized_shape = shape
        self.eps = float(eps)
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        self.bias = Parameter(np.empty(shape, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self, rng: np.random.Generator | None = None) -> None:
        """gamma 1, beta 0, as torch; draws nothing (``rng`` is accepted so every layer's
        ``reset_parameters(rng)`` has one signature)."""
        init.ones_(self.weight)
        init.zeros_(self.bias)

    @property
    def _axes(self) -> tuple[int, ...]:
        return tuple(range(-len(self.normalized_shape), 0))

    def forward(self, x: np.ndarray) -> np.ndarray:
        k = len(self.normalized_shape)
        check_input(self, x, range(k, 33), {})
        if x.shape[x.ndim - k :] != self.normalized_shape:
            raise ShapeError(
                f"LayerNorm expects an input of shape (*, {', '.join(map(str, self.normalized_shape))}), "
                f"got {x.shape}"
            )
        axes = self._axes
        mu = x.mean(axis=axes, keepdims=True)  # (*, 1, ..., 1)
        xc = x - mu  # (*, *normalized_shape)
        var = (xc * xc).mean(axis=axes, keepdims=True)  # biased variance, (*, 1, ..., 1)
        rstd = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        x_hat = xc * rstd  # (*, *normalized_shape)
        self._save_for_backward(x_hat, rstd)
        return x_hat * self.weight.data + self.bias.data

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_hat, rstd = self._saved()
        check_dout(self, dout, x_hat.shape)
        axes = self._axes
        batch_axes = tuple(range(dout.ndim - len(axes)))
        self.weight.accumulate((dout * x_hat).sum(axis=batch_axes))  # (*normalized_shape)
        self.bias.accumulate(dout.sum(axis=batch_axes))
        g = dout * self.weight.data  # (*, *normalized_shape)
        mean_g = g.mean(axis=axes, keepdims=True)  # (*, 1, ..., 1)
        mean_gx = (g * x_hat).mean(axis=axes, keepdims=True)
        return rstd * (g - mean_g - x_hat * mean_gx)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"
