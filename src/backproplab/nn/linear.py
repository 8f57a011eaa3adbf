"""Fully connected layer."""

from __future__ import annotations

import numpy as np

from backproplab.nn import init
from backproplab.nn.module import Module, check_input
from backproplab.nn.parameter import Parameter


class Linear(Module):
    """Y = X W^T + b, as ``torch.nn.Linear``.

    Shapes: X (N, in_features) -> Y (N, out_features).
    Parameters: ``weight`` (out_features, in_features) and ``bias`` (out_features,), initialised
    as PyTorch does (U(-1/sqrt(in), 1/sqrt(in)) for both) from ``rng``; other schemes through
    :func:`backproplab.nn.init.init_layer_`. ``rng=None`` draws from a fresh unseeded generator.

    Backward, for upstream gradient G = dL/dY (N, out):
    dL/dW = G^T X (out, in), dL/db = sum_n G[n] (out,), dL/dX = G W (N, in).
    Caches X (only outside ``no_grad``). Set ``needs_input_grad = False`` on a first layer, whose
    input is data, to skip dL/dX (PyTorch skips it too, as the data does not require grad);
    backward then returns None.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        if in_features < 0 or out_features <= 0:
            raise ValueError(
                f"Linear needs in_features >= 0 and out_features > 0, got {in_features}, {out_features}"
            )
        self.needs_input_grad = True
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        self.bias: Parameter | None = Parameter(np.empty(out_features, dtype=dtype)) if bias else None
        init.torch_default_(self.weight, self.bias, rng if rng is not None else np.random.default_rng())

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, 2, {1: self.in_features})
        y = x @ self.weight.data.T  # (N, in) @ (in, out) -> (N, out)
        if self.bias is not None:
            y += self.bias.data
        self._save_for_backward(x)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        (x,) = self._saved()
        if dout.shape != (x.shape[0], self.out_features):
            raise ValueError(
                f"Linear.backward expects dout of shape {(x.shape[0], self.out_features)}, got {dout.shape}"
            )
        self.weight.accumulate(dout.T @ x)  # (out, N) @ (N, in) -> (out, in)
        if self.bias is not None:
            self.bias.accumulate(dout.sum(axis=0))
        if not self.needs_input_grad:
            return None
        return dout @ self.weight.data  # (N, out) @ (out, in) -> (N, in)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )
