"""The three PyTorch LayerNorms against ``torch.nn.functional.layer_norm`` and central differences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from backproplab.errors import ShapeError
from backproplab.torch_models import AutogradLayerNorm, LayerNorm, LayerNormFunction

# float32 results against torch's fused kernel: a few ulps of the O(1) values involved.
FLOAT32_ATOL = 2e-5
FLOAT32_RTOL = 1e-4
# torch.autograd.gradcheck in float64 (its default tolerances are looser).
GRADCHECK_EPS = 1e-6
GRADCHECK_ATOL = 1e-7
GRADCHECK_RTOL = 1e-5
EPS = 1e-5

MODULES = [AutogradLayerNorm, LayerNorm]


def random_problem(
    batch_shape: tuple[int, ...], normalized_shape: tuple[int, ...], dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x with a non-zero mean and non-unit scale, random gamma and beta, a random upstream gradient."""
    g = torch.Generator().manual_seed(seed)
    shape = (*batch_shape, *normalized_shape)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 3 + 1.5).requires_grad_()
    gamma = (torch.randn(normalized_shape, generator=g, dtype=dtype) + 1).requires_grad_()
    beta = torch.randn(normalized_shape, generator=g, dtype=dtype).requires_grad_()
    dy = torch.randn(shape, generator=g, dtype=dtype)
    return x, gamma, beta, dy


