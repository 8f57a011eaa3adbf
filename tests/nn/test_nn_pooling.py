"""MaxPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d: central differences (float64) and the torch twin (float32)
(nn_checks), ties routed as torch routes them, values by hand, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nn_checks import CHECKS, check_twin

from backproplab.errors import ShapeError
from backproplab.nn import AdaptiveAvgPool2d, GlobalAvgPool2d, MaxPool2d, no_grad, parallel
from backproplab.nn.pooling import adaptive_bins
from backproplab.verify import GradcheckCase
from backproplab.verify.registry import without_ties

#: Exact results (a mean of 15 float64 values, by hand) to round-off.
BY_HAND_RTOL = 1e-12


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


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=25, deadline=None)
@given(case=pool_cases(), seed=st.integers(0, 2**16), nhwc_memory=st.booleans())
def test_maxpool(check: Callable[..., object], case: dict[str, Any], seed: int, nhwc_memory: bool) -> None:
    """Inputs without ties (distinct values 1e-2 apart: a max is not differentiable at a tie); against
    torch the output is bit-equal (a max is exact)."""
    shape = (case["n"], case["c"], case["h"], case["w"])
    pool = GradcheckCase(
        "MaxPool2d",
        "MaxPool2d",
        lambda rng: MaxPool2d(case["kernel"], case["stride"], case["padding"]),
        lambda rng: without_ties(rng, shape),
    )
    check(pool, seed, tensors=["input"], nhwc_memory=nhwc_memory, exact_output=True)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(1, 2, 7, 5), (2, 3, 8, 8), (1, 1, 1, 1), (2, 1, 2, 3)])
def test_maxpool_practical_3_2_1_with_ties_routes_like_torch(shape: tuple[int, ...]) -> None:
    """The practical's MaxPool2d(3, 2, 1) on odd sizes, with many ties (integer inputs): torch sends the
    gradient to the first maximum of each window in row-major order, and so must we."""
    pool = GradcheckCase(
        "MaxPool2d(3, 2, 1) with ties",
        "MaxPool2d",
        lambda rng: MaxPool2d(3, 2, 1),
        lambda rng: rng.integers(0, 3, size=shape).astype(np.float64),
    )
    check_twin(pool, 2, exact_output=True)


@st.composite
def adaptive_cases(draw: Any) -> dict[str, Any]:
    return {
        "n": draw(st.integers(1, 2)),
        "c": draw(st.integers(1, 3)),
        "h": draw(st.integers(1, 7)),
        "w": draw(st.integers(1, 7)),
        "out": (draw(st.integers(1, 4)), draw(st.integers(1, 4))),
    }


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=20, deadline=None)
@given(case=adaptive_cases(), seed=st.integers(0, 2**16))
def test_adaptive_avgpool(check: Callable[..., object], case: dict[str, Any], seed: int) -> None:
    shape = (case["n"], case["c"], case["h"], case["w"])
    pool = GradcheckCase(
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool2d",
        lambda rng: AdaptiveAvgPool2d(case["out"]),
        lambda rng: rng.normal(size=shape),
    )
    check(pool, seed, tensors=["input"])


def test_global_avgpool_is_the_spatial_mean() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 5, 3))
    pool = GlobalAvgPool2d()
    y = pool(x)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3), keepdims=True), rtol=BY_HAND_RTOL)
    g = rng.normal(size=(2, 3, 1, 1))
    np.testing.assert_allclose(pool.backward(g), np.broadcast_to(g / 15, x.shape), rtol=BY_HAND_RTOL)
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


@pytest.mark.parametrize("nhwc_memory", [False, True])
@pytest.mark.parametrize("geometry", [(3, 2, 1), (2, 2, 0), ((3, 2), (1, 2), (1, 0))])
def test_maxpool_chunked_and_threaded_is_bit_equal(
    monkeypatch: pytest.MonkeyPatch, geometry: tuple[Any, ...], nhwc_memory: bool
) -> None:
    """Split over 2 threads in chunks of one image, forward and backward give the same bits as one
    pass over the whole batch (integer inputs, so ties route through the same winners)."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 4, size=(5, 3, 7, 6)).astype(np.float32)
    if nhwc_memory:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    g = rng.standard_normal((5, 3, *MaxPool2d(*geometry).output_hw(7, 6)), dtype=np.float32)

    def run() -> tuple[np.ndarray, np.ndarray]:
        pool = MaxPool2d(*geometry)
        return pool(x), pool.backward(g)

    parallel.set_num_threads(1)
    try:
        y_ref, dx_ref = run()
        monkeypatch.setattr(parallel, "MIN_PARALLEL_ELEMENTS", 1)
        monkeypatch.setattr(parallel, "CHUNK_BYTES", 1)
        parallel.set_num_threads(2)
        y, dx = run()
    finally:
        parallel.set_num_threads(None)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    assert np.count_nonzero(dx_ref) > 0


def test_maxpool_under_no_grad_gives_the_same_output_and_caches_nothing() -> None:
    """Inside no_grad the winning offsets are not tracked: the same maxima, and backward is an error."""
    x = np.random.default_rng(1).integers(0, 4, size=(3, 2, 7, 6)).astype(np.float32)
    pool = MaxPool2d(3, 2, 1)
    with no_grad():
        y = pool(x)
    np.testing.assert_array_equal(y, MaxPool2d(3, 2, 1)(x))
    with pytest.raises(RuntimeError, match="without a forward"):
        pool.backward(np.ones(y.shape, dtype=np.float32))
