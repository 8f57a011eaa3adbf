"""Forward, input gradient and parameter gradients against PyTorch, in float32, over random shapes.

Both sides get the same float32 inputs, parameters (copied with ``load_state_dict``) and a random
upstream gradient; tolerances F32_RTOL / F32_ATOL (nn_helpers).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from nn_helpers import SHAPE_SETTINGS, assert_close32, t32, torch_state

from backproplab import nn
from backproplab.torch_models import TorchMLP
from backproplab.verify.registry import away_from_zero, randomized

seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 6)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def compare_elementwise(
    module: nn.Module, torch_fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, rng
) -> None:  # type: ignore[no-untyped-def]
    x = x.astype(np.float32)
    y = module(x)
    g = rng.normal(size=y.shape).astype(np.float32)
    xt = t32(x, requires_grad=True)
    yt = torch_fn(xt)
    yt.backward(t32(g))
    assert y.dtype == np.float32
    assert_close32(y, yt, "forward")
    assert xt.grad is not None
    assert_close32(module.backward(g), xt.grad, "input gradient")


@SHAPE_SETTINGS
@given(seed=seeds, n=sizes, d_in=sizes, d_out=sizes, bias=st.booleans())
def test_linear_vs_torch(seed: int, n: int, d_in: int, d_out: int, bias: bool) -> None:
    rng = np.random.default_rng(seed)
    layer = randomized(nn.Linear(d_in, d_out, bias=bias, rng=rng), rng)
    ref = torch.nn.Linear(d_in, d_out, bias=bias)
    ref.load_state_dict(torch_state(layer.state_dict()))  # same keys: weight (out, in), bias (out,)
    x = rng.normal(size=(n, d_in)).astype(np.float32)
    g = rng.normal(size=(n, d_out)).astype(np.float32)
    xt = t32(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(t32(g))
    assert_close32(layer(x), yt, "forward")
    assert xt.grad is not None
    assert_close32(layer.backward(g), xt.grad, "input gradient")
    for name, p in layer.named_parameters():
        tp = dict(ref.named_parameters())[name]
        assert tp.grad is not None
        assert p.grad is not None and p.grad.dtype == np.float32
        assert_close32(p.grad, tp.grad, f"{name} gradient")


@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes, alpha=st.sampled_from([1.0, 0.3, 2.5]) | st.floats(0.05, 3.0))
def test_elu_vs_torch(seed: int, shape: tuple[int, ...], alpha: float) -> None:
    rng = np.random.default_rng(seed)
    compare_elementwise(nn.ELU(alpha), lambda t: F.elu(t, alpha), 3 * away_from_zero(rng, shape), rng)


@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes)
def test_relu_vs_torch(seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    compare_elementwise(nn.ReLU(), F.relu, away_from_zero(rng, shape), rng)


@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes)
def test_tanh_vs_torch(seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    compare_elementwise(nn.Tanh(), torch.tanh, 2 * rng.normal(size=shape), rng)


@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes, data=st.data())
def test_softmax_vs_torch(seed: int, shape: tuple[int, ...], data: st.DataObject) -> None:
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    rng = np.random.default_rng(seed)
    compare_elementwise(nn.Softmax(dim), lambda t: F.softmax(t, dim), 3 * rng.normal(size=shape), rng)


@SHAPE_SETTINGS
@given(seed=seeds, shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple), data=st.data())
def test_flatten_vs_torch(seed: int, shape: tuple[int, ...], data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(shape) - 1), label="start_dim")
    end = data.draw(st.integers(start, len(shape) - 1), label="end_dim")
    rng = np.random.default_rng(seed)
    compare_elementwise(nn.Flatten(start, end), torch.nn.Flatten(start, end), rng.normal(size=shape), rng)


def _loss_case(
    rng: np.random.Generator, n: int, c: int, kind: str
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    if kind == "index":
        y = rng.integers(0, c, size=n)
        return y, y, torch.tensor(y)
    t = np.eye(c)[rng.integers(0, c, size=n)] if kind == "one-hot" else rng.dirichlet(np.ones(c), size=n)
    return t, t.astype(np.float32), t32(t)


@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    c=sizes,
    kind=st.sampled_from(["index", "one-hot", "soft"]),
    red=st.sampled_from(["mean", "sum"]),
)
def test_cross_entropy_on_probabilities_vs_torch(seed: int, n: int, c: int, kind: str, red: str) -> None:
    """CrossEntropy(P, T) against torch's nll_loss(log P) (index targets) or -sum(T log P) (distributions)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c))
    probs = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).astype(np.float32)  # (n, c)
    _, target, target_t = _loss_case(rng, n, c, kind)
    dout = np.float32(rng.normal())
    loss_fn = nn.CrossEntropy(red)
    loss = loss_fn(probs, target)
    pt = t32(probs, requires_grad=True)
    if kind == "index":
        ref = F.nll_loss(torch.log(pt), target_t, reduction=red)
    else:
        ref = -(target_t * torch.log(pt)).sum() / (n if red == "mean" else 1)
    ref.backward(torch.tensor(dout))
    assert isinstance(loss, np.float32)
    assert_close32(np.asarray(loss), ref, "loss")
    assert pt.grad is not None
    assert_close32(loss_fn.backward(dout), pt.grad, "gradient")


