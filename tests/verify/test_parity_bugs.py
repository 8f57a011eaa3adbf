"""Planted bugs are flagged with the right hint; correct models raise no false alarm.

Grid: MLPs of depth 1 to 5 (Linear layers) and batch sizes 1 to 512, small feature sizes so the
whole file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parity_planted_bugs import (
    N_IN,
    WIDTH,
    EpsLayerNorm,
    EpsOutsideLayerNorm,
    OutputDerivativeELU,
    TransposedForwardLinear,
    TransposedGradLinear,
    UnbiasedLayerNorm,
    WrongAxisSoftmax,
    batch,
    mlp_modules,
)

from backproplab import nn
from backproplab.verify.parity import ParityReport, compare_models

DEPTHS = [1, 2, 3, 4, 5]
BATCHES = [1, 2, 33, 512]
ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}
#: The norm ratio of a sum-reduced loss must equal the batch size this closely (float32).
RATIO_RTOL = 1e-4


def assert_no_false_alarm(report: ParityReport) -> None:
    assert report.first_divergence is None, report.first_divergence
    assert report.hints == []
    assert report.ok
    assert all(
        r.status in ("exact", f"agree ({report.dtype} rounding)") for r in report.rows + report.end_to_end
    )


def only_hints_at(report: ParityReport, *labels: str) -> None:
    """Every hint is about one of ``labels`` (no false alarm elsewhere)."""
    assert report.hints, "no hint"
    for h in report.hints:
        assert any(h.startswith(label) for label in labels), h


# ---------------------------------------------------------------------------- correct models
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("batch_size", BATCHES)
def test_correct_mlp_no_false_alarm(depth: int, batch_size: int) -> None:
    rng = np.random.default_rng(100 * depth + batch_size)
    act = list(ACTIVATIONS.values())[(depth + batch_size) % 3]
    model = nn.Sequential(*mlp_modules(depth, rng, activation=act))
    x, y = batch(batch_size, rng)
    report = compare_models(model, x=x, y=y)
    assert_no_false_alarm(report)
    assert report.reference_loss.startswith("cross_entropy")
    n_linear = depth
    assert len([r for r in report.rows if r.quantity == "weight grad"]) == n_linear
    if batch_size == 1:
        assert any("cannot be checked" in n for n in report.notes)


@pytest.mark.parametrize("depth", [1, 3, 5])
@pytest.mark.parametrize("init", ["practical", "torch", "kaiming"])
def test_practical_mlp_with_softmax_head_no_false_alarm(depth: int, init: str) -> None:
    """The practical's head, Softmax then CrossEntropy on probabilities, against nll_loss(log p)."""
    rng = np.random.default_rng(depth)
    mlp = nn.MLP(N_IN, [WIDTH] * (depth - 1), 5, init_scheme=init, rng=rng)
    model = nn.Sequential(mlp, nn.Softmax(dim=1))
    x, y = batch(64, rng)
    report = compare_models(model, x=x, y=y, loss=nn.CrossEntropy("mean"))
    assert report.reference_loss.startswith("nll_loss")
    assert_no_false_alarm(report)


@pytest.mark.parametrize("batch_size", [1, 512])
def test_float64_model_agrees_to_float64_tolerance(batch_size: int) -> None:
    rng = np.random.default_rng(5)
    model = nn.Sequential(*mlp_modules(3, rng, dtype=np.float64))
    x, y = batch(batch_size, rng, dtype=np.float64)
    report = compare_models(model, x=x, y=y)
    assert report.rtol == 1e-9
    assert_no_false_alarm(report)
    assert max(r.diff.max_rel_err for r in report.rows) < 1e-12


def test_float32_rounding_is_reported_as_agreement_not_a_bug() -> None:
    rng = np.random.default_rng(6)
    model = nn.MLP(3072, [100], 10, init_scheme="torch", rng=rng)
    x = rng.standard_normal((200, 3072)).astype(np.float32)
    y = rng.integers(0, 10, 200)
    report = compare_models(model, x=x, y=y)
    assert_no_false_alarm(report)
    rounding = [r for r in report.rows if r.status == "agree (float32 rounding)"]
    assert rounding, "a 3072-wide float32 matmul must differ at rounding level somewhere"
    worst = max(r.diff.max_rel_err for r in report.rows)
    assert 0 < worst < 1e-5
    assert any("float32 rounding" in n and "not a bug" in n for n in report.notes)


