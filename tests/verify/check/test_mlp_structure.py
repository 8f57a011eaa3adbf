"""The architecture check of an ``MLP(n_inputs, n_hidden, n_classes)`` layer list."""

from __future__ import annotations

import numpy as np

from backproplab.verify.mlp_structure import mlp_structure_problems
from backproplab.verify.protocol import LayerView, model_view


class LinearModule:
    def __init__(self, n_in: int, n_out: int) -> None:
        self.params = {"weight": np.zeros((n_out, n_in)), "bias": np.zeros(n_out)}
        self.grads = {"weight": np.zeros((n_out, n_in)), "bias": np.zeros(n_out)}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout


class ELUModule(LinearModule):
    def __init__(self) -> None:
        self.params, self.grads = {}, {}


class SoftMaxModule(ELUModule):
    pass


def views(*layers: object) -> list[LayerView]:
    class Net:
        pass

    net = Net()
    net.layers = list(layers)  # type: ignore[attr-defined]
    return model_view(net).layers


def test_the_practicals_architecture_has_no_problems() -> None:
    layers = views(
        LinearModule(6, 5), ELUModule(), LinearModule(5, 4), ELUModule(), LinearModule(4, 3), SoftMaxModule()
    )
    assert mlp_structure_problems(layers, 6, [5, 4], 3) == []
    # without the softmax (a loss on logits) too; CS231n's (in, out) weight layout too
    assert mlp_structure_problems(layers[:-1], 6, [5, 4], 3) == []
    transposed = LinearModule(5, 6)
    transposed.params["weight"] = np.zeros((6, 5))
    assert mlp_structure_problems(views(transposed, ELUModule(), LinearModule(5, 3)), 6, [5], 3) == []


def test_each_kind_of_wrong_architecture_is_named() -> None:
    cases = {
        "2 Linear layers where MLP(6, [5, 4], 3) needs 3": views(
            LinearModule(6, 5), ELUModule(), LinearModule(5, 3)
        ),
        "layers[2] (LinearModule) has a 4x5 weight where 5 -> 3 is expected": views(
            LinearModule(6, 5), ELUModule(), LinearModule(5, 4)
        ),
        "no activation between layers[0] (LinearModule) and layers[1] (LinearModule)": views(
            LinearModule(6, 5), LinearModule(5, 3)
        ),
        "an activation (layers[3] (ELUModule)) after the last Linear layer": views(
            LinearModule(6, 5), ELUModule(), LinearModule(5, 3), ELUModule(), SoftMaxModule()
        ),
        "softmax as layers[1] (SoftMaxModule): only one, as the last layer": views(
            LinearModule(6, 5), SoftMaxModule(), LinearModule(5, 3)
        ),
    }
    for expected, layers in cases.items():
        hidden = [5, 4] if expected.startswith("2 Linear") else [5]
        problems = mlp_structure_problems(layers, 6, hidden, 3)
        assert any(expected in p for p in problems), (expected, problems)