def reference(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, dy: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """torch's layer_norm output and its gradients (dx, dgamma, dbeta) for the upstream gradient dy."""
    xr, gr, br = (t.detach().clone().requires_grad_() for t in (x, gamma, beta))
    y = F.layer_norm(xr, tuple(gamma.shape), gr, br, EPS)
    y.backward(dy)
    assert xr.grad is not None and gr.grad is not None and br.grad is not None
    return y.detach(), xr.grad, gr.grad, br.grad


def run_module(
    cls: type[torch.nn.Module], x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, dy: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    m = cls(tuple(gamma.shape)).to(x.dtype)
    with torch.no_grad():
        m.weight.copy_(gamma)
        m.bias.copy_(beta)
    xm = x.detach().clone().requires_grad_()
    y = m(xm)
    y.backward(dy)
    return y.detach(), xm.grad, m.weight.grad, m.bias.grad


def run_function(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, dy: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    xf, gf, bf = (t.detach().clone().requires_grad_() for t in (x, gamma, beta))
    y = LayerNormFunction.apply(xf, gf, bf, EPS)
    y.backward(dy)
    return y.detach(), xf.grad, gf.grad, bf.grad


@pytest.mark.parametrize("runner", ["autograd", "function", "module"])
@pytest.mark.parametrize(("batch_shape", "normalized_shape"), [((8,), (17,)), ((3, 5), (4, 6))])
def test_forward_and_all_gradients_equal_torch_layer_norm(
    runner: str, batch_shape: tuple[int, ...], normalized_shape: tuple[int, ...]
) -> None:
    x, gamma, beta, dy = random_problem(batch_shape, normalized_shape, torch.float32, seed=1)
    want = reference(x, gamma, beta, dy)
    if runner == "function":
        got = run_function(x, gamma, beta, dy)
    else:
        got = run_module(AutogradLayerNorm if runner == "autograd" else LayerNorm, x, gamma, beta, dy)
    for name, g, w in zip(("y", "dx", "dgamma", "dbeta"), got, want, strict=True):
        assert g is not None, name
        torch.testing.assert_close(g, w, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL, msg=lambda m, n=name: n + m)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.lists(st.integers(1, 4), min_size=1, max_size=2),
    norm=st.lists(st.integers(2, 6), min_size=1, max_size=2),
    seed=st.integers(0, 2**31 - 1),
)
def test_hand_derived_backward_matches_torch_for_any_shape(
    batch: list[int], norm: list[int], seed: int
) -> None:
    x, gamma, beta, dy = random_problem(tuple(batch), tuple(norm), torch.float32, seed)
    # dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) cancels: its float32 round-off is about
    # eps32 * rstd * |g|, large for a group of nearly equal values (and dx is exactly 0 in theory
    # for groups of 2). The tolerance of every tensor scales with that bound.
    dims = tuple(range(-len(norm), 0))
    rstd = 1 / (x.detach().double().var(dim=dims, correction=0) + EPS).sqrt()
    scale = max(1.0, float(rstd.max()) * float((dy * gamma.detach()).abs().max()))
    for g, w in zip(run_function(x, gamma, beta, dy), reference(x, gamma, beta, dy), strict=True):
        torch.testing.assert_close(
            g, w, atol=FLOAT32_ATOL * max(scale, float(w.abs().max())), rtol=FLOAT32_RTOL
        )


def test_function_passes_gradcheck_in_float64() -> None:
    x, gamma, beta, _ = random_problem((4,), (7,), torch.float64, seed=2)
    assert torch.autograd.gradcheck(
        lambda a, b, c: LayerNormFunction.apply(a, b, c, EPS),
        (x, gamma, beta),
        eps=GRADCHECK_EPS,
        atol=GRADCHECK_ATOL,
        rtol=GRADCHECK_RTOL,
    )


def test_module_passes_gradcheck_in_float64() -> None:
    """The module on the hand-derived Function (AutogradLayerNorm's backward is autograd's own: gradcheck
    would test PyTorch, not this project)."""
    x, gamma, beta, _ = random_problem((3,), (2, 5), torch.float64, seed=3)
    m = LayerNorm((2, 5)).double()
    with torch.no_grad():
        m.weight.copy_(gamma)
        m.bias.copy_(beta)
    assert torch.autograd.gradcheck(m, (x,), eps=GRADCHECK_EPS, atol=GRADCHECK_ATOL, rtol=GRADCHECK_RTOL)
    params = tuple(m.parameters())
    assert torch.autograd.gradcheck(
        lambda w, b: torch.func.functional_call(m, {"weight": w, "bias": b}, (x.detach(),)),
        params,
        eps=GRADCHECK_EPS,
        atol=GRADCHECK_ATOL,
        rtol=GRADCHECK_RTOL,
    )


def test_backward_returns_none_for_inputs_that_need_no_gradient() -> None:
    x, gamma, beta, dy = random_problem((4,), (6,), torch.float64, seed=4)
    x = x.detach()  # data: no gradient wanted
    captured: dict[str, tuple[torch.Tensor | None, ...]] = {}
    orig = LayerNormFunction.backward

    def spy(ctx: object, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        captured["grads"] = orig(ctx, grad_out)
        captured["saved"] = tuple(ctx.saved_tensors)  # type: ignore[attr-defined]
        return captured["grads"]

    LayerNormFunction.backward = staticmethod(spy)  # type: ignore[method-assign,assignment]
    try:
        LayerNormFunction.apply(x, gamma, beta.detach(), EPS).backward(dy)
    finally:
        LayerNormFunction.backward = staticmethod(orig)  # type: ignore[method-assign,assignment]
    dx, dgamma, dbeta, deps = captured["grads"]
    assert dx is None and dbeta is None and deps is None
    assert dgamma is not None
    # Only x_hat is kept when dx is not needed: no rstd, no gamma.
    x_hat, rstd, weight = captured["saved"]
    assert x_hat is not None and rstd is None and weight is None
    _, _, want_dgamma, _ = reference(x, gamma, beta, dy)
    torch.testing.assert_close(dgamma, want_dgamma)


def test_biased_variance_and_eps_are_torchs() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    y = LayerNorm(4).double()(x)
    mean, var = 2.5, 1.25  # biased: sum((x - 2.5)^2) / 4
    want = (x - mean) / (var + EPS) ** 0.5
    torch.testing.assert_close(y.detach(), want)


@pytest.mark.parametrize("cls", MODULES)
def test_wrong_input_shape_is_a_clear_error(cls: type[torch.nn.Module]) -> None:
    m = cls(10)
    with pytest.raises(ShapeError, match=r"expects an input of shape \(\*, 10\), got \(4, 9\)"):
        m(torch.zeros(4, 9))
    with pytest.raises(ShapeError, match="floating-point"):
        m(torch.zeros(4, 10, dtype=torch.int64))
    with pytest.raises(ShapeError, match=r"\(\*, 10\)"):
        LayerNormFunction.apply(torch.zeros(3), torch.ones(10), torch.zeros(10), EPS)


def test_parameters_are_named_and_initialised_as_torch() -> None:
    ours, theirs = LayerNorm((3, 4)), torch.nn.LayerNorm((3, 4))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert LayerNorm(5).eps == theirs.eps == EPS
