"""Conv2d: float64 central differences and float32 against torch.nn.Conv2d (nn_checks), im2col/col2im,
memory layout, accumulation, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nn_checks import CHECKS, channels_last, check_numeric, check_twin, conv_case

from backproplab.errors import ShapeError
from backproplab.nn import Conv2d, no_grad
from backproplab.nn.conv import TRANSPOSED_MIN_CHANNELS, col2im, conv_output_size, im2col
from backproplab.verify import GradcheckCase

#: Input channel counts drawn: below TRANSPOSED_MIN_CHANNELS dL/dX goes through col2im, at or above
#: it (with stride 1) through the transposed-convolution matmul; both are exercised.
CHANNELS = (1, 2, 3, TRANSPOSED_MIN_CHANNELS)
ADJOINT_RTOL = 1e-12


@st.composite
def conv_cases(draw: Any) -> dict[str, Any]:
    """Small conv geometries: odd sizes, batch 1, stride 1-2, padding 0-2, square or not kernels."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, min(2, kh))), draw(st.integers(0, min(2, kw)))
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    return {
        "n": draw(st.integers(1, 2)),
        "c_in": draw(st.sampled_from(CHANNELS)),
        "c_out": draw(st.integers(1, 3)),
        "h": h,
        "w": w,
        "kernel": (kh, kw),
        "stride": (sh, sw),
        "padding": (ph, pw),
        "bias": draw(st.booleans()),
    }


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=25, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2**16), nhwc_memory=st.booleans())
def test_conv2d(check: Callable[..., object], case: dict[str, Any], seed: int, nhwc_memory: bool) -> None:
    """float64: every gradient against central differences; float32: against torch, NCHW or channels-last."""
    tensors = ["input", "weight", "bias"] if case["bias"] else ["input", "weight"]
    check(conv_case(case), seed, tensors=tensors, nhwc_memory=nhwc_memory)


@pytest.mark.torch
@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "s", "p", "side"),
    [(3, 16, 3, 1, 1, 9), (16, 16, 3, 1, 1, 5), (16, 32, 1, 1, 0, 5), (16, 8, 3, 2, 1, 7)],
)
def test_conv2d_convnet_shapes_match_torch(c_in: int, c_out: int, k: int, s: int, p: int, side: int) -> None:
    """The ConvNet's own geometries (3x3 padding 1 with many channels, 1x1, stride 2) at batch 2."""
    case = GradcheckCase(
        "Conv2d",
        "Conv2d",
        lambda rng: Conv2d(c_in, c_out, k, s, p, rng=rng),
        lambda rng: rng.normal(size=(2, c_in, side, side)),
    )
    check_twin(case, 3)


def test_conv2d_gradcheck_transposed_path_with_padding_2() -> None:
    """Stride 1 with C_in >= TRANSPOSED_MIN_CHANNELS: the transposed-convolution path; padding 2 > k // 2."""
    case = GradcheckCase(
        "Conv2d",
        "Conv2d",
        lambda rng: Conv2d(TRANSPOSED_MIN_CHANNELS, 2, 3, 1, 2, rng=rng),
        lambda rng: rng.normal(size=(1, TRANSPOSED_MIN_CHANNELS, 3, 4)),
    )
    check_numeric(case, 5, tensors=["input", "weight", "bias"])