@settings(max_examples=20, deadline=None)
@given(
    widths=st.lists(st.integers(1, 24), min_size=0, max_size=4),
    n_in=st.integers(1, 20),
    n_classes=st.integers(2, 9),
    batch_size=st.integers(1, 40),
    act=st.sampled_from(sorted(ACTIVATIONS)),
    seed=st.integers(0, 2**31),
)
def test_random_shapes_no_false_alarm(
    widths: list[int], n_in: int, n_classes: int, batch_size: int, act: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    model = nn.MLP(n_in, widths, n_classes, activation=act, init_scheme="torch", rng=rng)
    x = rng.standard_normal((batch_size, n_in)).astype(np.float32)
    y = rng.integers(0, n_classes, batch_size)
    assert_no_false_alarm(compare_models(model, x=x, y=y))


# ---------------------------------------------------------------------------- sum reduction
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("batch_size", [2, 7, 33, 512])
def test_sum_reduction_points_at_the_loss_with_the_batch_size(depth: int, batch_size: int) -> None:
    rng = np.random.default_rng(depth + batch_size)
    model = nn.MLP(N_IN, [WIDTH] * (depth - 1), 5, rng=rng)
    x, y = batch(batch_size, rng)
    report = compare_models(model, x=x, y=y, loss=nn.SoftmaxCrossEntropy("sum"))
    first = report.first_divergence
    assert first is not None and first.layer == "loss" and first.order == "forward"
    assert f"batch size {batch_size}" in first.hint and "sum instead of mean" in first.hint  # type: ignore[operator]
    grad_row = next(r for r in report.rows if r.label == "loss grad")
    assert grad_row.diverges and abs(grad_row.diff.norm_ratio / batch_size - 1) < RATIO_RTOL
    assert "gradient" in grad_row.hint and f"batch size {batch_size}" in grad_row.hint  # type: ignore[operator]
    only_hints_at(report, "loss")
    assert all(not r.diverges for r in report.rows if r.layer != "loss")  # the layers themselves agree


def test_sum_reduction_at_batch_size_one_cannot_be_told_and_does_not_fire() -> None:
    rng = np.random.default_rng(1)
    model = nn.MLP(N_IN, [WIDTH], 5, rng=rng)
    x, y = batch(1, rng)
    report = compare_models(model, x=x, y=y, loss=nn.SoftmaxCrossEntropy("sum"))
    assert_no_false_alarm(report)
    assert any("batch size 1" in n and "cannot be checked" in n for n in report.notes)


# ---------------------------------------------------------------------------- transposed weight
@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_transposed_weight_gradient(batch_size: int) -> None:
    rng = np.random.default_rng(2)
    model = nn.Sequential(*mlp_modules(3, rng, linear=TransposedGradLinear, linear_at=1))
    x, y = batch(batch_size, rng)
    report = compare_models(model, x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "2 weight grad" and first.order == "backward"
    assert "transposed weight" in first.hint  # type: ignore[operator]
    only_hints_at(report, "2 weight grad")


def test_transposed_weight_in_forward() -> None:
    rng = np.random.default_rng(3)
    model = nn.Sequential(*mlp_modules(3, rng, linear=TransposedForwardLinear, linear_at=1))
    x, y = batch(16, rng)
    report = compare_models(model, x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "2 output" and first.order == "forward"
    assert "transposed weight in forward" in first.hint  # type: ignore[operator]


# ---------------------------------------------------------------------------- LayerNorm
def layernorm_model(ln: nn.Module, rng: np.random.Generator) -> nn.Sequential:
    """LayerNorm first, on inputs of std 0.03 (variance ~1e-3), so eps matters."""
    ln.weight.data[...] = rng.uniform(0.5, 1.5, WIDTH)  # type: ignore[union-attr]
    ln.bias.data[...] = rng.uniform(-0.5, 0.5, WIDTH)  # type: ignore[union-attr]
    return nn.Sequential(ln, nn.ELU(), nn.Linear(WIDTH, 5, rng=rng))


def layernorm_batch(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    scale = rng.uniform(0.01, 0.05, (n, 1))  # a different variance per row, (n, 1)
    return (scale * rng.standard_normal((n, WIDTH))).astype(np.float32), rng.integers(0, 5, n)


@pytest.mark.parametrize("batch_size", [1, 8, 128])
def test_correct_layernorm_no_false_alarm(batch_size: int) -> None:
    rng = np.random.default_rng(4)
    x, y = layernorm_batch(batch_size, rng)
    assert_no_false_alarm(compare_models(layernorm_model(nn.LayerNorm(WIDTH), rng), x=x, y=y))


@pytest.mark.parametrize("batch_size", [1, 8, 128])
def test_layernorm_unbiased_variance(batch_size: int) -> None:
    rng = np.random.default_rng(5)
    x, y = layernorm_batch(batch_size, rng)
    report = compare_models(layernorm_model(UnbiasedLayerNorm(WIDTH), rng), x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "0 output"
    assert "unbiased variance (LayerNorm uses biased)" in first.hint  # type: ignore[operator]
    assert f"n = {WIDTH}" in first.hint  # type: ignore[operator]


@pytest.mark.parametrize("batch_size", [1, 8, 128])
def test_layernorm_eps(batch_size: int) -> None:
    rng = np.random.default_rng(6)
    x, y = layernorm_batch(batch_size, rng)
    report = compare_models(layernorm_model(EpsLayerNorm(WIDTH), rng), x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "0 output"
    assert first.hint.startswith("eps:") and "eps = 0.001 inside" in first.hint  # type: ignore[union-attr]
    assert "1e-05" in first.hint  # type: ignore[operator]


def test_layernorm_eps_outside_the_square_root() -> None:
    rng = np.random.default_rng(7)
    x, y = layernorm_batch(32, rng)
    report = compare_models(layernorm_model(EpsOutsideLayerNorm(WIDTH), rng), x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "0 output"
    assert "eps outside the square root" in first.hint  # type: ignore[operator]


# ---------------------------------------------------------------------------- ELU derivative
@pytest.mark.parametrize("depth", [2, 3, 5])
@pytest.mark.parametrize("batch_size", [1, 16, 512])
def test_elu_derivative_taken_from_the_output(depth: int, batch_size: int) -> None:
    rng = np.random.default_rng(depth * batch_size)
    model = nn.Sequential(*mlp_modules(depth, rng, activation=OutputDerivativeELU))
    x, y = batch(batch_size, rng)
    report = compare_models(model, x=x, y=y)
    first = report.first_divergence
    last_elu = str(2 * (depth - 1) - 1)  # backward order: the last ELU is met first
    assert first is not None and first.label == f"{last_elu} input grad" and first.order == "backward"
    assert "ELU derivative taken from the output" in first.hint  # type: ignore[operator]
    elu_rows = [r for r in report.rows if r.diverges]
    assert all(
        r.quantity == "input grad" and "ELU derivative taken from the output" in r.hint for r in elu_rows
    )  # type: ignore[operator]


# ---------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_softmax_over_the_wrong_axis(batch_size: int) -> None:
    rng = np.random.default_rng(8)
    model = nn.Sequential(*mlp_modules(2, rng), WrongAxisSoftmax(dim=1))
    x, y = batch(batch_size, rng)
    report = compare_models(model, x=x, y=y, loss=nn.CrossEntropy("mean"))
    first = report.first_divergence
    assert first is not None and first.label == "3 output" and first.order == "forward"
    assert "softmax over the wrong axis" in first.hint and "along dim 0, not along dim 1" in first.hint  # type: ignore[operator]
    grad = next(r for r in report.rows if r.label == "3 input grad")
    assert grad.diverges and "softmax backward over the wrong axis" in grad.hint  # type: ignore[operator]


def test_softmax_declared_over_the_batch_axis_is_flagged_even_when_the_twin_agrees() -> None:
    rng = np.random.default_rng(9)
    model = nn.Sequential(*mlp_modules(2, rng), nn.Softmax(dim=0))
    x, y = batch(8, rng)
    report = compare_models(model, x=x, y=y, loss=nn.CrossEntropy("mean"))
    assert report.first_divergence is None  # the twin copies dim=0
    assert not report.ok
    assert any("Softmax(dim=0) normalises over the batch axis" in h for h in report.hints)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("batch_size", [1, 32])
def test_double_softmax(reduction: str, batch_size: int) -> None:
    rng = np.random.default_rng(10)
    model = nn.Sequential(*mlp_modules(3, rng), nn.Softmax(dim=1))
    x, y = batch(batch_size, rng)
    report = compare_models(model, x=x, y=y, loss=nn.SoftmaxCrossEntropy(reduction))
    first = report.first_divergence
    assert first is not None and first.label == "loss"
    assert "double softmax" in first.hint  # type: ignore[operator]
    assert ("sums over the batch" in first.hint) == (reduction == "sum" and batch_size > 1)  # type: ignore[operator]
    grad = next(r for r in report.rows if r.label == "loss grad")
    assert grad.diverges and "double softmax" in grad.hint  # type: ignore[operator]
    only_hints_at(report, "loss")


def test_logits_passed_to_a_loss_on_probabilities() -> None:
    rng = np.random.default_rng(11)
    model = nn.Sequential(*mlp_modules(2, rng))
    x, y = batch(16, rng)
    report = compare_models(model, x=x, y=y, loss=nn.CrossEntropy("mean"))
    first = report.first_divergence
    assert first is not None and first.label == "loss"
    assert "logits passed where probabilities are expected" in first.hint  # type: ignore[operator]
