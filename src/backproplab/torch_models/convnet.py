"""The practical's pre-activation ConvNet in PyTorch.

Layer by layer (C = ``n_channels``, K = ``n_classes``; spatial sizes for a 32x32 input):

    conv0      Conv2d(C, 64, 3, padding=1)                 64 x 32 x 32
    preact1    PreActBlock(64)
    conv1      Conv2d(64, 128, 1)                          128 x 32 x 32
    maxpool1   MaxPool2d(3, stride=2, padding=1)           128 x 16 x 16
    preact2_a, preact2_b   PreActBlock(128)
    conv2      Conv2d(128, 256, 1), maxpool2               256 x 8 x 8
    preact3_a, preact3_b   PreActBlock(256)
    conv3      Conv2d(256, 512, 1), maxpool3               512 x 4 x 4
    preact4_a, preact4_b   PreActBlock(512)
    maxpool4                                               512 x 2 x 2
    preact5_a, preact5_b   PreActBlock(512)
    maxpool5                                               512 x 1 x 1
    norm       BatchNorm2d(512), relu, flatten              512
    linear     Linear(512, K)                              K logits

PreActBlock(x) = x + conv3x3(ReLU(BN(x))). Each max-pool maps a side h to ceil(h / 2), so any
input of at most 32x32 ends at 1x1 (8x8 digits reach 1x1 after three pools; the last two then
keep 1x1); a larger input is a :class:`~backproplab.errors.ShapeError`. The attribute names and
order are fixed: the NumPy twin uses the same names, so state dicts load across.
"""

from __future__ import annotations

import torch
from torch import nn

from backproplab.errors import ShapeError
from backproplab.torch_models.init import torch_default_

#: The largest input side that the five max-pools reduce to 1x1 (32 -> 16 -> 8 -> 4 -> 2 -> 1).
MAX_SIDE = 32


class PreActBlock(nn.Module):
    """x + conv(ReLU(bn(x))): ``bn`` BatchNorm2d(channels), ``conv`` Conv2d(channels, channels, 3, padding=1).

    Shapes: (N, channels, H, W) -> (N, channels, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(torch.relu(self.bn(x)))


class ConvNet(nn.Module):
    """The practical's PreAct ConvNet (see the module docstring); logits (N, n_classes).

    Init: PyTorch's defaults (Conv2d and Linear: weight kaiming_uniform_(a=sqrt(5)), bias
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm: weight 1, bias 0, running mean 0, var 1),
    drawn from ``generator`` in module order when one is given, so a seed fixes the weights.
    """

    def __init__(
        self, n_channels: int = 3, n_classes: int = 10, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if n_channels < 1 or n_classes < 1:
            raise ValueError(
                f"ConvNet needs n_channels >= 1 and n_classes >= 1, got {n_channels}, {n_classes}"
            )
        self.n_channels, self.n_classes = n_channels, n_classes
        self.conv0 = nn.Conv2d(n_channels, 64, kernel_size=3, padding=1)
        self.preact1 = PreActBlock(64)
        self.conv1 = nn.Conv2d(64, 128, kernel_size=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.preact2_a = PreActBlock(128)
        self.preact2_b = PreActBlock(128)
        self.conv2 = nn.Conv2d(128, 256, kernel_size=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.preact3_a = PreActBlock(256)
        self.preact3_b = PreActBlock(256)
        self.conv3 = nn.Conv2d(256, 512, kernel_size=1)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, padding=1)
        self.preact4_a = PreActBlock(512)
        self.preact4_b = PreActBlock(512)
        self.maxpool4 = nn.MaxPool2d(3, stride=2, padding=1)
        self.preact5_a = PreActBlock(512)
        self.preact5_b = PreActBlock(512)
        self.maxpool5 = nn.MaxPool2d(3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(512)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(512, n_classes)
        if generator is not None:
            reset_parameters(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.n_channels:
            raise ShapeError(
                f"ConvNet expects input of shape (N, {self.n_channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] > MAX_SIDE or x.shape[3] > MAX_SIDE:
            raise ShapeError(
                f"ConvNet expects images of at most {MAX_SIDE}x{MAX_SIDE} (five max-pools to 1x1), "
                f"got {x.shape[2]}x{x.shape[3]}"
            )
        for module in self.children():
            x = module(x)
        return x


@torch.no_grad()
def reset_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Redo PyTorch's default init of every Conv, Linear and BatchNorm in ``model`` from ``generator``.

    Same distributions as each layer's ``reset_parameters``; draws in ``model.modules()`` order
    (weight then bias), on the generator's device.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            torch_default_(m, generator)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
