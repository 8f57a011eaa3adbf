"""The engine's fast paths against their plain references: Winograd F(2x2, 3x3) against im2col (values,
both gradients, odd sizes, batch chunks, threads), float64 central differences and torch for Winograd,
the ``algorithm`` selection, the threaded and blocked element-wise work (Adam, SGD, ELU) and the
vectorised expm1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nn_checks import CHECKS, TOLERANCES, conv_case

from backproplab import nn
from backproplab.nn import Conv2d, parallel, winograd
from backproplab.nn.conv import WINOGRAD_MIN_CHANNELS, set_conv_algorithm
from backproplab.nn.fastmath import EXPM1_MAX_ULPS, expm1_nonpositive

#: Winograd against im2col in float32: |difference| <= FLOAT32_MATCH_RTOL * max |im2col value| per
#: tensor. The two sum the same products in different orders, through transforms that only add,
#: subtract and halve: a few float32 roundings (eps = 1.2e-7) of the largest value (measured <= 1e-6).
FLOAT32_MATCH_RTOL = 1e-5
#: The same in float64 (eps = 2.2e-16).
FLOAT64_MATCH_RTOL = 1e-12


@pytest.fixture
def threads_and_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two threads for every split, tiny batch chunks: every parallel and chunked code path runs
    even on small inputs."""
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ELEMENTS", 1)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd, "MIN_CHUNK_TILES", 1)
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(None)


@st.composite
def winograd_cases(draw: Any, every_tap_reads_input: bool = False) -> dict[str, Any]:
    """3x3 stride-1 geometries: odd and even sizes (odd outputs crop a tile), padding 0-2 per axis,
    batch and channels down to 1. ``every_tap_reads_input`` (size >= 3 - padding) leaves out inputs so
    small that a kernel tap only ever meets padding: its true gradient is 0, which Winograd gets
    exactly, while central differences see the transforms' float64 round-off (~1e-10) there."""
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    least_h, least_w = (3 - ph, 3 - pw) if every_tap_reads_input else (3 - 2 * ph, 3 - 2 * pw)
    return {
        "n": draw(st.integers(1, 3)),
        "c_in": draw(st.sampled_from((1, 2, 3, 5))),
        "c_out": draw(st.integers(1, 4)),
        "h": draw(st.integers(max(1, least_h), 9)),
        "w": draw(st.integers(max(1, least_w), 9)),
        "padding": (ph, pw),
        "bias": draw(st.booleans()),
    }


def _assert_match(actual: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale + 1e-30, err_msg=what)


