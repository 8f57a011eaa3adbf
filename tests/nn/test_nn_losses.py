"""Loss values and gradients against hand computations; reductions; label and shape errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nn_checks import SHAPE_SETTINGS

from backproplab import nn
from backproplab.errors import DataError, ShapeError

#: Hand-computed values are written with 10+ digits: float64 results must agree to this.
HAND_RTOL = 1e-9
#: sum and mean reductions are computed from the same sum; they differ by one division.
REDUCTION_RTOL = 1e-12


# 2 samples, 3 classes, worked by hand.
P = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
Y = np.array([1, 2])


def test_cross_entropy_2x3_by_hand() -> None:
    # L_sum = -(ln 0.5 + ln 0.8) = 0.6931471806 + 0.2231435513 = 0.9162907319; L_mean = L_sum / 2
    loss_sum = nn.CrossEntropy("sum")
    assert loss_sum(P, Y) == pytest.approx(0.9162907319, rel=HAND_RTOL)
    # dL/dP = -T / P: -1/0.5 = -2 at (0, 1), -1/0.8 = -1.25 at (1, 2), zero elsewhere
    expected_grad = np.array([[0.0, -2.0, 0.0], [0.0, 0.0, -1.25]])
    np.testing.assert_allclose(loss_sum.backward(), expected_grad, rtol=HAND_RTOL)
    loss_mean = nn.CrossEntropy("mean")
    assert loss_mean(P, Y) == pytest.approx(0.4581453659, rel=HAND_RTOL)
    np.testing.assert_allclose(loss_mean.backward(), expected_grad / 2, rtol=HAND_RTOL)
    assert math.isclose(-(math.log(0.5) + math.log(0.8)), 0.9162907319, rel_tol=HAND_RTOL)


def test_cross_entropy_soft_targets_by_hand() -> None:
    t = np.array([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    # L_sum = -(0.5 ln 0.2 + 0.5 ln 0.5 + 0.25 ln 0.1 + 0.75 ln 0.8)
    #       = 0.8047189562 + 0.3465735903 + 0.5756462732 + 0.1673576635 = 1.8942964832
    assert nn.CrossEntropy("sum")(P, t) == pytest.approx(1.8942964832, rel=HAND_RTOL)


def test_softmax_cross_entropy_2x3_by_hand() -> None:
    z = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    y = np.array([2, 0])
    # row 0: softmax = e^[1,2,3] / (e + e^2 + e^3) = [0.0900305732, 0.2447284711, 0.6652409558]
    # row 1: softmax = [1/3, 1/3, 1/3]
    # L_sum = -ln 0.6652409558 - ln(1/3) = 0.4076059644 + 1.0986122887 = 1.5062182531
    fused = nn.SoftmaxCrossEntropy("mean")
    assert fused(z, y) == pytest.approx(1.5062182531 / 2, rel=HAND_RTOL)
    expected = np.array([[0.0900305732, 0.2447284711, 0.6652409558 - 1], [1 / 3 - 1, 1 / 3, 1 / 3]]) / 2
    np.testing.assert_allclose(fused.backward(), expected, rtol=HAND_RTOL, atol=1e-10)


def test_softmax_by_hand_and_stability() -> None:
    sm = nn.Softmax(1)
    np.testing.assert_allclose(
        sm(np.array([[1.0, 2.0, 3.0]])), [[0.0900305732, 0.2447284711, 0.6652409558]], rtol=HAND_RTOL
    )
    big = sm(np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]]))  # no overflow: max trick
    np.testing.assert_allclose(
        big,
        [[0.0900305732, 0.2447284711, 0.6652409558], [0.6652409558, 0.2447284711, 0.0900305732]],
        rtol=HAND_RTOL,
    )
    loss = nn.SoftmaxCrossEntropy()(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert loss == pytest.approx(2000.0, rel=HAND_RTOL)


def test_elu_values_by_hand() -> None:
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    # alpha (e^x - 1) for x <= 0: 0.7 * (e^-2 - 1) = -0.6052653017, 0.7 * (e^-0.5 - 1) = -0.2754285382
    np.testing.assert_allclose(
        nn.ELU(0.7)(x), [-0.6052653017, -0.2754285382, 0.0, 0.5, 3.0], rtol=HAND_RTOL, atol=1e-12
    )
    assert np.isfinite(nn.ELU()(np.array([800.0]))).all()  # no exp overflow for large positive x


def test_zero_probability_gives_a_large_finite_loss() -> None:
    loss = nn.CrossEntropy()(np.array([[0.0, 1.0]]), np.array([0]))
    assert np.isfinite(loss) and loss > 700  # -log(tiny) for float64 tiny = 2.2e-308 is ~708


@SHAPE_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8), c=st.integers(1, 5), soft=st.booleans())
def test_sum_and_mean_differ_by_exactly_the_batch_size(seed: int, n: int, c: int, soft: bool) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    target = rng.dirichlet(np.ones(c), size=n) if soft else rng.integers(0, c, size=n)
    for cls, x in ((nn.CrossEntropy, probs), (nn.SoftmaxCrossEntropy, z)):
        s, m = cls("sum"), cls("mean")
        loss_s, loss_m = s(x, target), m(x, target)
        np.testing.assert_allclose(loss_s, n * loss_m, rtol=REDUCTION_RTOL, err_msg=cls.__name__)
        np.testing.assert_allclose(s.backward(), n * m.backward(), rtol=REDUCTION_RTOL, err_msg=cls.__name__)


@SHAPE_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), d_in=st.integers(1, 5), d_out=st.integers(1, 5))
def test_linear_gradients_are_sums_over_the_batch(seed: int, n: int, d_in: int, d_out: int) -> None:
    rng = np.random.default_rng(seed)
    layer = nn.Linear(d_in, d_out, rng=rng, dtype=np.float64)
    x, g = rng.normal(size=(n, d_in)), rng.normal(size=(n, d_out))
    layer(x)
    layer.backward(g)
    assert layer.bias is not None and layer.bias.grad is not None and layer.weight.grad is not None
    bias_by_loop = sum(g[i] for i in range(n))  # dL/db = sum_n G[n]
    weight_by_loop = sum(np.outer(g[i], x[i]) for i in range(n))  # dL/dW = sum_n G[n] x[n]^T
    np.testing.assert_allclose(layer.bias.grad, bias_by_loop, rtol=REDUCTION_RTOL, atol=1e-14)
    np.testing.assert_allclose(layer.weight.grad, weight_by_loop, rtol=1e-10, atol=1e-12)


def test_gradients_accumulate_over_two_backward_passes() -> None:
    rng = np.random.default_rng(1)
    layer = nn.Linear(3, 2, rng=rng, dtype=np.float64)
    x1, x2, g1, g2 = (
        rng.normal(size=(4, 3)),
        rng.normal(size=(2, 3)),
        rng.normal(size=(4, 2)),
        rng.normal(size=(2, 2)),
    )
    layer(x1)
    layer.backward(g1)
    layer(x2)
    layer.backward(g2)
    assert layer.weight.grad is not None
    np.testing.assert_allclose(layer.weight.grad, g1.T @ x1 + g2.T @ x2, rtol=1e-12)


# ---------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", [nn.CrossEntropy, nn.SoftmaxCrossEntropy])
@pytest.mark.parametrize("labels", [[0, 3], [-1, 0]])
def test_labels_out_of_range_are_data_errors(cls: type[nn.Module], labels: list[int]) -> None:
    with pytest.raises(
        DataError, match=rf"\[0, 2\] for 3 classes, got range \[{min(labels)}, {max(labels)}\]"
    ):
        cls()(P, np.array(labels))


@pytest.mark.parametrize("cls", [nn.CrossEntropy, nn.SoftmaxCrossEntropy])
def test_loss_input_errors(cls: type[nn.Module]) -> None:
    with pytest.raises(DataError, match="integers, got dtype float64"):
        cls()(P, np.array([1.0, 2.0]))
    with pytest.raises(ShapeError, match="2 score rows but 3 targets"):
        cls()(P, np.array([0, 1, 2]))
    with pytest.raises(ShapeError, match=r"shape \(N, C\), got \(3,\)"):
        cls()(P[0], np.array([0]))
    with pytest.raises(ShapeError, match=r"targets of shape \(2,\) or \(2, 3\), got \(2, 2\)"):
        cls()(P, np.ones((2, 2)))
    with pytest.raises(DataError, match="NaN or inf"):
        cls()(P, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="reduction must be one of"):
        cls("max")


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_label_smoothing_equals_torch_in_float64(reduction: str) -> None:
    import torch

    rng = np.random.default_rng(3)
    z, y, dout = rng.normal(size=(6, 5)), rng.integers(0, 5, 6), float(rng.normal())
    loss = nn.SoftmaxCrossEntropy(reduction, label_smoothing=0.2)
    value, grad = loss(z, y), loss.backward(dout)
    tz = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tz, torch.tensor(y), reduction=reduction, label_smoothing=0.2)
    (ref * dout).backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-10, atol=1e-14)
