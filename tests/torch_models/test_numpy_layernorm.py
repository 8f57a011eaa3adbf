"""The NumPy engine's LayerNorm: central differences in float64 and PyTorch in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from backproplab import nn
from backproplab.errors import ShapeError

FD_STEP = 1e-6  # central-difference step in float64
FD_RTOL = 1e-6
FD_ATOL = 1e-8
FLOAT32_ATOL = 2e-5
FLOAT32_RTOL = 1e-4
EPS = 1e-5


def make(
    batch: tuple[int, ...], norm: tuple[int, ...], dtype: type, seed: int
) -> tuple[nn.LayerNorm, np.ndarray, np.ndarray]:
    """A LayerNorm with random gamma and beta, an input with offset and scale, a random upstream grad."""
    rng = np.random.default_rng(seed)
    ln = nn.LayerNorm(norm, dtype=dtype)
    ln.weight.data[...] = rng.normal(1.0, 1.0, norm)
    ln.bias.data[...] = rng.normal(0.0, 1.0, norm)
    x = (rng.normal(1.5, 3.0, (*batch, *norm))).astype(dtype)
    dy = rng.normal(0.0, 1.0, x.shape).astype(dtype)
    return ln, x, dy


def numeric_grad(f: object, a: np.ndarray) -> np.ndarray:
    """d f / d a by central differences, f a scalar function of the array a (changed in place)."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + FD_STEP
        up = f()  # type: ignore[operator]
        a[i] = old - FD_STEP
        down = f()  # type: ignore[operator]
        a[i] = old
        g[i] = (up - down) / (2 * FD_STEP)
    return g


@pytest.mark.parametrize(("batch", "norm"), [((5,), (6,)), ((2, 3), (2, 4))])
def test_backward_matches_central_differences_in_float64(
    batch: tuple[int, ...], norm: tuple[int, ...]
) -> None:
    ln, x, dy = make(batch, norm, np.float64, seed=0)
    ln(x)
    dx = ln.backward(dy)

    def loss() -> float:
        with nn.no_grad():
            return float((ln(x) * dy).sum())  # L = <y, dy>, so dL/dy = dy

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=FD_RTOL, atol=FD_ATOL)
    assert ln.weight.grad is not None and ln.bias.grad is not None
    np.testing.assert_allclose(ln.weight.grad, numeric_grad(loss, ln.weight.data), rtol=FD_RTOL, atol=FD_ATOL)
    np.testing.assert_allclose(ln.bias.grad, numeric_grad(loss, ln.bias.data), rtol=FD_RTOL, atol=FD_ATOL)


def torch_reference(ln: nn.LayerNorm, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, ...]:
    xt = torch.from_numpy(x).requires_grad_()
    w = torch.from_numpy(ln.weight.data.copy()).requires_grad_()
    b = torch.from_numpy(ln.bias.data.copy()).requires_grad_()
    y = F.layer_norm(xt, ln.normalized_shape, w, b, EPS)
    y.backward(torch.from_numpy(dy))
    return tuple(t.detach().numpy() for t in (y, xt.grad, w.grad, b.grad))  # type: ignore[union-attr]


@settings(max_examples=25, deadline=None)
@given(
    batch=st.lists(st.integers(1, 4), min_size=1, max_size=2),
    norm=st.lists(st.integers(3, 6), min_size=1, max_size=2),
    seed=st.integers(0, 2**31 - 1),
)
def test_forward_and_gradients_match_torch_in_float32(batch: list[int], norm: list[int], seed: int) -> None:
    ln, x, dy = make(tuple(batch), tuple(norm), np.float32, seed)
    y = ln(x)
    dx = ln.backward(dy)
    want = torch_reference(ln, x, dy)
    for got, ref in zip((y, dx, ln.weight.grad, ln.bias.grad), want, strict=True):
        assert got is not None and got.dtype == np.float32
        # Ill-conditioned groups (nearly equal values) lose digits in proportion to the gradient's size.
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL * scale)


def test_state_dict_loads_into_torch_layer_norm_both_ways() -> None:
    ln, x, _ = make((4,), (5,), np.float32, seed=1)
    t = torch.nn.LayerNorm(5)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in ln.state_dict().items()})
    np.testing.assert_allclose(
        ln(x), t(torch.from_numpy(x)).detach().numpy(), rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL
    )
    back = nn.LayerNorm(5)
    back.load_state_dict(t.state_dict())
    np.testing.assert_array_equal(back.weight.data, ln.weight.data)


def test_gradients_accumulate_and_backward_needs_a_forward() -> None:
    ln, x, dy = make((3,), (4,), np.float64, seed=2)
    ln(x)
    ln.backward(dy)
    assert ln.bias.grad is not None
    first = ln.bias.grad.copy()
    ln(x)
    ln.backward(dy)
    np.testing.assert_allclose(ln.bias.grad, 2 * first)
    with pytest.raises(RuntimeError, match=r"LayerNorm\.backward called without a forward"):
        ln.backward(dy)


def test_wrong_shapes_are_clear_errors() -> None:
    ln = nn.LayerNorm(10)
    with pytest.raises(ShapeError, match=r"expects an input of shape \(\*, 10\), got \(4, 9\)"):
        ln(np.zeros((4, 9), np.float32))
    with pytest.raises(ShapeError, match="float64 input"):
        ln(np.zeros((4, 10), np.float64))
    ln(np.ones((2, 10), np.float32))
    with pytest.raises(ValueError, match=r"dout of shape \(2, 10\)"):
        ln.backward(np.ones((2, 9), np.float32))
