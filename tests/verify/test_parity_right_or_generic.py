"""Hints that are never wrong, and no false alarms: each planted bug with its unbroken control.

Dropout masks shared with the twin, generic descriptions that say *where* a difference lies (a
constant factor only when it is one element-wise), the batch-size hint on a layer's row, BatchNorm's
variance conventions, and a backward that raises.
"""

from __future__ import annotations

import numpy as np
import pytest
from parity_planted_bugs import (
    N_IN,
    WIDTH,
    BatchScaledBiasLinear,
    LastRowWeightGradLinear,
    LeakyBackwardReLU,
    RedrawMaskDropout,
    TransposedAccumulateLinear,
    UnscaledBackwardDropout,
    batch,
    biased_running_var_batchnorm,
    unbiased_batchnorm,
)
from test_parity_bugs import assert_no_false_alarm

from backproplab import nn
from backproplab.verify import hints as H
from backproplab.verify.diff import agree_rtol, tensor_diff
from backproplab.verify.parity import compare_models, format_table

P = 0.3


def dropout_model(
    rng: np.random.Generator, dropout: type[nn.Dropout] = nn.Dropout, dtype: type = np.float32
) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(N_IN, WIDTH, rng=rng, dtype=dtype),
        nn.ReLU(),
        dropout(P, rng=np.random.default_rng(5)),
        nn.Linear(WIDTH, 5, rng=rng, dtype=dtype),
    )


# ---------------------------------------------------------------------------- Dropout
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [2, 32])
def test_correct_dropout_in_training_mode_agrees_with_shared_masks(dtype: type, batch_size: int) -> None:
    rng = np.random.default_rng(1)
    x, y = batch(batch_size, rng, dtype=dtype)
    report = compare_models(dropout_model(rng, dtype=dtype), x=x, y=y)
    assert_no_false_alarm(report)
    assert any(n.startswith("2: Dropout in training mode") and "own mask" in n for n in report.notes)
    out = next(r for r in report.rows if r.label == "2 output")
    assert out.diff.max_rel_err <= agree_rtol(dtype)  # the same elements dropped, not a lucky tolerance


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_backward_without_the_scale_diverges_and_is_named(dtype: type) -> None:
    rng = np.random.default_rng(2)
    x, y = batch(32, rng, dtype=dtype)
    report = compare_models(dropout_model(rng, UnscaledBackwardDropout, dtype), x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "2 input grad" and first.status == "DIVERGES"
    assert "Dropout backward not scaled by 1/(1-p)" in first.hint and "0.7 x the reference" in first.hint  # type: ignore[operator]
    assert not report.ok and format_table(report).rstrip().endswith("PARITY BROKEN")


def test_dropout_backward_with_another_mask_diverges_and_is_named() -> None:
    rng = np.random.default_rng(3)
    x, y = batch(32, rng)
    report = compare_models(dropout_model(rng, RedrawMaskDropout), x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "2 input grad"
    assert "different mask from its forward" in first.hint  # type: ignore[operator]


def test_dropout_in_eval_mode_is_the_identity_on_both_sides() -> None:
    rng = np.random.default_rng(4)
    model = dropout_model(rng).eval()
    x, y = batch(16, rng)
    report = compare_models(model, x=x, y=y)
    assert_no_false_alarm(report)
    assert not any("Dropout in training mode" in n for n in report.notes)


# ---------------------------------------------------------------------------- describe()
def ctx(quantity: str, value: np.ndarray, reference: np.ndarray, **kw: object) -> H.RowContext:
    return H.RowContext("layer", quantity, value, reference, tensor_diff(value, reference), 1e-4, **kw)  # type: ignore[arg-type]


def test_a_constant_factor_is_claimed_only_when_it_holds_element_wise() -> None:
    rng = np.random.default_rng(5)
    r = rng.standard_normal((16, 8))
    near_one = 1.002 * r
    assert H.describe(ctx("weight grad", near_one, r)).startswith("1.002 x the reference in every element")
    few = r.copy()
    few[:, 3] *= 1.5  # cosine ~0.99, norm ratio ~1.05: once called "a constant factor"
    text = H.describe(ctx("weight grad", few, r))
    assert "constant factor" not in text and "only in column 3" in text and "1.5 x the reference" in text
    twice = H.describe(ctx("weight grad", 2 * r, r))
    assert "2 x the reference in every element" in twice and "counted twice" in twice
    assert "the batch size 16" in H.describe(ctx("weight grad", 16 * r, r, batch_size=16))


def test_describe_names_the_region_where_a_difference_lies() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 6))
    r = rng.standard_normal((10, 6))
    neg = np.where(x < 0, 0.0, r)
    assert H.describe(ctx("input grad", neg, r, input=x)).startswith(
        "differs only where the input is negative"
    )
    last = r.copy()
    last[-1] += 1.0
    assert "only in the last row" in H.describe(ctx("input grad", last, r))
    one = r.copy()
    one[4, 2] = 7.0
    assert "in 1 of 60 elements" in H.describe(ctx("input grad", one, r))
    channels = rng.standard_normal((2, 5, 3, 3))
    bad = channels.copy()
    bad[:, 1] = 0.0
    text = H.describe(ctx("input grad", bad, channels))
    assert "only in channel 1" in text and "zero where the reference is not" in text


