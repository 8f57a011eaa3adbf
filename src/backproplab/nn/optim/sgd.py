"""Stochastic gradient descent, with torch.optim.SGD's update rule."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from backproplab.nn.blas import axpy
from backproplab.nn.optim.optimizer import Optimizer
from backproplab.nn.parameter import Parameter


class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay.

    For each parameter p with gradient g, as ``torch.optim.SGD``:
    g <- g + weight_decay * p;
    with momentum: b <- g at the first step, else b <- momentum * b + (1 - dampening) * g;
    g <- g + momentum * b (nesterov) or g <- b;
    p <- p - lr * g.

    The updates run as BLAS axpy where it is available (:func:`backproplab.nn.blas.axpy`: one pass
    over memory, over BLAS's threads), else as NumPy ufuncs.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov

    def step(self) -> None:
        for p, st in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = np.array(g, copy=True)
                else:
                    buf *= self.momentum
                    axpy(1 - self.dampening, g, buf)  # b <- momentum * b + (1 - dampening) * g
                if self.nesterov:
                    g = np.array(g, copy=True)
                    axpy(self.momentum, buf, g)  # g + momentum * b
                else:
                    g = buf
            axpy(-self.lr, g.astype(p.data.dtype, copy=False), p.data)  # p <- p - lr * g, one pass