@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    c=sizes,
    kind=st.sampled_from(["index", "one-hot", "soft"]),
    red=st.sampled_from(["mean", "sum"]),
)
def test_softmax_cross_entropy_vs_torch(seed: int, n: int, c: int, kind: str, red: str) -> None:
    """SoftmaxCrossEntropy(Z, T) against torch's cross_entropy (index or probability targets)."""
    rng = np.random.default_rng(seed)
    logits = (3 * rng.normal(size=(n, c))).astype(np.float32)
    _, target, target_t = _loss_case(rng, n, c, kind)
    dout = np.float32(rng.normal())
    loss_fn = nn.SoftmaxCrossEntropy(red)
    loss = loss_fn(logits, target)
    zt = t32(logits, requires_grad=True)
    ref = F.cross_entropy(zt, target_t, reduction=red)
    ref.backward(torch.tensor(dout))
    assert_close32(np.asarray(loss), ref, "loss")
    assert zt.grad is not None
    assert_close32(loss_fn.backward(dout), zt.grad, "gradient")


@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),  # n_inputs, hidden (depth 0..3), n_classes
    activation=st.sampled_from(["elu", "relu", "tanh"]),
)
def test_mlp_vs_torch_mlp(seed: int, n: int, widths: list[int], activation: str) -> None:
    rng = np.random.default_rng(seed)
    n_in, hidden, n_out = widths[0], widths[1:-1], widths[-1]
    model = randomized(nn.MLP(n_in, hidden, n_out, activation=activation, rng=rng), rng)
    ref = TorchMLP(n_in, hidden, n_out, activation=activation)
    ref.load_state_dict(torch_state(model.state_dict()))
    x = rng.normal(size=(n, n_in)).astype(np.float32)
    g = rng.normal(size=(n, n_out)).astype(np.float32)
    xt = t32(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(t32(g))
    assert_close32(model(x), yt, "logits")
    assert xt.grad is not None
    assert_close32(model.backward(g), xt.grad, "input gradient")
    torch_params = dict(ref.named_parameters())
    assert [k for k, _ in model.named_parameters()] == list(torch_params)
    for name, p in model.named_parameters():
        tgrad = torch_params[name].grad
        assert p.grad is not None and tgrad is not None
        assert_close32(p.grad, tgrad, f"{name} gradient")


def test_mlp_training_step_with_sgd_matches_torch() -> None:
    """One full step (forward, fused loss, backward, SGD) leaves the same weights on both sides."""
    rng = np.random.default_rng(0)
    model = nn.MLP(5, [7, 6], 3, rng=rng, init_scheme="torch")
    ref = TorchMLP(5, [7, 6], 3)
    ref.load_state_dict(torch_state(model.state_dict()))
    x, y = rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, size=8)
    loss_fn, opt = nn.SoftmaxCrossEntropy(), nn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
        tloss = F.cross_entropy(ref(t32(x)), torch.tensor(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        assert_close32(np.asarray(loss), tloss, "loss")
    for k, v in ref.state_dict().items():
        assert_close32(model.state_dict()[k], v, k)
