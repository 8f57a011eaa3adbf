"""The NumPy ConvNet without torch: no input gradient on request, input errors (against the torch ConvNet:
test_nn_convnet_vs_torch.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backproplab.errors import ShapeError
from backproplab.nn import ConvNet


def test_input_grad_false_and_errors() -> None:
    model = ConvNet(1, 4, rng=np.random.default_rng(8), input_grad=False)
    # digits-sized: 8 -> 4 -> 2 -> 1 -> 1 -> 1
    x = np.random.default_rng(9).normal(size=(2, 1, 8, 8)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 4)
    assert model.backward(np.ones_like(y)) is None
    assert model.conv0.weight.grad is not None
    with pytest.raises(ShapeError, match=r"\(N, 1, H, W\)"):
        model(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ShapeError, match="at most 32x32"):
        model(np.zeros((2, 1, 33, 8), np.float32))
    with pytest.raises(RuntimeError, match="without a forward"):
        model.backward(np.ones_like(y))
