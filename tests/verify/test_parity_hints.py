"""The comparison numbers (diff.py) and each hint as a pure function of hand-made arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backproplab import nn
from backproplab.verify import hints as H
from backproplab.verify.diff import agree_rtol, tensor_diff

RTOL = agree_rtol(np.float32)


def ctx(quantity: str, value: np.ndarray, reference: np.ndarray, **kw: object) -> H.RowContext:
    return H.RowContext("layer", quantity, value, reference, tensor_diff(value, reference), RTOL, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- diff numbers
def test_tensor_diff_numbers() -> None:
    rng = np.random.default_rng(0)
    b = rng.standard_normal((4, 5))
    d = tensor_diff(2 * b, b)
    assert d.max_abs_err == pytest.approx(np.abs(b).max())
    assert d.max_rel_err == pytest.approx(1.0)
    assert d.cosine == pytest.approx(1.0)
    assert d.norm_ratio == pytest.approx(2.0)
    assert d.norm_rel_err == pytest.approx(1.0)
    assert d.agrees(RTOL) is False
    flip = tensor_diff(-b, b)
    assert flip.cosine == pytest.approx(-1.0) and flip.norm_ratio == pytest.approx(1.0)
    same = tensor_diff(b.astype(np.float32), b)
    assert 0 < same.max_rel_err < 1e-7 and same.agrees(RTOL)


def test_tensor_diff_edge_cases() -> None:
    shape = tensor_diff(np.zeros((2, 3)), np.zeros((3, 2)))
    assert not shape.same_shape and not shape.agrees(1.0) and math.isnan(shape.max_abs_err)
    assert shape.to_dict()["max_abs_err"] is None and shape.to_dict()["shape"] == [2, 3]
    zero = tensor_diff(np.zeros(3), np.zeros(3))
    assert zero.max_rel_err == 0 and zero.norm_ratio == 1 and zero.agrees(0.0)
    nonzero_vs_zero = tensor_diff(np.ones(3), np.zeros(3))
    assert math.isinf(nonzero_vs_zero.max_rel_err) and not nonzero_vs_zero.agrees(RTOL)
    nan = tensor_diff(np.array([np.nan]), np.array([1.0]))
    assert not nan.finite and not nan.agrees(RTOL)
    assert agree_rtol(np.float64) == 1e-9 and agree_rtol("float32") == 1e-4


# ---------------------------------------------------------------------------- hypotheses
@pytest.mark.parametrize("batch", [2, 7, 512])
def test_loss_reduction_fires_at_the_batch_size_only(batch: int) -> None:
    ref = np.random.default_rng(batch).standard_normal((batch, 3))
    hit = H.loss_reduction(ctx("loss grad", batch * ref, ref, batch_size=batch))
    assert hit is not None and f"batch size {batch}" in hit and "sum instead of mean" in hit
    assert H.loss_reduction(ctx("loss grad", ref / batch, ref, batch_size=batch)) is not None  # the reverse
    assert H.loss_reduction(ctx("loss grad", 1.5 * batch * ref, ref, batch_size=batch)) is None
    assert H.loss_reduction(ctx("loss grad", -batch * ref, ref, batch_size=batch)) is None
    assert H.loss_reduction(
        ctx("loss", np.asarray(batch * 2.3), np.asarray(2.3), batch_size=batch)
    ).startswith("loss =")  # type: ignore[union-attr]


def test_loss_reduction_never_fires_at_batch_size_one() -> None:
    ref = np.ones((1, 3))
    assert H.loss_reduction(ctx("loss grad", ref.copy(), ref, batch_size=1)) is None
    assert H.loss_reduction(ctx("loss grad", 2 * ref, ref, batch_size=1)) is None


def test_transposed_weight_gradient_by_value_and_by_shape() -> None:
    rng = np.random.default_rng(1)
    lin = nn.Linear(4, 4, rng=rng)
    g = rng.standard_normal((4, 4))
    assert "transposed weight" in (H.transposed_weight(ctx("weight grad", g.T.copy(), g, module=lin)) or "")
    assert H.transposed_weight(ctx("weight grad", 2 * g, g, module=lin)) is None
    rect = nn.Linear(3, 5, rng=rng)
    g2 = rng.standard_normal((5, 3))
    hit = H.transposed_weight(ctx("weight grad", g2.T.copy(), g2, module=rect))
    assert hit is not None and "(3, 5)" in hit


def test_elu_output_derivative_hint() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 5))
    elu = nn.ELU(alpha=1.3)
    y = np.where(x > 0, x, 1.3 * np.expm1(x))
    g = rng.standard_normal((6, 5))
    right = g * np.where(x > 0, 1.0, 1.3 * np.exp(x))
    wrong = g * np.where(x > 0, 1.0, 1.3 * np.exp(y))
    kw = {"module": elu, "input": x, "output": y, "grad_output": g}
    assert "taken from the output" in (H.elu_output_derivative(ctx("input grad", wrong, right, **kw)) or "")
    other = right.copy()
    other[x > 0] *= 2  # wrong on positive inputs: not this bug
    assert H.elu_output_derivative(ctx("input grad", other, right, **kw)) is None


def test_softmax_axis_hint_on_the_output() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4, 6))
    sm = nn.Softmax(dim=1)
    wrong = np.exp(z) / np.exp(z).sum(axis=0, keepdims=True)
    right = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert "along dim 0, not along dim 1" in (H.softmax_axis(ctx("output", wrong, right, module=sm)) or "")
    assert H.softmax_axis(ctx("output", 1.01 * right, right, module=sm)) is None


def test_double_softmax_hint_needs_probabilities_and_the_softmax_of_them() -> None:
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(5), size=8)  # probability rows, (8, 5)
    y = rng.integers(0, 5, 8)
    nll = -np.log(p[np.arange(8), y]).mean()
    double = -np.log((np.exp(p) / np.exp(p).sum(1, keepdims=True))[np.arange(8), y]).mean()
    kw = {"output": p, "target": y}
    assert "double softmax" in (
        H.double_softmax(ctx("loss", np.asarray(double), np.asarray(nll), **kw)) or ""
    )
    assert H.double_softmax(ctx("loss", np.asarray(1.1 * nll), np.asarray(nll), **kw)) is None
    logits = rng.standard_normal((8, 5)) * 3
    assert H.double_softmax(ctx("loss", np.asarray(double), np.asarray(nll), output=logits, target=y)) is None


def test_describe_names_the_shape_of_a_difference() -> None:
    rng = np.random.default_rng(5)
    b = rng.standard_normal(100)
    assert "constant factor" in H.describe(ctx("output", 3 * b, b))
    assert "opposite sign" in H.describe(ctx("output", -b, b))
    few = b.copy()
    few[7] += 10
    assert "differs in 1 of 100 elements" in H.describe(ctx("output", few, b))
    assert "shape (3,)" in H.describe(ctx("output", np.ones(3), np.ones(4)))
    assert "non-finite" in H.describe(ctx("output", np.array([np.inf]), np.ones(1)))
    assert H.diagnose(ctx("output", 3 * b, b)) == [H.describe(ctx("output", 3 * b, b))]
