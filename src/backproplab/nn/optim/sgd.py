"""Stochastic gradient descent, with torch.optim.SGD's update rule."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from backproplab.nn.optim.optimizer import Optimizer
from backproplab.nn.parameter import Parameter


class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay.

    For each parameter p with gradient g, as ``torch.optim.SGD``:
    g <- g + weight_decay * p;
    with momentum: b <- g at the first step, else b <- momentum * b + (1 - dampening) * g;
    g <- g + momentum * b (nesterov) or g <- b;
    p <- p - lr * g.
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
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            scratch = st.get("_scratch")
            if scratch is None or scratch.shape != g.shape or scratch.dtype != g.dtype:
                scratch = st["_scratch"] = np.empty_like(g)  # reused buffer for lr * g
            np.multiply(g, self.lr, out=scratch)
            p.data -= scratch
