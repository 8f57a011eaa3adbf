"""Adam, with torch.optim.Adam's update rule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from backproplab.nn.optim.optimizer import Optimizer
from backproplab.nn.parameter import Parameter


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
            m += (1 - b1) * (g - m)  # torch's lerp_: m + (1 - b1) * (g - m)
            v *= b2
            v += (1 - b2) * g * g
            step_size = self.lr / (1 - b1**t)
            denom = np.sqrt(v)
            denom /= math.sqrt(1 - b2**t)
            denom += self.eps
            p.data -= step_size * (m / denom)
