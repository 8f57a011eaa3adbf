"""Every backward pass of the MLP engine against float64 central differences, over random shapes.

Parameters are random (never gamma = 1 or a zero bias) and so is the upstream gradient; each
check goes through :func:`backproplab.verify.gradcheck` and compares every element of every
gradient (input and parameters) within NUMERIC_RTOL / NUMERIC_ATOL (nn_helpers).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from nn_helpers import SHAPE_SETTINGS, assert_matches_numeric

from backproplab import nn
from backproplab.verify import GradcheckReport, gradcheck
from backproplab.verify.registry import away_from_zero, randomized, soft_targets

seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 5)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def check_all(report: GradcheckReport, tensors: list[str]) -> None:
    assert [c.tensor for c in report.checks] == tensors
    for check in report.checks:
        assert_matches_numeric(check)


@SHAPE_SETTINGS
@given(seed=seeds, n=sizes, d_in=sizes, d_out=sizes, bias=st.booleans())
def test_linear(seed: int, n: int, d_in: int, d_out: int, bias: bool) -> None:
    rng = np.random.default_rng(seed)
    layer = randomized(nn.Linear(d_in, d_out, bias=bias, rng=rng, dtype=np.float64), rng)
    report = gradcheck(layer, rng.normal(size=(n, d_in)), rng=rng)
    check_all(report, ["input", "weight", "bias"] if bias else ["input", "weight"])


@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes, alpha=st.sampled_from([1.0, 0.3, 2.5]) | st.floats(0.05, 3.0))
def test_elu(seed: int, shape: tuple[int, ...], alpha: float) -> None:
    rng = np.random.default_rng(seed)
    check_all(gradcheck(nn.ELU(alpha), away_from_zero(rng, shape), rng=rng), ["input"])


@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes)
def test_relu(seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    check_all(gradcheck(nn.ReLU(), away_from_zero(rng, shape), rng=rng), ["input"])


@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes)
def test_tanh(seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    check_all(gradcheck(nn.Tanh(), rng.normal(size=shape), rng=rng), ["input"])


@SHAPE_SETTINGS
@given(seed=seeds, shape=shapes, data=st.data())
def test_softmax_any_dim(seed: int, shape: tuple[int, ...], data: st.DataObject) -> None:
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    rng = np.random.default_rng(seed)
    check_all(gradcheck(nn.Softmax(dim), rng.normal(size=shape), rng=rng), ["input"])


@SHAPE_SETTINGS
@given(seed=seeds, shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple), data=st.data())
def test_flatten(seed: int, shape: tuple[int, ...], data: st.DataObject) -> None:
    nd = len(shape)
    start = data.draw(st.integers(0, nd - 1), label="start_dim")
    end = data.draw(st.integers(start, nd - 1), label="end_dim")
    end_arg = data.draw(st.sampled_from([end, end - nd]), label="end_dim as given")
    rng = np.random.default_rng(seed)
    check_all(gradcheck(nn.Flatten(start, end_arg), rng.normal(size=shape), rng=rng), ["input"])


def _targets(kind: str, rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    if kind == "index":
        return rng.integers(0, c, size=n)
    if kind == "one-hot":
        return np.eye(c)[rng.integers(0, c, size=n)]
    return soft_targets(n, c)(rng)


@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    c=sizes,
    kind=st.sampled_from(["index", "one-hot", "soft"]),
    red=st.sampled_from(["mean", "sum"]),
)
def test_cross_entropy_on_probabilities(seed: int, n: int, c: int, kind: str, red: str) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # (n, c), away from 0
    check_all(gradcheck(nn.CrossEntropy(red), probs, target=_targets(kind, rng, n, c), rng=rng), ["input"])


@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    c=sizes,
    kind=st.sampled_from(["index", "one-hot", "soft"]),
    red=st.sampled_from(["mean", "sum"]),
)
def test_softmax_cross_entropy(seed: int, n: int, c: int, kind: str, red: str) -> None:
    rng = np.random.default_rng(seed)
    logits = 2 * rng.normal(size=(n, c))
    check_all(
        gradcheck(nn.SoftmaxCrossEntropy(red), logits, target=_targets(kind, rng, n, c), rng=rng), ["input"]
    )


@SHAPE_SETTINGS
@given(
    seed=seeds,
    n=sizes,
    widths=st.lists(st.integers(1, 4), min_size=2, max_size=5),  # n_inputs, hidden (depth 0..3), n_classes
    activation=st.sampled_from(["elu", "relu", "tanh"]),
)
def test_mlp_depth_0_to_3(seed: int, n: int, widths: list[int], activation: str) -> None:
    rng = np.random.default_rng(seed)
    n_in, hidden, n_out = widths[0], widths[1:-1], widths[-1]
    model = randomized(nn.MLP(n_in, hidden, n_out, activation=activation, rng=rng, dtype=np.float64), rng)
    names = [f"layers.{2 * i}.{p}" for i in range(len(hidden) + 1) for p in ("weight", "bias")]
    check_all(gradcheck(model, rng.normal(size=(n, n_in)), rng=rng), ["input", *names])


@SHAPE_SETTINGS
@given(seed=seeds, n=sizes)
def test_sequential_and_loss_head_end_to_end(seed: int, n: int) -> None:
    """Softmax then CrossEntropy (the practical's head) composed by hand equals the fused loss's gradient."""
    rng = np.random.default_rng(seed)
    logits, y = rng.normal(size=(n, 4)), rng.integers(0, 4, size=n)
    soft, ce, fused = nn.Softmax(1), nn.CrossEntropy(), nn.SoftmaxCrossEntropy()
    ce(soft(logits), y)
    two_step = soft.backward(ce.backward())
    fused(logits, y)
    np.testing.assert_allclose(two_step, fused.backward(), rtol=1e-10, atol=1e-14)