def test_parity_says_where_a_gradient_differs_not_a_constant_factor() -> None:
    rng = np.random.default_rng(7)
    model = nn.Sequential(
        nn.Linear(N_IN, WIDTH, rng=rng), nn.Tanh(), LastRowWeightGradLinear(WIDTH, 5, rng=rng)
    )
    x, y = batch(64, rng)
    first = compare_models(model, x=x, y=y).first_divergence
    assert first is not None and first.label == "2 weight grad"
    assert "only in the last row" in first.hint and "2 x the reference" in first.hint  # type: ignore[operator]
    assert "constant factor" not in first.hint  # type: ignore[operator]


def test_parity_says_a_relu_backward_differs_only_on_negative_inputs() -> None:
    rng = np.random.default_rng(8)
    model = nn.Sequential(nn.Linear(N_IN, WIDTH, rng=rng), LeakyBackwardReLU(), nn.Linear(WIDTH, 5, rng=rng))
    x, y = batch(32, rng)
    first = compare_models(model, x=x, y=y).first_divergence
    assert first is not None and first.label == "1 input grad"
    assert first.hint.startswith("differs only where the input is negative")  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- batch-size hint
@pytest.mark.parametrize("batch_size", [4, 33])
def test_a_layer_scaling_by_the_batch_size_is_blamed_not_the_loss(batch_size: int) -> None:
    rng = np.random.default_rng(9)
    model = nn.Sequential(BatchScaledBiasLinear(N_IN, WIDTH, rng=rng), nn.ELU(), nn.Linear(WIDTH, 5, rng=rng))
    x, y = batch(batch_size, rng)
    report = compare_models(model, x=x, y=y)
    assert all(not r.diverges for r in report.rows if r.layer == "loss")
    first = report.first_divergence
    assert first is not None and first.label == "0 bias grad"
    assert f"batch size {batch_size}" in first.hint and "while the loss gradient agrees" in first.hint  # type: ignore[operator]
    assert "the layer scales by the batch size" in first.hint and "(loss)" not in first.hint  # type: ignore[operator]
    assert all("(loss)" not in h for h in report.hints)
    e2e = next(r for r in report.end_to_end if r.label == "(model) 0.bias grad")
    assert e2e.diverges and "(loss)" not in e2e.hint  # type: ignore[operator]


def test_sum_reduction_still_blames_the_loss_and_the_layers_agree() -> None:
    rng = np.random.default_rng(10)
    model = nn.Sequential(nn.Linear(N_IN, WIDTH, rng=rng), nn.ELU(), nn.Linear(WIDTH, 5, rng=rng))
    x, y = batch(16, rng)
    report = compare_models(model, x=x, y=y, loss=nn.SoftmaxCrossEntropy("sum"))
    assert report.first_divergence is not None and report.first_divergence.label == "loss"
    assert all(h.startswith("loss") for h in report.hints)
    e2e = [
        r
        for r in report.end_to_end
        if r.diverges and r.quantity.endswith("grad") and r.quantity != "loss grad"
    ]
    assert e2e and all("(loss)" in r.hint for r in e2e)  # type: ignore[operator]


