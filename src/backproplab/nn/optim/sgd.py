"""Stochastic gradient descent, with torch.optim.SGD's update rule."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import numpy as np

from backproplab.nn.optim.optimizer import Optimizer
from backproplab.nn.parallel import parallel_blocks
from backproplab.nn.parameter import Parameter


def sgd_update(p: np.ndarray, g: np.ndarray, lr: float) -> None:
    """p <- p - lr * g in place, for (matching slices of) a parameter and its gradient."""
    p -= np.multiply(g, lr)


def _sgd_block(p: np.ndarray, g: np.ndarray, lr: float, s: slice) -> None:
    """:func:`sgd_update` on the slice ``s`` of flattened p and g."""
    sgd_update(p[s], g[s], lr)


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
            if p.data.flags.c_contiguous and g.flags.c_contiguous and g.dtype == p.data.dtype:
                # p <- p - lr * g in cache-sized blocks over the threads (lr * g never leaves the cache)
                pf, gf = p.data.reshape(-1), g.reshape(-1)
                parallel_blocks(pf.size, partial(_sgd_block, pf, gf, self.lr))
            else:
                sgd_update(p.data, g, self.lr)
