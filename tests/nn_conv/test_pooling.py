"""MaxPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d: central differences (float64) and torch (float32)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nn_conv_checks import GRADCHECK_RTOL, assert_close32, channels_last, gradcheck_module

from backproplab.errors import ShapeError
from backproplab.nn import AdaptiveAvgPool2d, GlobalAvgPool2d, MaxPool2d
from backproplab.nn.pooling import adaptive_bins

#: Distinct input values at least this far apart, so no window has a tie within the
#: central-difference step (a max is not differentiable at a tie).
VALUE_GAP = 1e-2


@st.composite
def pool_cases(draw: Any) -> dict[str, Any]:
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))  # torch: padding <= kernel / 2
    return {
        "n": draw(st.integers(1, 2)),
        "c": draw(st.integers(1, 3)),
        "h": draw(st.integers(max(1, kh - 2 * ph), 7)),
        "w": draw(st.integers(max(1, kw - 2 * pw), 7)),
        "kernel": (kh, kw),
        "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "padding": (ph, pw),
    }


def distinct_values(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random permutation of 0, VALUE_GAP, 2 VALUE_GAP, ... (float64, no ties)."""
    return (rng.permutation(int(np.prod(shape))) * VALUE_GAP).reshape(shape) - 1.0


@settings(max_examples=20, deadline=None)
@given(case=pool_cases(), seed=st.integers(0, 2**16))
def test_maxpool_gradcheck_float64(case: dict[str, Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = MaxPool2d(case["kernel"], case["stride"], case["padding"])
    x = distinct_values((case["n"], case["c"], case["h"], case["w"]), rng)
    errors = gradcheck_module(pool, x, rng)
    assert errors["x"] < GRADCHECK_RTOL, errors


@settings(max_examples=25, deadline=None)
@given(case=pool_cases(), seed=st.integers(0, 2**16), nhwc_memory=st.booleans())
def test_maxpool_matches_torch_float32(case: dict[str, Any], seed: int, nhwc_memory: bool) -> None:
    rng = np.random.default_rng(seed)
    pool = MaxPool2d(case["kernel"], case["stride"], case["padding"])
    tpool = torch.nn.MaxPool2d(case["kernel"], case["stride"], case["padding"])
    x = rng.normal(size=(case["n"], case["c"], case["h"], case["w"])).astype(np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    y, ty = pool(channels_last(x) if nhwc_memory else x), tpool(tx)
    np.testing.assert_array_equal(y, ty.detach().numpy())  # a max is exact
    g = rng.normal(size=y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(g))
    assert_close32(pool.backward(g), tx.grad, "dL/dx")  # type: ignore[arg-type]


def test_maxpool_practical_3_2_1_with_ties_routes_like_torch() -> None:
    """The practical's MaxPool2d(3, 2, 1) on odd sizes, with many ties (integer inputs): torch sends the
    gradient to the first maximum of each window in row-major order, and so must we."""
    rng = np.random.default_rng(2)
    for shape in [(1, 2, 7, 5), (2, 3, 8, 8), (1, 1, 1, 1), (2, 1, 2, 3)]:
        x = rng.integers(0, 3, size=shape).astype(np.float32)
        pool, tpool = MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)
        tx = torch.from_numpy(x).requires_grad_()
        y, ty = pool(x), tpool(tx)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        g = rng.normal(size=y.shape).astype(np.float32)
        ty.backward(torch.from_numpy(g))
        assert_close32(pool.backward(g), tx.grad, f"dL/dx for {shape}")  # type: ignore[arg-type]


@st.composite
def adaptive_cases(draw: Any) -> dict[str, Any]:
    return {
        "n": draw(st.integers(1, 2)),
        "c": draw(st.integers(1, 3)),
        "h": draw(st.integers(1, 7)),
        "w": draw(st.integers(1, 7)),
        "out": (draw(st.integers(1, 4)), draw(st.integers(1, 4))),
    }


@settings(max_examples=20, deadline=None)
@given(case=adaptive_cases(), seed=st.integers(0, 2**16))
def test_adaptive_avgpool_gradcheck_and_torch(case: dict[str, Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (case["n"], case["c"], case["h"], case["w"])
    errors = gradcheck_module(AdaptiveAvgPool2d(case["out"]), rng.normal(size=shape), rng)
    assert errors["x"] < GRADCHECK_RTOL, errors
    pool, tpool = AdaptiveAvgPool2d(case["out"]), torch.nn.AdaptiveAvgPool2d(case["out"])
    x = rng.normal(size=shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_()
    y, ty = pool(x), tpool(tx)
    assert_close32(y, ty, "output")
    g = rng.normal(size=y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(g))
    assert_close32(pool.backward(g), tx.grad, "dL/dx")  # type: ignore[arg-type]


def test_global_avgpool_is_the_spatial_mean() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 5, 3))
    pool = GlobalAvgPool2d()
    y = pool(x)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)
    g = rng.normal(size=(2, 3, 1, 1))
    np.testing.assert_allclose(pool.backward(g), np.broadcast_to(g / 15, x.shape), rtol=1e-12)
    assert adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]  # torch's overlapping bins


def test_maxpool_caches_one_byte_per_output_and_errors() -> None:
    pool = MaxPool2d(3, 2, 1)
    x = np.zeros((2, 4, 9, 9), np.float32)
    y = pool(x)
    winner, _ = pool._cache  # type: ignore[misc]
    assert winner.dtype == np.uint8 and winner.size == y.size
    pool.backward(y)
    with pytest.raises(RuntimeError, match=r"MaxPool2d\.backward called without a forward"):
        pool.backward(y)
    with pytest.raises(ValueError, match="at most half the kernel"):
        MaxPool2d(3, 1, 2)
    with pytest.raises(ShapeError, match="4-D input"):
        pool(np.zeros((4, 9, 9), np.float32))
    with pytest.raises(ShapeError, match="smaller than the window"):
        MaxPool2d(3)(np.zeros((1, 1, 2, 2), np.float32))
    assert MaxPool2d(2).stride == (2, 2)  # stride defaults to the kernel, as torch
