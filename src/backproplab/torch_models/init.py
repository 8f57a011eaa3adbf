"""PyTorch's default init of Linear and Conv layers, drawn from an explicit ``torch.Generator``
(``reset_parameters`` of torch's layers takes none): the one copy of it in this project, the twin of
:func:`backproplab.nn.init.torch_default_`."""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def torch_default_weight_(weight: torch.Tensor, generator: torch.Generator | None) -> None:
    """``kaiming_uniform_(a=sqrt(5))``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = prod(shape[1:])."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)


@torch.no_grad()
def torch_default_(layer: nn.Linear | nn.Conv2d, generator: torch.Generator | None) -> None:
    """Weight as :func:`torch_default_weight_`, then bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the
    distributions and the draw order of the layer's own ``reset_parameters``."""
    torch_default_weight_(layer.weight, generator)
    if layer.bias is not None:
        fan_in = layer.weight[0].numel()  # in_features, or in_channels * kH * kW
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        layer.bias.uniform_(-bound, bound, generator=generator)