@settings(max_examples=20, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_col2im_is_the_adjoint_of_im2col(case: dict[str, Any], seed: int) -> None:
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im sums each window value back to its origin."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(case["n"], case["h"], case["w"], case["c_in"]))  # NHWC
    cols = im2col(x, case["kernel"], case["stride"], case["padding"])
    c = rng.normal(size=cols.shape)
    back = col2im(c, (case["h"], case["w"]), case["stride"], case["padding"])
    assert back.shape == x.shape
    lhs, rhs = np.sum(cols * c), np.sum(x * back)
    assert abs(lhs - rhs) <= ADJOINT_RTOL * (abs(lhs) + abs(rhs) + 1.0)


def test_im2col_values() -> None:
    """One window by hand: padding zeros outside, the input inside."""
    x = np.arange(2 * 4 * 5 * 3, dtype=np.float64).reshape(2, 4, 5, 3)  # NHWC
    cols = im2col(x, (3, 3), (2, 2), (1, 1))
    assert (
        cols.shape
        == (2, conv_output_size(4, 3, 2, 1), conv_output_size(5, 3, 2, 1), 3, 3, 3)
        == (2, 2, 3, 3, 3, 3)
    )
    np.testing.assert_array_equal(cols[1, 0, 0, 0], 0)  # the row above the image
    np.testing.assert_array_equal(cols[1, 0, 0, 1, 0], 0)  # the column left of it
    np.testing.assert_array_equal(cols[1, 0, 0, 1, 1:], x[1, 0, 0:2])
    np.testing.assert_array_equal(cols[1, 1, 2, 1:, :2], x[1, 2:4, 3:5])
    np.testing.assert_array_equal(cols[1, 1, 2, :, 2], 0)  # the column right of it


def test_output_is_channels_last_and_layout_does_not_change_results() -> None:
    rng = np.random.default_rng(0)
    conv = Conv2d(4, 6, 3, padding=1, rng=rng)
    x = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    y1 = conv(x)
    g = rng.normal(size=y1.shape).astype(np.float32)
    dx1 = conv.backward(g)
    w1 = conv.weight.grad.copy()  # type: ignore[union-attr]
    conv.zero_grad()
    y2 = conv(channels_last(x))
    dx2 = conv.backward(channels_last(g))
    assert y1.shape == (2, 6, 5, 5)
    assert y1.transpose(0, 2, 3, 1).flags.c_contiguous  # an NCHW view of NHWC memory
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(w1, conv.weight.grad)


def test_gradients_accumulate_and_input_grad_can_be_skipped() -> None:
    rng = np.random.default_rng(1)
    conv = Conv2d(3, 4, 3, padding=1, rng=rng)
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    g = rng.normal(size=(2, 4, 6, 6)).astype(np.float32)
    conv(x)
    conv.backward(g)
    once = conv.weight.grad.copy()  # type: ignore[union-attr]
    conv.needs_input_grad = False
    conv(x)
    assert conv.backward(g) is None
    np.testing.assert_allclose(conv.weight.grad, 2 * once, rtol=1e-6)  # type: ignore[arg-type]


def test_init_is_torch_default_and_seeded() -> None:
    a = Conv2d(16, 8, 3, rng=np.random.default_rng(7))
    b = Conv2d(16, 8, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    bound = 1 / np.sqrt(16 * 9)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    assert a.weight.data.dtype == np.float32 and a.weight.shape == (8, 16, 3, 3)
    assert np.abs(a.weight.data).max() <= bound and np.abs(a.bias.data).max() <= bound  # type: ignore[union-attr]
    assert a.weight.data.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)  # std of U(-b, b)


def test_errors_are_clear() -> None:
    conv = Conv2d(3, 4, 3, rng=np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"expects size 3 in dimension 1"):
        conv(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ShapeError, match=r"4-D input"):
        conv(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ShapeError, match=r"smaller than the kernel 3x3"):
        conv(np.zeros((1, 3, 2, 5), np.float32))
    with pytest.raises(ShapeError, match=r"float32 parameters but got a float64 input"):
        conv(np.zeros((1, 3, 5, 5)))
    with pytest.raises(RuntimeError, match=r"Conv2d.backward called without a forward"):
        conv.backward(np.zeros((1, 4, 3, 3), np.float32))
    with no_grad():
        y = conv(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(RuntimeError, match="without a forward"):
        conv.backward(y)
    conv(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ShapeError, match=r"expects dout of shape \(1, 4, 3, 3\).*got shape \(1, 4, 3, 2\)"):
        conv.backward(np.zeros((1, 4, 3, 2), np.float32))
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2d(3, 4, (3, 3, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride >= 1"):
        Conv2d(3, 4, 3, stride=0)
