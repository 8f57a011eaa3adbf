"""Gradcheck states a constant ratio analytic/numeric and what it suggests; a backward that raises
is a failure naming module and parameter; the registry covers the transposed-conv dX path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backproplab import nn
from backproplab.nn.conv import TRANSPOSED_MIN_CHANNELS
from backproplab.verify.gradcheck import format_table, gradcheck
from backproplab.verify.registry import CASES, case_rng, run_case

N, D_IN, D_OUT = 8, 5, 3


class ScaledLinear(nn.Linear):
    """Planted bugs: the input gradient times ``dx_factor``, the weight gradient times ``dw_factor``."""

    dx_factor = 1.0
    dw_factor = 1.0

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(self.dw_factor * (dout.T @ x))
        self.bias.accumulate(dout.sum(axis=0))  # type: ignore[union-attr]
        return self.dx_factor * (dout @ self.weight.data)  # type: ignore[no-any-return]


def check(dx_factor: float = 1.0, dw_factor: float = 1.0) -> object:
    rng = np.random.default_rng(0)
    layer = ScaledLinear(D_IN, D_OUT, rng=rng, dtype=np.float64)
    layer.dx_factor, layer.dw_factor = dx_factor, dw_factor
    return gradcheck(layer, rng.normal(size=(N, D_IN)), rng=rng)


@pytest.mark.parametrize(
    ("factor", "meaning"),
    [
        (N, "the batch size 8: a sum where the loss averages, or a missing 1/N"),
        (1 / N, "1/batch size (1/8)"),
        (-1.0, "sign flipped"),
        (2.0, "a term counted twice"),
        (0.5, "half"),
    ],
)
def test_a_constant_ratio_is_stated_with_what_it_suggests(factor: float, meaning: str) -> None:
    report = check(dx_factor=factor)
    dx = report["input"]  # type: ignore[index]
    assert dx.verdict == "wrong" and dx.ratio == pytest.approx(factor, rel=1e-6)
    assert f"analytic = {factor:.4g} x numeric in every element = {meaning}" in dx.note
    assert meaning in dx.describe_worst() and meaning in format_table([report])  # type: ignore[list-item]
    row = json.loads(json.dumps(report.to_dict(), allow_nan=False))["checks"][0]  # type: ignore[attr-defined]
    assert row["tensor"] == "input" and row["ratio"] == pytest.approx(factor, rel=1e-6)
    assert report["weight"].ratio is None and report["weight"].verdict == "good"  # type: ignore[index]


def test_an_unnamed_constant_is_still_a_constant_factor_and_a_non_constant_is_none() -> None:
    dw = check(dw_factor=3.7)["weight"]  # type: ignore[index]
    assert dw.ratio == pytest.approx(3.7) and "3.7 x numeric in every element: a constant factor" in dw.note
    rng = np.random.default_rng(1)

    class OneRowWrong(ScaledLinear):
        def backward(self, dout: np.ndarray) -> np.ndarray:
            dx = super().backward(dout)
            dx[0] *= 2
            return dx

    report = gradcheck(
        OneRowWrong(D_IN, D_OUT, rng=rng, dtype=np.float64), rng.normal(size=(N, D_IN)), rng=rng
    )
    assert report["input"].verdict == "wrong" and report["input"].ratio is None
    assert "x numeric" not in report["input"].note


def test_correct_backward_has_no_ratio() -> None:
    report = check()
    assert report.ok and all(c.ratio is None and c.note == "" for c in report.checks)  # type: ignore[attr-defined]


class TransposedAccumulate(nn.Linear):
    """Planted bug: dL/dW = X^T G (in, out): Parameter.accumulate's shape assertion fires."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (x,) = self._saved()
        self.weight.accumulate(x.T @ dout)
        return dout @ self.weight.data  # type: ignore[no-any-return]


def test_a_shape_error_in_accumulate_is_a_wrong_row_naming_module_and_parameter() -> None:
    rng = np.random.default_rng(2)
    report = gradcheck(TransposedAccumulate(D_IN, D_OUT, rng=rng), rng.normal(size=(N, D_IN)), rng=rng)
    assert not report.ok and len(report.checks) == 1
    c = report["weight"]
    assert c.verdict == "wrong" and c.shape == (D_OUT, D_IN)
    assert c.note.startswith("TransposedAccumulate: TransposedAccumulate.backward raised AssertionError")
    assert "'weight'" in c.note and f"({D_IN}, {D_OUT})" in c.note
    assert "error" in report.details and json.dumps(report.to_dict(), allow_nan=False)
    assert "TransposedAccumulate" in format_table([report]) and "'weight'" in format_table([report])


def test_a_backward_that_raises_elsewhere_names_the_module() -> None:
    class Broken(nn.Tanh):
        def backward(self, dout: np.ndarray) -> np.ndarray:
            raise ValueError("boom")

    rng = np.random.default_rng(3)
    report = gradcheck(Broken(), rng.normal(size=(2, 3)), rng=rng)
    assert (
        report["input"].verdict == "wrong"
        and "Broken.backward raised ValueError: boom" in report["input"].note
    )


def test_the_registry_covers_the_transposed_convolution_input_gradient() -> None:
    """The practical ConvNet's 3x3 convs at stride 1 take dL/dX through the transposed-convolution
    matmul from TRANSPOSED_MIN_CHANNELS input channels on: some case must run that path."""
    covering = []
    for case in CASES:
        if case.module != "Conv2d":
            continue
        conv = case.make_module(case_rng(0, case.name))
        kh, kw = conv.kernel_size if isinstance(conv.kernel_size, tuple) else (conv.kernel_size,) * 2
        stride = conv.stride if isinstance(conv.stride, tuple) else (conv.stride,) * 2
        if stride == (1, 1) and (kh, kw) == (3, 3) and conv.in_channels >= TRANSPOSED_MIN_CHANNELS:
            covering.append(case)
    assert covering, "no Conv2d case with >= 8 input channels at stride 1"
    report = run_case(covering[0], seed=0)
    assert report.verdict == "good" and report["input"].shape[1] >= TRANSPOSED_MIN_CHANNELS
