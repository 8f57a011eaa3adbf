"""The gradient checker itself: formulas, verdicts, the registry's conventions, planted bugs, user objects
(every registry case against central differences and the torch twin: tests/nn/test_nn_modules.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from backproplab import nn
from backproplab.errors import ShapeError
from backproplab.verify import (
    CASES,
    GOOD_MAX_REL_ERROR,
    REL_ERROR_FLOOR,
    WRONG_MIN_REL_ERROR,
    format_table,
    gradcheck,
    numerical_gradient,
    rel_error,
    run_case,
    select_cases,
    verdict_for,
)
from backproplab.verify.registry import away_from_zero, case_rng, without_ties

#: numerical_gradient against closed-form derivatives of smooth functions (float64, eps = 1e-6).
CLOSED_FORM_RTOL = 1e-8
CLOSED_FORM_ATOL = 1e-9


# ------------------------------------------------------------------------------- formulas, verdicts
def test_rel_error_is_cs231n_formula_on_hand_values() -> None:
    a = np.array([1.0, 0.0, 1e-9, -2.0, 3.0])
    n = np.array([1.1, 0.0, 0.0, 2.0, 3.0])
    # |a-n| / max(|a|+|n|, 1e-8): 0.1/2.1; 0/1e-8; 1e-9/1e-8; 4/4; 0
    expected = [0.1 / 2.1, 0.0, 0.1, 1.0, 0.0]
    np.testing.assert_allclose(rel_error(a, n), expected, rtol=1e-12)
    assert REL_ERROR_FLOOR == 1e-8


@pytest.mark.parametrize(
    ("err", "verdict"),
    [
        (0.0, "good"),
        (0.5 * GOOD_MAX_REL_ERROR, "good"),
        (2 * GOOD_MAX_REL_ERROR, "suspect"),
        (0.5 * WRONG_MIN_REL_ERROR, "suspect"),
        (2 * WRONG_MIN_REL_ERROR, "wrong"),
        (math.inf, "wrong"),
        (math.nan, "wrong"),
    ],
)
def test_verdict_thresholds(err: float, verdict: str) -> None:
    assert verdict_for(err) == verdict


def test_numerical_gradient_of_cubic_matches_closed_form() -> None:
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    num = numerical_gradient(lambda z: float(np.sum(c * z**3)), x)
    np.testing.assert_allclose(num, 3 * c * x**2, rtol=CLOSED_FORM_RTOL, atol=CLOSED_FORM_ATOL)


def test_numerical_gradient_contracts_array_output_with_dout() -> None:
    rng = np.random.default_rng(1)
    x, g = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    num = numerical_gradient(np.sin, x, dout=g)
    np.testing.assert_allclose(num, g * np.cos(x), rtol=CLOSED_FORM_RTOL, atol=CLOSED_FORM_ATOL)


def test_numerical_gradient_copes_with_a_view_of_its_input() -> None:
    # f returns a view of x (as Flatten does): the + and - outputs must be copied before x is restored
    rng = np.random.default_rng(2)
    x, g = rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 6))
    num = numerical_gradient(lambda z: z.reshape(2, 6), x, dout=g)
    np.testing.assert_allclose(num, g.reshape(2, 3, 2), rtol=CLOSED_FORM_RTOL, atol=CLOSED_FORM_ATOL)


def test_numerical_gradient_restores_input_bitwise_and_refuses_float32() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3))
    before = x.copy()
    numerical_gradient(lambda z: float(np.sum(np.tanh(z))), x)
    assert np.array_equal(x, before)
    with pytest.raises(ShapeError, match=r"float64.*float32"):
        numerical_gradient(lambda z: float(z.sum()), x.astype(np.float32))


# ------------------------------------------------------------------------------------ the registry
def test_registry_parameters_are_random_not_constant() -> None:
    for case in CASES:
        if case.slow:
            continue
        module = case.make_module(case_rng(0, case.name))
        for name, p in module.named_parameters():
            assert np.unique(p.data).size == p.data.size, f"{case.name}: {name} has repeated values"


def test_kink_and_tie_free_inputs() -> None:
    rng = np.random.default_rng(4)
    x = away_from_zero(rng, (50, 7))
    assert np.abs(x).min() >= 1e-3 and x.flat[0] > 0 and x.flat[1] < 0
    y = np.sort(without_ties(rng, (3, 4, 5)).ravel())
    assert np.diff(y).min() >= 1e-2 - 1e-12


def test_case_result_does_not_depend_on_selection() -> None:
    full = {r.name: r for r in (run_case(c, 3) for c in select_cases(None))}
    for case in select_cases("Linear"):
        alone = run_case(case, 3)
        assert [c.max_rel_error for c in alone.checks] == [c.max_rel_error for c in full[case.name].checks]


def test_seed_changes_the_draws() -> None:
    case = select_cases("Tanh")[0]
    a, b = run_case(case, 0), run_case(case, 1)
    assert not np.array_equal(a["input"].numeric_grad, b["input"].numeric_grad)


def test_register_rejects_a_duplicate_name() -> None:
    from backproplab.verify import register

    with pytest.raises(ValueError, match="already registered"):
        register(CASES[0])


# ---------------------------------------------------------------------------------- planted bugs
class LinearForgetsBias(nn.Linear):
    """A planted bug: backward never writes the bias gradient."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(dout.T @ x)
        return dout @ self.weight.data  # type: ignore[no-any-return]


