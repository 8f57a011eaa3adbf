"""``compare``: a hand-written NumPy MLP (not built on backproplab) against an independent PyTorch MLP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backproplab.errors import ShapeError
from backproplab.verify.check import FAIL, PASS
from backproplab.verify.compare import compare
from backproplab.verify.trajectory import OptimizerSpec

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "handwritten"))
import mymlp

SIZES = [7, 6, 5, 4]
N = 16


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, SIZES[0])), rng.integers(0, SIZES[-1], size=N)


def test_correct_models_hold_parity_and_trajectory(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    model = mymlp.MyMLP(SIZES)
    w0 = model.layers[0].W.copy()
    report = compare(model, mymlp.TorchMLP(SIZES), x, y, loss=mymlp.softmax_cross_entropy,
                     numpy_step=mymlp.sgd_step, learning_rate=0.1, steps=5)  # fmt: skip
    assert report.ok, report.format()
    assert [b for _, b in report.pairs] == ["net.0", "net.1", "net.2", "net.3", "net.4"]
    assert all(r.status == PASS for r in report.rows)
    assert report.trajectory is not None and len(report.trajectory.steps) == 5
    np.testing.assert_array_equal(model.layers[0].W, w0)  # the user's model is not modified
    assert "PARITY HOLDS" in report.format()


@pytest.mark.parametrize(
    "opt",
    [
        OptimizerSpec("sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        OptimizerSpec("adam", lr=1e-2, weight_decay=1e-3),
    ],
)
def test_backproplab_optimizers_on_the_users_arrays(
    batch: tuple[np.ndarray, np.ndarray], opt: OptimizerSpec
) -> None:
    x, y = batch
    report = compare(
        mymlp.MyMLP(SIZES),
        mymlp.TorchMLP(SIZES),
        x,
        y,
        loss=mymlp.softmax_cross_entropy,
        optimizer=opt,
        steps=6,
        batch_size=8,
    )
    assert report.ok, report.format()


def test_sum_loss_is_named_with_the_batch_size(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch

    def summed(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        loss, d = mymlp.softmax_cross_entropy(logits, labels)
        return loss * len(labels), d * len(labels)

    report = compare(
        mymlp.MyMLP(SIZES), mymlp.TorchMLP(SIZES), x, y, loss=summed, numpy_step=mymlp.sgd_step, steps=3
    )
    first = report.first_divergence
    assert first is not None and first.check == "end to end: loss"
    assert f"batch size {N}: sum instead of mean" in first.detail
    assert not report.ok


def test_wrong_layer_is_the_first_divergence(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    model = mymlp.MyMLP(SIZES)
    relu = model.layers[3]
    relu.backward = lambda dout: dout  # type: ignore[method-assign]  # forgets the mask
    report = compare(model, mymlp.TorchMLP(SIZES), x, y, loss=mymlp.softmax_cross_entropy, steps=0)
    first = report.first_divergence
    assert first is not None and first.module == "layers[3] (Relu)" and "input grad" in first.check
    assert "the mask is missing: the upstream gradient passes everywhere" in first.detail
    # the layers before it agree on their own: errors do not propagate down the table
    assert all(r.status == PASS for r in report.rows if r.module in ("layers[0] (Dense)", "layers[1] (Relu)"))


def test_users_update_rule_that_skips_biases_is_named(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch

    def no_bias(model: Any, lr: float) -> None:
        for layer in model.layers:
            if isinstance(layer, mymlp.Dense):
                layer.W -= lr * layer.dW

    report = compare(
        mymlp.MyMLP(SIZES),
        mymlp.TorchMLP(SIZES),
        x,
        y,
        loss=mymlp.softmax_cross_entropy,
        numpy_step=no_bias,
        learning_rate=0.1,
        steps=3,
    )
    assert all(r.status == PASS for r in report.rows)  # the gradients are right ...
    t = report.trajectory
    assert t is not None and t.first_divergence == 1  # ... the update is not
    assert "bias" in (t.hint or "") and "SGD(lr=0.1" in (t.hint or "")


def test_unpairable_models_are_one_clear_error(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    with pytest.raises(ShapeError, match=r"cannot pair|no NumPy layer"):
        compare(
            mymlp.MyMLP(SIZES), mymlp.TorchMLP([7, 6, 4]), x, y, loss=mymlp.softmax_cross_entropy, steps=0
        )


def test_template_mlp_against_a_torch_mlp_ending_in_softmax() -> None:
    """The practical's template MLP (probabilities out) against torch with a Softmax leaf."""
    import torch

    for stem in ("modules", "mlp_numpy"):  # another test's user files of the same names must not stand in
        sys.modules.pop(stem, None)
    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "template"))
    try:
        import mlp_numpy
        import modules
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(1)
    model = mlp_numpy.MLP(6, [5], 3)
    for layer in model.layers:
        if hasattr(layer, "params"):
            for k in layer.params:
                layer.params[k] = rng.normal(size=layer.params[k].shape)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ELU(), torch.nn.Linear(5, 3), torch.nn.Softmax(dim=1)
    )
    x, y = rng.normal(size=(8, 6)), rng.integers(0, 3, size=8)
    report = compare(model, net, x, y, loss=modules.CrossEntropyModule(), steps=3, learning_rate=0.1)
    assert report.ok, report.format()
    assert [r.status for r in report.rows if r.status == FAIL] == []
