"""``compare`` on the other ways users write models: attribute names given by a parameter map,
Dropout in training and evaluation mode, float32 arrays, a loss object that caches its forward,
one-hot targets, a layer bug seen by the loss, and a wrong learning rate in the user's update."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backproplab.errors import ShapeError
from backproplab.verify.check import FAIL
from backproplab.verify.compare import compare

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "handwritten"))
import mymlp

SIZES = [7, 6, 5, 4]
N = 16
P_DROP = 0.4


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, SIZES[0])), rng.integers(0, SIZES[-1], size=N)


# ---------------------------------------------------------------------------- a parameter map
class Affine:
    """Parameters under names no convention knows: ``weights`` (in, out) and ``offsets``."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator) -> None:
        self.weights = rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_in, n_out))
        self.offsets = rng.normal(0.0, 0.1, size=n_out)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.weights + self.offsets

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.grad_weights = self.x.T @ dout
        self.grad_offsets = dout.sum(axis=0)
        return dout @ self.weights.T


class AffineNet:
    def __init__(self, sizes: list[int]) -> None:
        rng = np.random.default_rng(3)
        self.layers: list[Any] = []
        for a, b in itertools.pairwise(sizes):
            self.layers += [Affine(a, b, rng), mymlp.Relu()]
        self.layers.pop()


PARAM_MAP = {"weight": ("weights", "grad_weights"), "bias": ("offsets", "grad_offsets")}


