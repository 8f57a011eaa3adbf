"""The practical's PreAct ConvNet: architecture, names, init, shapes, forward and backward."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backproplab.errors import ShapeError
from backproplab.torch_models import ConvNet, PreActBlock

FLOAT32_ATOL = 1e-5
FLOAT32_RTOL = 1e-5

CHILDREN = [
    "conv0", "preact1", "conv1", "maxpool1", "preact2_a", "preact2_b", "conv2", "maxpool2",
    "preact3_a", "preact3_b", "conv3", "maxpool3", "preact4_a", "preact4_b", "maxpool4",
    "preact5_a", "preact5_b", "maxpool5", "norm", "relu", "flatten", "linear",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Convolutions on a shared 2-core machine run faster, and reproducibly, on one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_layers_names_and_order_are_the_practicals() -> None:
    m = ConvNet()
    assert [name for name, _ in m.named_children()] == CHILDREN
    convs = {
        "conv0": (3, 64, 3, 1),
        "conv1": (64, 128, 1, 0),
        "conv2": (128, 256, 1, 0),
        "conv3": (256, 512, 1, 0),
    }
    for name, (cin, cout, k, pad) in convs.items():
        c = getattr(m, name)
        assert isinstance(c, nn.Conv2d) and c.bias is not None
        assert (c.in_channels, c.out_channels, c.kernel_size, c.padding) == (cin, cout, (k, k), (pad, pad))
    widths = {"preact1": 64, "preact2_a": 128, "preact2_b": 128, "preact3_a": 256, "preact3_b": 256}
    widths.update({n: 512 for n in ("preact4_a", "preact4_b", "preact5_a", "preact5_b")})
    for name, ch in widths.items():
        block = getattr(m, name)
        assert isinstance(block, PreActBlock)
        assert [n for n, _ in block.named_children()] == ["bn", "conv"]
        assert block.bn.num_features == ch
        assert (block.conv.in_channels, block.conv.out_channels, block.conv.kernel_size) == (ch, ch, (3, 3))
        assert block.conv.padding == (1, 1) and block.conv.bias is not None
    for i in range(1, 6):
        pool = getattr(m, f"maxpool{i}")
        assert isinstance(pool, nn.MaxPool2d)
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert isinstance(m.norm, nn.BatchNorm2d) and m.norm.num_features == 512
    assert (m.linear.in_features, m.linear.out_features) == (512, 10)
    assert sum(p.numel() for p in m.parameters()) == 11_138_122
    keys = list(m.state_dict())
    assert keys[:4] == ["conv0.weight", "conv0.bias", "preact1.bn.weight", "preact1.bn.bias"]
    assert keys[-2:] == ["linear.weight", "linear.bias"]


def test_preact_block_is_x_plus_conv_relu_bn() -> None:
    g = torch.Generator().manual_seed(0)
    block = PreActBlock(4)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(3, 4, 5, 5, generator=g) * 2 + 1
    bn = block.bn
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    # Training-mode BatchNorm normalises with the batch mean and the biased batch variance.
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    h = (x - mean) / torch.sqrt(var + bn.eps) * bn.weight[:, None, None] + bn.bias[:, None, None]
    want = x + F.conv2d(torch.relu(h), block.conv.weight, block.conv.bias, padding=1)
    torch.testing.assert_close(block(x), want, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL)


@pytest.mark.parametrize(("channels", "side"), [(3, 32), (1, 28), (1, 8), (3, 5)])
def test_logits_shape_for_every_side_up_to_32(channels: int, side: int) -> None:
    m = ConvNet(channels, 7)
    assert m(torch.randn(2, channels, side, side)).shape == (2, 7)


def test_forward_and_backward_on_a_small_batch() -> None:
    g = torch.Generator().manual_seed(2)
    m = ConvNet(generator=g)
    x = torch.randn(3, 3, 32, 32, generator=g)
    logits = m(x)
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    upstream = torch.randn(3, 10, generator=g)
    (logits * upstream).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


def test_init_is_pytorchs_default_and_reproducible_from_the_generator() -> None:
    a = ConvNet(generator=torch.Generator().manual_seed(5))
    b = ConvNet(generator=torch.Generator().manual_seed(5))
    c = ConvNet(generator=torch.Generator().manual_seed(6))
    for (name, pa), pb, pc in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
        if name.endswith(("conv.weight", "conv0.weight", "linear.weight")):
            assert not torch.equal(pa, pc), name
    for name, mod in a.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            # kaiming_uniform_(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            bound = 1 / math.sqrt(mod.weight[0].numel())
            assert mod.weight.abs().max() <= bound and mod.weight.abs().max() > 0.9 * bound, name
            assert mod.bias is not None and mod.bias.abs().max() <= bound, name
            # U(-b, b) has standard deviation b / sqrt(3).
            assert abs(float(mod.weight.detach().std()) - bound / math.sqrt(3)) < 0.1 * bound, name
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.equal(mod.weight, torch.ones_like(mod.weight)) and not mod.bias.any()


def test_wrong_inputs_are_clear_errors() -> None:
    m = ConvNet()
    with pytest.raises(ShapeError, match=r"expects input of shape \(N, 3, H, W\), got \(2, 1, 32, 32\)"):
        m(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ShapeError, match=r"at most 32x32.*got 64x64"):
        m(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ShapeError, match=r"got \(3, 32, 32\)"):
        m(torch.zeros(3, 32, 32))
