"""Learning-rate schedules of the PyTorch trainers, stepped once per training step."""

from __future__ import annotations

import math

import torch

from backproplab.errors import ConfigError

SCHEDULES = ("constant", "step", "cosine", "onecycle")
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


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    *,
    total_steps: int | None = None,
    step_size: int | None = None,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The scheduler for ``kind`` (None for ``constant``).

    ``step``: ``StepLR(step_size, gamma)``, lr = base * gamma ** (t // step_size); ``cosine`` and
    ``onecycle``: :class:`ScheduleFactor` over ``total_steps``.
    """
    if kind == "constant":
        return None
    if kind == "step":
        if step_size is None or step_size < 1:
            raise ConfigError(f"the step schedule needs --lr_step_size >= 1, got {step_size}")
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if kind in ("cosine", "onecycle"):
        if total_steps is None or total_steps < 1:
            raise ConfigError(f"the {kind} schedule needs a positive number of steps, got {total_steps}")
        return torch.optim.lr_scheduler.LambdaLR(optimizer, ScheduleFactor(kind, total_steps))
    raise ConfigError(f"--lr_schedule must be one of {SCHEDULES}, got {kind!r}")


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the optimizer's first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
