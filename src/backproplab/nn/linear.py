"""Fully connected layer."""

from __future__ import annotations

import numpy as np

from backproplab.nn import init
from backproplab.nn.module import Module, check_dout, check_input
from backproplab.nn.parameter import Parameter


class Linear(Module):
    """Y = X W^T + b, as ``torch.nn.Linear``.

    Shapes: X (N, in_features) -> Y (N, out_features).
    Parameters: ``weight`` (out_features, in_features) and ``bias`` (out_features,), drawn once, by
    :meth:`reset_parameters` from ``rng``, with ``init_scheme`` (see
    :func:`backproplab.nn.init.init_layer_`): ``"torch"`` (the default) as PyTorch does,
    U(-1/sqrt(in), 1/sqrt(in)) for both; ``"practical"`` or ``"kaiming"`` (for the activation
    ``nonlinearity`` that follows). ``rng=None`` draws from a fresh unseeded generator.

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
        init_scheme: str = "torch",
        nonlinearity: str = "relu",
    ) -> None:
        super().__init__()
        if init_scheme not in init.INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {init_scheme!r}; expected one of {init.INIT_SCHEMES}")
        if in_features < 0 or out_features <= 0:
            raise ValueError(
                f"Linear needs in_features >= 0 and out_features > 0, got {in_features}, {out_features}"
            )
        self.needs_input_grad = True
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        self.bias: Parameter | None = Parameter(np.empty(out_features, dtype=dtype)) if bias else None
        self.init_scheme, self.nonlinearity = init_scheme, nonlinearity
        self.reset_parameters(rng if rng is not None else np.random.default_rng())

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Draw ``weight`` and ``bias`` from ``rng`` with the layer's ``init_scheme`` (in place)."""
        init.init_layer_(self.weight, self.bias, self.init_scheme, rng, nonlinearity=self.nonlinearity)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, 2, {1: self.in_features})
        y = x @ self.weight.data.T  # (N, in) @ (in, out) -> (N, out)
        if self.bias is not None:
            y += self.bias.data
        self._save_for_backward(x)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        (x,) = self._saved()
        check_dout(self, dout, (x.shape[0], self.out_features))
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
