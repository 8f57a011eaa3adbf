"""Learning-rate schedules, stepped once per training step, built from the ``--lr_schedule`` flags
(:class:`~backproplab.training.optim_flags.OptimFlags`) for PyTorch or for the NumPy engine, with
the same factors (:class:`~backproplab.nn.optim.ScheduleFactor`) on both."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backproplab import nn
from backproplab.training.optim_flags import OptimFlags

if TYPE_CHECKING:
    import torch


def torch_scheduler(
    optimizer: torch.optim.Optimizer, flags: OptimFlags
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The scheduler of ``flags`` (None for ``constant``): ``step`` is ``StepLR(lr_step_size,
    lr_gamma)``, lr = lr0 * gamma ** (t // step_size); ``cosine`` and ``onecycle`` are
    :class:`~backproplab.nn.optim.ScheduleFactor` over ``schedule_steps`` (default ``max_steps``)."""
    import torch

    if flags.lr_schedule == "constant":
        return None
    if flags.lr_schedule == "step":
        assert flags.lr_step_size is not None  # validate_optim_flags
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=flags.lr_step_size, gamma=flags.lr_gamma)
    factor = nn.optim.ScheduleFactor(flags.lr_schedule, flags.schedule_length())
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def numpy_scheduler(
    optimizer: nn.optim.Optimizer, flags: OptimFlags
) -> nn.optim.LambdaLR | nn.optim.StepLR | None:
    """The NumPy engine's scheduler of ``flags``, with the same rule as :func:`torch_scheduler`."""
    if flags.lr_schedule == "constant":
        return None
    if flags.lr_schedule == "step":
        assert flags.lr_step_size is not None  # validate_optim_flags
        return nn.optim.StepLR(optimizer, step_size=flags.lr_step_size, gamma=flags.lr_gamma)
    return nn.optim.LambdaLR(optimizer, nn.optim.ScheduleFactor(flags.lr_schedule, flags.schedule_length()))


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the optimizer's first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