def test_a_parameter_map_for_the_whole_model_skips_parameterless_layers(
    batch: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = batch
    report = compare(AffineNet(SIZES), mymlp.TorchMLP(SIZES), x, y, loss=mymlp.softmax_cross_entropy,
                     param_map=PARAM_MAP, learning_rate=0.1, steps=4)  # fmt: skip
    assert report.ok, report.format()
    assert "6 gradients agree" in report.format()


def test_a_parameter_the_map_misses_is_one_clear_error(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    with pytest.raises(ShapeError, match=r"net\.0 \(Linear\) has parameters \['net\.0\.bias'\].*param_map"):
        compare(AffineNet(SIZES), mymlp.TorchMLP(SIZES), x, y, loss=mymlp.softmax_cross_entropy,
                param_map={"weight": PARAM_MAP["weight"]}, steps=0)  # fmt: skip


# ---------------------------------------------------------------------------- dropout
class Dropout:
    """Inverted dropout with its own generator; ``training`` switches it off."""

    def __init__(
        self, p: float, rng: np.random.Generator, scale: bool = True, mask_grad: bool = True
    ) -> None:
        self.p, self.rng, self.scale, self.mask_grad = p, rng, scale, mask_grad
        self.training = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:
            return x
        keep = self.rng.random(x.shape) >= self.p
        self.mask = keep / (1 - self.p) if self.scale else keep.astype(float)
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if not self.training:
            return dout
        return dout * self.mask if self.mask_grad else dout / (1 - self.p)


def dropout_models(**dropout_kw: Any) -> tuple[mymlp.MyMLP, torch.nn.Module]:
    model = mymlp.MyMLP(SIZES)
    model.layers.insert(2, Dropout(P_DROP, np.random.default_rng(5), **dropout_kw))  # after the first ReLU
    torch.manual_seed(0)
    net = mymlp.TorchMLP(SIZES)
    mods = list(net.net)
    net.net = torch.nn.Sequential(*mods[:2], torch.nn.Dropout(P_DROP), *mods[2:])
    return model, net


def test_dropout_in_training_mode_shares_the_numpy_masks(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    model, net = dropout_models()
    report = compare(model, net, x, y, loss=mymlp.softmax_cross_entropy, numpy_step=mymlp.sgd_step,
                     learning_rate=0.1, steps=5)  # fmt: skip
    assert report.ok, report.format()
    assert any("drops what the NumPy layer dropped" in n for n in report.notes)


def test_dropout_in_evaluation_mode_stays_off_on_both_sides(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    model, net = dropout_models()
    model.layers[2].training = False
    report = compare(model, net.eval(), x, y, loss=mymlp.softmax_cross_entropy, learning_rate=0.1, steps=3)
    assert report.ok, report.format()
    assert not report.notes


def test_a_numpy_dropout_left_in_training_mode_is_named(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    model, net = dropout_models()  # the NumPy layer drops, the torch model is in eval()
    report = compare(model, net.eval(), x, y, loss=mymlp.softmax_cross_entropy, steps=0)
    first = report.first_divergence
    assert first is not None and first.module == "layers[2] (Dropout)"
    assert "while net.2 is in evaluation mode (Dropout off)" in first.detail
    loss_row = next(r for r in report.rows if r.check == "end to end: loss")
    assert (
        "layers[2] (Dropout) already fails above (vs net.2 (Dropout): output vs PyTorch)" in loss_row.detail
    )


@pytest.mark.parametrize(
    ("bug", "check"), [({"mask_grad": False}, "input grad"), ({"scale": False}, "output")]
)
def test_a_dropout_bug_is_found_at_the_dropout(
    batch: tuple[np.ndarray, np.ndarray], bug: dict[str, bool], check: str
) -> None:
    x, y = batch
    model, net = dropout_models(**bug)
    report = compare(model, net, x, y, loss=mymlp.softmax_cross_entropy, steps=0)
    first = report.first_divergence
    assert first is not None and first.module == "layers[2] (Dropout)", report.format()
    assert first.check.endswith(f"{check} vs PyTorch")


# ---------------------------------------------------------------------------- float32
def test_a_float32_model_is_held_to_float32_tolerances(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    model = mymlp.MyMLP(SIZES)
    for layer in model.layers:
        if isinstance(layer, mymlp.Dense):
            layer.W, layer.b = layer.W.astype(np.float32), layer.b.astype(np.float32)
    report = compare(model, mymlp.TorchMLP(SIZES), x.astype(np.float32), y, loss=mymlp.softmax_cross_entropy,
                     numpy_step=mymlp.sgd_step, learning_rate=0.1, steps=5)  # fmt: skip
    assert report.ok, report.format()
    assert report.trajectory is not None and report.trajectory.loss_rtol == 1e-3
    assert any("float32" in n for n in report.notes)


# ---------------------------------------------------------------------------- losses
class CachingCrossEntropy:
    """forward(logits, y) -> loss caches the probabilities; backward() -> dlogits."""

    def __init__(self, onehot: bool = False) -> None:
        self.onehot = onehot

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float:
        z = logits - logits.max(axis=1, keepdims=True)
        self.p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        if self.onehot:  # one-hot rows (N, C): an index vector (N,) does not broadcast against (N, C)
            self.t = y
        else:
            self.t = np.zeros_like(self.p)
            self.t[np.arange(len(y)), y] = 1.0
        return float(-(self.t * np.log(self.p)).sum(axis=1).mean())

    def backward(self) -> np.ndarray:
        return (self.p - self.t) / len(self.p)


@pytest.mark.parametrize("onehot", [False, True])
def test_a_loss_that_caches_its_forward_is_called_its_way(
    batch: tuple[np.ndarray, np.ndarray], onehot: bool
) -> None:
    x, y = batch
    report = compare(mymlp.MyMLP(SIZES), mymlp.TorchMLP(SIZES), x, y, loss=CachingCrossEntropy(onehot),
                     numpy_step=mymlp.sgd_step, learning_rate=0.1, steps=3)  # fmt: skip
    assert report.ok, report.format()


class NoBiasInForward(mymlp.Dense):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W


def test_the_loss_row_points_at_the_layer_whose_output_differs(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    model = mymlp.MyMLP(SIZES)
    old = model.layers[2]
    model.layers[2] = bad = NoBiasInForward.__new__(NoBiasInForward)
    bad.W, bad.b = old.W, np.random.default_rng(1).normal(size=old.b.shape)
    report = compare(model, mymlp.TorchMLP(SIZES), x, y, loss=mymlp.softmax_cross_entropy, steps=0)
    first = report.first_divergence
    assert first is not None and first.module == "layers[2] (NoBiasInForward)"
    loss_row = next(r for r in report.rows if r.check == "end to end: loss")
    assert loss_row.status == FAIL and "layers[2] (NoBiasInForward) already fails above" in loss_row.detail
    assert loss_row.where == first.where and __file__ in loss_row.where


def test_the_learning_rate_applied_twice_in_the_users_update_is_named(
    batch: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = batch

    def lr_squared(model: Any, lr: float) -> None:
        for layer in model.layers:
            if isinstance(layer, mymlp.Dense):
                layer.W -= lr * lr * layer.dW
                layer.b -= lr * lr * layer.db

    report = compare(mymlp.MyMLP(SIZES), mymlp.TorchMLP(SIZES), x, y, loss=mymlp.softmax_cross_entropy,
                     numpy_step=lr_squared, learning_rate=0.1, steps=3)  # fmt: skip
    t = report.trajectory
    assert t is not None and t.first_divergence == 1
    assert "the learning rate applied twice (lr^2 = 0.01 instead of lr = 0.1)" in (t.hint or ""), t.hint
