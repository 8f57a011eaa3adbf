"""Learning-rate schedules of the PyTorch trainers, stepped once per training step."""

from __future__ import annotations

import torch

from backproplab.errors import ConfigError
from backproplab.nn.optim.lr_scheduler import ScheduleFactor

SCHEDULES = ("constant", "step", "cosine", "onecycle")


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
