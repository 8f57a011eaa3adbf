"""The NumPy engine's LayerNorm: central differences in float64 and the torch twin in float32 (nn_checks),
state dicts shared with torch, accumulation, errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nn_checks import CHECKS, TOLERANCES, check_numeric

from backproplab import nn
from backproplab.errors import ShapeError
from backproplab.verify import GradcheckCase


def ln_case(batch: tuple[int, ...], norm: tuple[int, ...]) -> GradcheckCase:
    """Random gamma ~ N(1, 1) and beta ~ N(0, 1), an input N(1.5, 3^2) with offset and scale."""

    def make_module(rng: np.random.Generator) -> nn.LayerNorm:
        ln = nn.LayerNorm(norm)
        ln.weight.data[...] = rng.normal(1.0, 1.0, norm)
        ln.bias.data[...] = rng.normal(0.0, 1.0, norm)
        return ln

    return GradcheckCase(
        "LayerNorm", "LayerNorm", make_module, lambda rng: rng.normal(1.5, 3.0, (*batch, *norm))
    )


def make(
    batch: tuple[int, ...], norm: tuple[int, ...], dtype: type, seed: int
) -> tuple[nn.LayerNorm, np.ndarray, np.ndarray]:
    """The case's module (in ``dtype``), an input and a random upstream gradient."""
    rng = np.random.default_rng(seed)
    ln = ln_case(batch, norm).make_module(rng).to(dtype)
    x = rng.normal(1.5, 3.0, (*batch, *norm)).astype(dtype)
    return ln, x, rng.normal(size=x.shape).astype(dtype)  # type: ignore[return-value]


@pytest.mark.parametrize(("batch", "norm"), [((5,), (6,)), ((2, 3), (2, 4))])
def test_backward_matches_central_differences_in_float64(
    batch: tuple[int, ...], norm: tuple[int, ...]
) -> None:
    check_numeric(ln_case(batch, norm), 0, tensors=["input", "weight", "bias"])


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=25, deadline=None)
@given(
    batch=st.lists(st.integers(1, 4), min_size=1, max_size=2),
    norm=st.lists(st.integers(3, 6), min_size=1, max_size=2),
    seed=st.integers(0, 2**31 - 1),
)
def test_layernorm(check: Callable[..., object], batch: list[int], norm: list[int], seed: int) -> None:
    """float64: every gradient against central differences; float32: against torch.nn.LayerNorm."""
    check(ln_case(tuple(batch), tuple(norm)), seed, tensors=["input", "weight", "bias"])


@pytest.mark.torch
def test_state_dict_loads_into_torch_layer_norm_both_ways() -> None:
    import torch

    ln, x, _ = make((4,), (5,), np.float32, seed=1)
    t = torch.nn.LayerNorm(5)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in ln.state_dict().items()})
    TOLERANCES["float32_layernorm"].assert_close(ln(x), t(torch.from_numpy(x)).detach().numpy(), "output")
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
    with pytest.raises(ShapeError, match=r"dout of shape \(2, 10\).*got shape \(2, 9\)"):
        ln.backward(np.ones((2, 9), np.float32))