# ---------------------------------------------------------------------------- BatchNorm variance
def bn_model(bn: nn.Module, rng: np.random.Generator, image: bool) -> nn.Sequential:
    bn.weight.data[...] = rng.uniform(0.5, 1.5, 4)  # type: ignore[union-attr]
    bn.bias.data[...] = rng.uniform(-0.5, 0.5, 4)  # type: ignore[union-attr]
    tail: list[nn.Module] = (
        [nn.Flatten(), nn.Linear(4 * 9, 5, rng=rng)] if image else [nn.Linear(4, 5, rng=rng)]
    )
    return nn.Sequential(bn, nn.ELU(), *tail)


def bn_batch(rng: np.random.Generator, image: bool) -> tuple[np.ndarray, np.ndarray]:
    shape = (6, 4, 3, 3) if image else (12, 4)
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 5, shape[0])


@pytest.mark.parametrize("image", [False, True], ids=["BatchNorm1d", "BatchNorm2d"])
def test_batchnorm_variance_conventions(image: bool) -> None:
    cls = nn.BatchNorm2d if image else nn.BatchNorm1d
    rng = np.random.default_rng(11)
    x, y = bn_batch(rng, image)
    m = 54 if image else 12
    assert_no_false_alarm(compare_models(bn_model(cls(4), rng, image), x=x, y=y))  # the control

    report = compare_models(bn_model(unbiased_batchnorm(cls)(4), rng, image), x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "0 output"
    assert f"unbiased variance ({cls.__name__} training uses biased)" in first.hint  # type: ignore[operator]
    assert f"= {m} (divide by n, not n-1)" in first.hint and "only in the running_var" in first.hint  # type: ignore[operator]

    report = compare_models(bn_model(biased_running_var_batchnorm(cls)(4), rng, image), x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "0 running_var"
    assert "running_var updated with the biased batch variance" in first.hint and f"M = {m}" in first.hint  # type: ignore[operator]
    assert [r.label for r in report.rows if r.diverges] == ["0 running_var"]  # normalisation itself is right


# ---------------------------------------------------------------------------- a backward that raises
def test_a_shape_error_in_accumulate_is_a_diverging_row_naming_module_and_parameter() -> None:
    rng = np.random.default_rng(12)
    model = nn.Sequential(
        nn.Linear(N_IN, WIDTH, rng=rng), nn.ELU(), TransposedAccumulateLinear(WIDTH, 5, rng=rng)
    )
    x, y = batch(8, rng)
    report = compare_models(model, x=x, y=y)
    first = report.first_divergence
    assert first is not None and first.label == "2 weight grad" and first.status == "DIVERGES"
    assert "2.backward raised AssertionError" in first.hint and "'weight'" in first.hint  # type: ignore[operator]
    assert "(5, 16)" in first.hint  # type: ignore[operator]
    assert not report.ok
    assert any("end-to-end gradients are not compared" in n for n in report.notes)
    assert report.to_dict()["first_divergence"]["quantity"] == "weight grad"


def test_a_training_step_that_raises_is_the_trajectory_divergence_naming_the_parameter() -> None:
    from backproplab.verify.parity import compare_trajectories

    rng = np.random.default_rng(13)
    model = nn.Sequential(
        nn.Linear(N_IN, WIDTH, rng=rng), nn.ELU(), TransposedAccumulateLinear(WIDTH, 5, rng=rng)
    )
    x, y = batch(16, rng)
    traj = compare_trajectories(model, x=x, y=y, rng=rng, steps=3)
    assert traj.first_divergence == 1 and len(traj.steps) == 1
    assert "the NumPy training step raised: 2.backward raised AssertionError" in traj.hint  # type: ignore[operator]
    assert "'weight'" in traj.hint  # type: ignore[operator]
