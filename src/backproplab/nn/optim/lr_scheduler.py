"""Learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from backproplab.nn.optim.optimizer import Optimizer


class StepLR:
    """lr = base_lr * gamma ** (epoch // step_size), as ``torch.optim.lr_scheduler.StepLR``.

    Call ``step()`` once per scheduling period (per training step in this package's trainers).
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.last_epoch // self.step_size)

    def get_last_lr(self) -> list[float]:
        return [self.optimizer.lr]

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.base_lr, self.last_epoch = float(sd["base_lr"]), int(sd["last_epoch"])


#: Fraction of a one-cycle schedule spent warming up, and its starting factor.
ONECYCLE_WARMUP = 0.25
ONECYCLE_START = 0.1


class ScheduleFactor:
    """The factor f(t) that multiplies the base learning rate after t steps (LambdaLR's lambda).

    * ``cosine``: f = (1 + cos(pi * min(t, T) / T)) / 2, from 1 down to 0 at t = T;
    * ``onecycle``: linear from ONECYCLE_START to 1 over the first ONECYCLE_WARMUP * T steps, then
      linear down to 0 at t = T.

    Past T the factor stays at its final value (0). A callable object rather than a lambda, so
    ``LambdaLR.state_dict`` saves its settings.
    """

    def __init__(self, kind: str, total_steps: int) -> None:
        if kind not in ("cosine", "onecycle"):
            raise ValueError(f"ScheduleFactor kind must be 'cosine' or 'onecycle', got {kind!r}")
        self.kind, self.total_steps = kind, int(total_steps)

    def __call__(self, t: int) -> float:
        big_t = self.total_steps
        t = min(t, big_t)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t / big_t))
        warm = max(1, round(ONECYCLE_WARMUP * big_t))
        if t < warm:
            return ONECYCLE_START + (1.0 - ONECYCLE_START) * t / warm
        return max(0.0, (big_t - t) / max(1, big_t - warm))


class LambdaLR:
    """lr = base_lr * factor(t) after t calls of ``step()``, as ``torch.optim.lr_scheduler.LambdaLR``
    (with :class:`ScheduleFactor` for the cosine and one-cycle schedules)."""

    def __init__(self, optimizer: Optimizer, factor: Callable[[int], float]) -> None:
        self.optimizer, self.factor = optimizer, factor
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        optimizer.lr = self.base_lr * factor(0)

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.base_lr * self.factor(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        return [self.optimizer.lr]
