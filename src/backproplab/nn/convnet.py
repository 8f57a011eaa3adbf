"""The practical's pre-activation ConvNet in NumPy, the twin of :class:`backproplab.torch_models.ConvNet`.

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

The attribute names and their order equal the torch model's, so ``state_dict()`` keys are the same
(``conv0.weight``, ``preact1.bn.running_mean``, ``preact1.conv.bias``, ..., ``linear.bias``) and
weights load across both ways. Activations stay in channels-last memory from conv0 to the end
(see :mod:`backproplab.nn.conv`).
"""

from __future__ import annotations

import numpy as np

from backproplab.errors import ShapeError
from backproplab.nn.activations import ReLU
from backproplab.nn.batchnorm import BatchNorm2d
from backproplab.nn.conv import Conv2d
from backproplab.nn.flatten import Flatten
from backproplab.nn.grad_mode import is_grad_enabled
from backproplab.nn.linear import Linear
from backproplab.nn.module import Module
from backproplab.nn.pooling import MaxPool2d
from backproplab.nn.residual import Residual

#: The largest input side that the five max-pools reduce to 1x1 (32 -> 16 -> 8 -> 4 -> 2 -> 1).
MAX_SIDE = 32


class PreActBlock(Residual):
    """Y = X + conv(ReLU(bn(X))), as the torch ``PreActBlock``: ``bn`` BatchNorm2d(channels), then
    ``conv`` Conv2d(channels, channels, 3, padding=1, bias=True) (PyTorch's default init from ``rng``).

    Shapes: (N, channels, H, W) -> (N, channels, H, W). The ReLU is applied in place to bn's output
    (which bn does not cache) and that array is what conv caches, so the block keeps one array per
    layer for backward. Backward: dH = conv.backward(G) * (H > 0) with H = ReLU(bn(X)), then
    dL/dX = G + bn.backward(dH).
    """

    branch_returns_fresh = True  # conv's output and bn's dL/dX are new arrays that nothing caches

    def __init__(
        self, channels: int, *, rng: np.random.Generator | None = None, dtype: np.dtype | type = np.float32
    ) -> None:
        super().__init__()
        self.bn = BatchNorm2d(channels, dtype=dtype)
        self.conv = Conv2d(channels, channels, 3, padding=1, bias=True, rng=rng, dtype=dtype)
        self._relu_out: np.ndarray | None = None

    def branch(self, x: np.ndarray) -> np.ndarray:
        h = self.bn(x)  # (N, C, H, W), a new array
        np.maximum(h, 0, out=h)  # ReLU in place
        self._relu_out = h if is_grad_enabled() else None  # conv caches this same array
        return self.conv(h)

    def branch_backward(self, dout: np.ndarray) -> np.ndarray:
        h, self._relu_out = self._relu_out, None
        dh = self.conv.backward(dout)  # a new array (conv raises first if there was no forward)
        assert dh is not None and h is not None
        dh *= h > 0  # ReLU's derivative; multiplying by the mask beats np.where
        return self.bn.backward(dh)


class ConvNet(Module):
    """The practical's PreAct ConvNet (see the module docstring); logits (N, n_classes).

    Init: PyTorch's defaults (Conv2d and Linear: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    BatchNorm: weight 1, bias 0, running mean 0, running var 1) drawn from ``rng`` in layer order.
    ``input_grad=False`` makes conv0 skip dL/dX (the data needs none; torch skips it too), and
    ``backward`` then returns None.
    """

    def __init__(
        self,
        n_channels: int = 3,
        n_classes: int = 10,
        *,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float32,
        input_grad: bool = True,
    ) -> None:
        super().__init__()
        if n_channels < 1 or n_classes < 1:
            raise ValueError(
                f"ConvNet needs n_channels >= 1 and n_classes >= 1, got {n_channels}, {n_classes}"
            )
        rng = rng if rng is not None else np.random.default_rng()
        self.n_channels, self.n_classes = n_channels, n_classes
        kw = {"rng": rng, "dtype": dtype}
        self.conv0 = Conv2d(n_channels, 64, 3, padding=1, **kw)  # type: ignore[arg-type]
        self.conv0.needs_input_grad = input_grad
        self.preact1 = PreActBlock(64, **kw)  # type: ignore[arg-type]
        self.conv1 = Conv2d(64, 128, 1, **kw)  # type: ignore[arg-type]
        self.maxpool1 = MaxPool2d(3, stride=2, padding=1)
        self.preact2_a = PreActBlock(128, **kw)  # type: ignore[arg-type]
        self.preact2_b = PreActBlock(128, **kw)  # type: ignore[arg-type]
        self.conv2 = Conv2d(128, 256, 1, **kw)  # type: ignore[arg-type]
        self.maxpool2 = MaxPool2d(3, stride=2, padding=1)
        self.preact3_a = PreActBlock(256, **kw)  # type: ignore[arg-type]
        self.preact3_b = PreActBlock(256, **kw)  # type: ignore[arg-type]
        self.conv3 = Conv2d(256, 512, 1, **kw)  # type: ignore[arg-type]
        self.maxpool3 = MaxPool2d(3, stride=2, padding=1)
        self.preact4_a = PreActBlock(512, **kw)  # type: ignore[arg-type]
        self.preact4_b = PreActBlock(512, **kw)  # type: ignore[arg-type]
        self.maxpool4 = MaxPool2d(3, stride=2, padding=1)
        self.preact5_a = PreActBlock(512, **kw)  # type: ignore[arg-type]
        self.preact5_b = PreActBlock(512, **kw)  # type: ignore[arg-type]
        self.maxpool5 = MaxPool2d(3, stride=2, padding=1)
        self.norm = BatchNorm2d(512, dtype=dtype)
        self.relu = ReLU()
        self.flatten = Flatten()
        self.linear = Linear(512, n_classes, **kw)  # type: ignore[arg-type]

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1] != self.n_channels:
            shape = getattr(x, "shape", type(x).__name__)
            raise ShapeError(f"ConvNet expects input of shape (N, {self.n_channels}, H, W), got {shape}")
        if x.shape[2] > MAX_SIDE or x.shape[3] > MAX_SIDE:
            raise ShapeError(
                f"ConvNet expects images of at most {MAX_SIDE}x{MAX_SIDE} (five max-pools to 1x1), "
                f"got {x.shape[2]}x{x.shape[3]}"
            )
        for module in self.children():
            x = module(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        for module in reversed(list(self.children())):
            dout = module.backward(dout)
        return dout