def run_both(case: dict[str, Any], seed: int, dtype: type, nhwc_memory: bool) -> dict[str, list[np.ndarray]]:
    """Forward and backward of the same random layer by each algorithm, with the same random upstream
    gradient: {algorithm: [output, dL/dX, dL/dW, dL/db]}."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(case["n"], case["c_in"], case["h"], case["w"])).astype(dtype)
    if nhwc_memory:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    results: dict[str, list[np.ndarray]] = {}
    g = None
    for algorithm in ("im2col", "winograd"):
        conv = Conv2d(
            case["c_in"],
            case["c_out"],
            3,
            padding=case["padding"],
            bias=case["bias"],
            rng=np.random.default_rng(seed + 1),
            dtype=dtype,
            algorithm=algorithm,
        )
        y = conv(x)
        if g is None:
            g = rng.normal(size=y.shape).astype(dtype)
        dx = conv.backward(g)
        assert dx is not None and dx.shape == x.shape and dx.dtype == dtype
        assert conv.weight.grad is not None
        out = [y, dx, conv.weight.grad]
        if conv.bias is not None:
            assert conv.bias.grad is not None
            out.append(conv.bias.grad)
        results[algorithm] = out
    return results


@settings(max_examples=40, deadline=None)
@given(case=winograd_cases(), seed=st.integers(0, 2**16), nhwc_memory=st.booleans())
def test_winograd_matches_im2col_float32(case: dict[str, Any], seed: int, nhwc_memory: bool) -> None:
    """Output and every gradient agree to float32 rounding, with random weights and upstream gradient."""
    res = run_both(case, seed, np.float32, nhwc_memory)
    for what, a, b in zip(("output", "dX", "dW", "db"), res["winograd"], res["im2col"], strict=False):
        assert a.shape == b.shape, what
        _assert_match(a, b, FLOAT32_MATCH_RTOL, f"{case}: {what}")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=winograd_cases(), seed=st.integers(0, 2**16))
def test_winograd_chunked_and_threaded_matches_im2col(
    threads_and_chunks: None, case: dict[str, Any], seed: int
) -> None:
    """One image per chunk and two threads per split give the same results (float64, to round-off)."""
    res = run_both(case, seed, np.float64, nhwc_memory=False)
    for what, a, b in zip(("output", "dX", "dW", "db"), res["winograd"], res["im2col"], strict=False):
        _assert_match(a, b, FLOAT64_MATCH_RTOL, f"{case}: {what}")


def test_winograd_convnet_shape_matches_im2col() -> None:
    """A ConvNet geometry at a size with several batch chunks (64 channels, 16x16, batch 32)."""
    case = {"n": 32, "c_in": 64, "c_out": 64, "h": 16, "w": 16, "padding": (1, 1), "bias": True}
    res = run_both(case, 0, np.float32, nhwc_memory=True)
    assert len(winograd.batch_chunks(winograd.Geometry((32, 16, 16, 64), (1, 1)), 64)) > 1
    for what, a, b in zip(("output", "dX", "dW", "db"), res["winograd"], res["im2col"], strict=False):
        _assert_match(a, b, FLOAT32_MATCH_RTOL, what)


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=10, deadline=None)
@given(case=winograd_cases(every_tap_reads_input=True), seed=st.integers(0, 2**16), nhwc_memory=st.booleans())
def test_winograd_gradcheck_and_torch(
    check: Callable[..., object], case: dict[str, Any], seed: int, nhwc_memory: bool
) -> None:
    """The Winograd path itself: float64 central differences, float32 against torch.nn.Conv2d."""
    tensors = ["input", "weight", "bias"] if case["bias"] else ["input", "weight"]
    check(conv_case(case, "winograd"), seed, tensors=tensors, nhwc_memory=nhwc_memory)


def test_winograd_without_input_grad() -> None:
    conv = Conv2d(2, 3, 3, padding=1, rng=np.random.default_rng(0), algorithm="winograd")
    conv.needs_input_grad = False
    y = conv(np.ones((1, 2, 4, 4), dtype=np.float32))
    assert conv.backward(np.ones(y.shape, dtype=np.float32)) is None
    assert conv.weight.grad is not None


def test_auto_selection() -> None:
    """ "auto" takes Winograd for the ConvNet's 3x3 layers with enough channels and tiles, im2col
    elsewhere; "winograd" falls back to im2col where it does not apply; bad names are errors."""
    wide = Conv2d(WINOGRAD_MIN_CHANNELS, 8, 3, padding=1)
    assert wide.uses_winograd((32, WINOGRAD_MIN_CHANNELS, 8, 8))
    assert not wide.uses_winograd((32, WINOGRAD_MIN_CHANNELS, 2, 2))  # 32 tiles: im2col is faster
    assert not Conv2d(3, 64, 3, padding=1).uses_winograd((32, 3, 32, 32))  # too few channels
    assert not Conv2d(64, 64, 3, stride=2, padding=1).uses_winograd((32, 64, 32, 32))
    assert not Conv2d(64, 64, 1).uses_winograd((32, 64, 32, 32))
    assert not Conv2d(64, 64, 3, padding=3, algorithm="winograd").uses_winograd((1, 64, 4, 4))
    assert Conv2d(1, 1, 3, algorithm="winograd").uses_winograd((1, 1, 3, 3))
    assert not Conv2d(64, 64, 3, padding=1, algorithm="im2col").uses_winograd((32, 64, 32, 32))
    with pytest.raises(ValueError, match="algorithm"):
        Conv2d(1, 1, 3, algorithm="fft")
    model = nn.ConvNet(3, 10, rng=np.random.default_rng(0))
    set_conv_algorithm(model, "im2col")
    assert {m.algorithm for m in model.modules() if isinstance(m, Conv2d)} == {"im2col"}
    with pytest.raises(ValueError, match="algorithm"):
        set_conv_algorithm(model, "direct")


def test_convnet_winograd_matches_im2col() -> None:
    """The whole ConvNet (forward, backward, every parameter gradient) by either algorithm, within
    the tolerance of the ConvNet against torch (BatchNorms over few values amplify rounding)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, size=4)
    grads: dict[str, dict[str, np.ndarray]] = {}
    logits: dict[str, np.ndarray] = {}
    for algorithm in ("im2col", "winograd"):
        model = nn.ConvNet(3, 10, rng=np.random.default_rng(1))
        set_conv_algorithm(model, algorithm)
        loss_fn = nn.SoftmaxCrossEntropy()
        logits[algorithm] = model(x)
        loss_fn(logits[algorithm], labels)
        model.backward(loss_fn.backward())
        grads[algorithm] = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    tol = TOLERANCES["float32_network"]
    tol.assert_close(logits["winograd"], logits["im2col"], "logits")
    scale = max(float(np.abs(g).max()) for g in grads["im2col"].values())
    for key, g in grads["im2col"].items():
        tol.assert_close(grads["winograd"][key], g, key, scale)


# --------------------------------------------------------------------------- element-wise work
def test_parallel_blocks_covers_each_element_once() -> None:
    parallel.set_num_threads(3)
    try:
        seen = np.zeros(100_003, dtype=np.int64)

        def mark(s: slice) -> None:
            assert s.stop - s.start <= 1000
            seen[s] += 1

        parallel.parallel_blocks(seen.size, mark, block=1000, min_parallel=10)
        assert np.all(seen == 1)
        with pytest.raises(ZeroDivisionError):
            parallel.parallel_blocks(10_000, lambda s: [1 / 0], block=100, min_parallel=10)
    finally:
        parallel.set_num_threads(None)
    with pytest.raises(ValueError, match="set_num_threads"):
        parallel.set_num_threads(0)


