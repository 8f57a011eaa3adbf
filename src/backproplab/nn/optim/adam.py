"""Adam, with torch.optim.Adam's update rule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial

import numpy as np

from backproplab.nn.optim.optimizer import Optimizer
from backproplab.nn.parallel import parallel_blocks
from backproplab.nn.parameter import Parameter


def adam_update(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    betas: tuple[float, float],
    step_size: float,
    root_c2: float,
    eps: float,
) -> None:
    """One Adam update of (slices of) a parameter ``p``, its gradient ``g`` and moments ``m``, ``v``
    (all the same shape), in place.

    m <- m + (1 - b1) (g - m); v <- b2 v + (1 - b2) g^2; p <- p - step_size * m / (sqrt(v) / root_c2 + eps),
    with step_size = lr / (1 - b1^t) and root_c2 = sqrt(1 - b2^t). The same operations in the same
    order on every element whatever the slicing, so blocked and whole-array updates agree bit for bit.
    """
    b1, b2 = betas
    tmp = g - m
    tmp *= 1 - b1
    m += tmp  # torch's lerp_: m + (1 - b1) * (g - m)
    v *= b2
    np.multiply(g, 1 - b2, out=tmp)
    tmp *= g
    v += tmp  # (1 - b2) * g * g
    denom = np.sqrt(v)
    denom /= root_c2
    denom += eps
    np.divide(m, denom, out=tmp)
    tmp *= step_size
    p -= tmp


def _adam_block(
    flat: list[np.ndarray], betas: tuple[float, float], step_size: float, root_c2: float, eps: float, s: slice
) -> None:
    """:func:`adam_update` on the slice ``s`` of flattened (p, g, m, v)."""
    p, g, m, v = (a[s] for a in flat)
    adam_update(p, g, m, v, betas, step_size, root_c2, eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba) as ``torch.optim.Adam`` (L2 weight decay, not AdamW).

    For each parameter p with gradient g, at step t = 1, 2, ...:
    g <- g + weight_decay * p; m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Adam betas must lie in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def step(self) -> None:
        b1, b2 = self.betas
        for p, st in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if not st:
                st["step"] = np.zeros((), dtype=np.int64)
                st["exp_avg"] = np.zeros_like(p.data)
                st["exp_avg_sq"] = np.zeros_like(p.data)
            st["step"] += 1
            t = int(st["step"])
            m, v = st["exp_avg"], st["exp_avg_sq"]
            step_size, root_c2 = self.lr / (1 - b1**t), math.sqrt(1 - b2**t)
            arrays = (p.data, g, m, v)
            if all(a.flags.c_contiguous for a in arrays):  # cache-sized blocks over the threads
                flat = [a.reshape(-1) for a in arrays]
                parallel_blocks(
                    p.data.size, partial(_adam_block, flat, self.betas, step_size, root_c2, self.eps)
                )
            else:
                adam_update(*arrays, self.betas, step_size, root_c2, self.eps)