class LinearTransposedInputGrad(nn.Linear):
    """A planted bug: dL/dX = G W^T instead of G W (square layer, so the shapes still fit)."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(dout.T @ x)
        assert self.bias is not None
        self.bias.accumulate(dout.sum(axis=0))
        return dout @ self.weight.data.T  # type: ignore[no-any-return]


class LinearMeanBias(nn.Linear):
    """A planted bug: the bias gradient averages over the batch instead of summing."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(dout.T @ x)
        assert self.bias is not None
        self.bias.accumulate(dout.mean(axis=0))
        return dout @ self.weight.data  # type: ignore[no-any-return]


class LinearNoReturn(nn.Linear):
    """A planted bug: backward forgets to return dL/dX."""

    def backward(self, dout: np.ndarray) -> None:  # type: ignore[override]
        super().backward(dout)


def test_forgotten_bias_is_wrong_and_names_worst_element() -> None:
    rng = np.random.default_rng(5)
    x, dout = rng.normal(size=(3, 4)), rng.normal(size=(3, 2))
    report = gradcheck(LinearForgetsBias(4, 2, rng=rng), x, dout=dout)
    assert report.verdict == "wrong" and not report.ok
    bias = report["bias"]
    assert bias.verdict == "wrong" and bias.max_rel_error == pytest.approx(1.0)
    j = bias.worst_index[0]  # type: ignore[index]
    assert bias.analytic == 0.0
    assert bias.numeric == pytest.approx(dout[:, j].sum(), rel=1e-8)  # dL/db_j = sum_n G[n, j]
    assert "no gradient" in bias.describe_worst() and f"bias[{j}]" in bias.describe_worst()
    assert report["weight"].verdict == "good" and report["input"].verdict == "good"


def test_transposed_input_gradient_is_wrong_with_the_right_numbers() -> None:
    rng = np.random.default_rng(6)
    layer = LinearTransposedInputGrad(3, 3, rng=rng)
    x, dout = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    report = gradcheck(layer, x, dout=dout)
    check = report["input"]
    assert check.verdict == "wrong"
    w = layer.weight.data.astype(np.float64)
    i, j = check.worst_index  # type: ignore[misc]
    assert check.analytic == pytest.approx((dout @ w.T)[i, j], rel=1e-6)
    assert check.numeric == pytest.approx((dout @ w)[i, j], rel=1e-6)
    table = format_table([report])
    assert f"input[{i}, {j}]" in table and "analytic" in table and "numeric" in table


def test_mean_instead_of_sum_is_wrong_by_the_batch_size() -> None:
    rng = np.random.default_rng(7)
    report = gradcheck(LinearMeanBias(3, 2, rng=rng), rng.normal(size=(4, 3)), rng=rng)
    bias = report["bias"]
    assert bias.verdict == "wrong"
    assert bias.numeric / bias.analytic == pytest.approx(4.0, rel=1e-6)


def test_missing_return_is_reported_not_raised() -> None:
    rng = np.random.default_rng(8)
    report = gradcheck(LinearNoReturn(3, 2, rng=rng), rng.normal(size=(2, 3)), rng=rng)
    assert report["input"].verdict == "wrong"
    assert "returned None" in report["input"].note


def test_wrong_gradient_shape_is_wrong_with_a_note_and_json_stays_strict() -> None:
    class BadShape(nn.Tanh):
        def backward(self, dout: np.ndarray) -> np.ndarray:
            return super().backward(dout).T

    rng = np.random.default_rng(9)
    report = gradcheck(BadShape(), rng.normal(size=(2, 3)), rng=rng)
    check = report["input"]
    assert check.verdict == "wrong" and "(3, 2)" in check.note and "(2, 3)" in check.note
    json.dumps(report.to_dict(), allow_nan=False)  # inf errors become null