def _train_steps(make_opt: Callable[[list[nn.Parameter]], nn.optim.Optimizer]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    params = [nn.Parameter(rng.normal(size=s).astype(np.float32)) for s in ((300, 1000), (7,), (3, 5))]
    opt = make_opt(params)
    for _ in range(3):
        for p in params:
            p.grad = rng.normal(size=p.shape).astype(np.float32)
        opt.step()
    return [p.data.copy() for p in params]


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: nn.optim.Adam(ps, lr=1e-2),
        lambda ps: nn.optim.Adam(ps, lr=1e-2, weight_decay=0.1),
        lambda ps: nn.optim.SGD(ps, lr=1e-2),
        lambda ps: nn.optim.SGD(ps, lr=1e-2, momentum=0.9),
    ],
)
def test_optimizers_blocked_and_threaded_are_bit_equal(
    monkeypatch: pytest.MonkeyPatch, make_opt: Callable[[list[nn.Parameter]], nn.optim.Optimizer]
) -> None:
    """The same operations per element whatever the blocks and threads: bit-equal parameters."""
    parallel.set_num_threads(1)
    monkeypatch.setattr(parallel, "BLOCK_ELEMENTS", 1 << 30)
    try:
        plain = _train_steps(make_opt)
    finally:
        monkeypatch.undo()
    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ELEMENTS", 1)
    try:
        fast = _train_steps(make_opt)
    finally:
        parallel.set_num_threads(None)
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(a, b)


def test_adam_matches_the_formula_on_strided_parameters() -> None:
    """A non-contiguous parameter takes the whole-array update: the same result as the formula."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 8)).astype(np.float32)
    p = nn.Parameter(base)
    p.data = base.copy()[:, ::2]  # non-contiguous
    g = rng.normal(size=p.shape).astype(np.float32)
    start = p.data.copy()
    p.grad = g
    nn.optim.Adam([p], lr=0.1).step()
    m, v = 0.1 * g, 0.001 * g * g
    expected = start - (0.1 / 0.1) * m / (np.sqrt(v) / np.sqrt(0.001) + 1e-8)
    np.testing.assert_allclose(p.data, expected, rtol=1e-5, atol=1e-6)


def test_expm1_nonpositive_within_its_ulp_bound() -> None:
    z = np.concatenate(
        [-np.logspace(-30, 2, 20_000), -np.random.default_rng(0).random(20_000) * 5, [0.0, -0.0, -np.inf]]
    ).astype(np.float32)
    exact = np.expm1(z.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    got = expm1_nonpositive(z)
    assert got.dtype == np.float32
    assert np.all(np.abs(got - exact) <= EXPM1_MAX_ULPS * ulp)
    z64 = -np.logspace(-300, 2.5, 1000)
    np.testing.assert_allclose(expm1_nonpositive(z64), np.expm1(z64), rtol=1e-14)


def _elu_forward_backward(x: np.ndarray, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    elu = nn.ELU()
    return elu(x), elu.backward(dout)


def test_elu_threaded_is_bit_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward and backward, blocked and threaded, give the same bits as one block on one thread,
    and the values of the formula (expm1 within its ulp bound; derivative exp(x) for x <= 0)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1024)).astype(np.float32)
    dout = rng.normal(size=x.shape).astype(np.float32)
    parallel.set_num_threads(1)
    monkeypatch.setattr(parallel, "BLOCK_ELEMENTS", 1 << 30)
    try:
        plain, plain_dx = _elu_forward_backward(x, dout)
    finally:
        monkeypatch.undo()
    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "BLOCK_ELEMENTS", 777)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ELEMENTS", 1)
    try:
        fast, fast_dx = _elu_forward_backward(x[:, ::1], dout)
        strided, strided_dx = _elu_forward_backward(np.asfortranarray(x), np.asfortranarray(dout))
    finally:
        parallel.set_num_threads(None)
    for a, b in ((fast, plain), (strided, plain), (fast_dx, plain_dx), (strided_dx, plain_dx)):
        np.testing.assert_array_equal(a, b)
    x64 = x.astype(np.float64)
    exact = np.where(x64 > 0, x64, np.expm1(np.minimum(x64, 0)))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(plain - exact) <= EXPM1_MAX_ULPS * ulp)
    # the derivative comes from y as y + 1: absolute error of a few float32 ulps of 1, times |dout|
    deriv_error = np.abs(plain_dx - np.where(x64 > 0, 1, np.exp(x64)) * dout)
    assert np.all(deriv_error <= 4 * np.finfo(np.float32).eps * np.abs(dout))