# --------------------------------------------------------------------------------- API behaviour
def test_gradcheck_leaves_the_module_untouched() -> None:
    rng = np.random.default_rng(10)
    model = nn.MLP(3, [4], 2, rng=rng, init_scheme="torch")
    before = model.state_dict()
    report = gradcheck(model, rng.normal(size=(2, 3)).astype(np.float32), rng=rng)
    assert report.verdict == "good"
    assert model.dtype == np.float32
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), k


def test_loss_with_explicit_scalar_dout() -> None:
    rng = np.random.default_rng(11)
    logits, y = rng.normal(size=(3, 4)), np.array([0, 3, 1])
    report = gradcheck(nn.SoftmaxCrossEntropy(), logits, target=y, dout=2.5)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = 2.5 * (p - np.eye(4)[y]) / 3  # dout * (softmax - onehot) / N
    np.testing.assert_allclose(report["input"].numeric_grad, expected, rtol=1e-7, atol=1e-10)
    assert report.verdict == "good"


def test_only_params_checks_a_subset_and_rejects_unknown_names() -> None:
    rng = np.random.default_rng(12)
    layer = nn.Linear(3, 2, rng=rng)
    report = gradcheck(layer, rng.normal(size=(2, 3)), rng=rng, only_params=["bias"])
    assert [c.tensor for c in report.checks] == ["input", "bias"]
    with pytest.raises(ValueError, match="no parameters \\['nope'\\]"):
        gradcheck(layer, rng.normal(size=(2, 3)), rng=rng, only_params=["nope"])


def test_argument_errors() -> None:
    rng = np.random.default_rng(13)
    with pytest.raises(ValueError, match="rng="):
        gradcheck(nn.Tanh(), np.ones((2, 2)))
    with pytest.raises(ShapeError, match=r"dout has shape \(3,\).*\(2, 2\)"):
        gradcheck(nn.Tanh(), np.ones((2, 2)), dout=np.ones(3))
    with pytest.raises(ShapeError, match="floating-point"):
        gradcheck(nn.Tanh(), np.ones((2, 2), dtype=np.int64), rng=rng)
    with pytest.raises(TypeError, match="backward"):
        gradcheck(object(), np.ones((2, 2)), rng=rng)


# ------------------------------------------------------------------------------ a student's layer
class Param:
    def __init__(self, data: np.ndarray) -> None:
        self.data, self.grad = data, np.zeros_like(data)


class StudentAffine:
    """A CS231n-style layer: ``params`` dict of objects with .data/.grad, y = x W + b."""

    def __init__(self, w: np.ndarray, b: np.ndarray, *, bug: bool = False) -> None:
        self.params = {"W": Param(w), "b": Param(b)}
        self.bug = bug

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.params["W"].data + self.params["b"].data  # type: ignore[no-any-return]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.params["W"].grad = self.x.T @ dout
        self.params["b"].grad = dout.sum(axis=0) * (2.0 if self.bug else 1.0)
        return dout @ self.params["W"].data.T  # type: ignore[no-any-return]


def test_student_object_with_params_dict() -> None:
    rng = np.random.default_rng(14)
    layer = StudentAffine(rng.normal(size=(3, 2)), rng.normal(size=2))
    report = gradcheck(layer, rng.normal(size=(4, 3)), rng=rng)
    assert [c.tensor for c in report.checks] == ["input", "W", "b"]
    assert report.verdict == "good"
    buggy = gradcheck(
        StudentAffine(rng.normal(size=(3, 2)), rng.normal(size=2), bug=True), rng.normal(size=(4, 3)), rng=rng
    )
    assert buggy["b"].verdict == "wrong" and buggy["W"].verdict == "good"
    assert buggy["b"].analytic == pytest.approx(2 * buggy["b"].numeric, rel=1e-6)


def test_student_object_with_params_list_and_float32_refused() -> None:
    rng = np.random.default_rng(15)

    class ListLayer:
        """y = tanh(x) * w, with ``params`` a list."""

        def __init__(self, w: np.ndarray) -> None:
            self.params = [Param(w)]

        def forward(self, x: np.ndarray) -> np.ndarray:
            self.t = np.tanh(x)
            return self.t * self.params[0].data  # type: ignore[no-any-return]

        def backward(self, dout: np.ndarray) -> np.ndarray:
            self.params[0].grad = (dout * self.t).sum(axis=0)
            return dout * self.params[0].data * (1 - self.t**2)  # type: ignore[no-any-return]

    report = gradcheck(ListLayer(rng.normal(size=3)), rng.normal(size=(2, 3)), rng=rng)
    assert [c.tensor for c in report.checks] == ["input", "params[0]"]
    assert report.verdict == "good"
    f32 = StudentAffine(rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2))
    with pytest.raises(ShapeError, match=r"'W'.*float32"):
        gradcheck(f32, rng.normal(size=(2, 3)), rng=rng)
