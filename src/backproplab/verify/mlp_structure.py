"""The layer list of an ``MLP(n_inputs, n_hidden, n_classes)`` against the architecture it must have.

The practical's MLP (and any plain classifier MLP) is

    Linear(n_inputs, h_1), act, Linear(h_1, h_2), act, ..., Linear(h_k, n_classes) [, SoftMax]

Parity against a PyTorch twin cannot see a wrong architecture, because the twin is built from
the user's own layer list. So this check reads the list itself: the Linear layers' count and
widths (from their weight shapes, in either layout), one activation between consecutive Linear
layers (two in a row collapse into one linear map), none after the last (an ELU or ReLU on the
class scores bounds them from below before the softmax), and a softmax, if any, only at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from backproplab.verify.protocol import ACTIVATION_KINDS, LayerView


def _widths(view: LayerView) -> tuple[int, ...] | None:
    weight = view.param("weight")
    return None if weight is None or weight.value.ndim != 2 else tuple(int(n) for n in weight.value.shape)


def mlp_structure_problems(
    layers: Sequence[LayerView], n_inputs: int, n_hidden: Sequence[int], n_classes: int
) -> list[str]:
    """What is wrong with ``layers`` as ``MLP(n_inputs, n_hidden, n_classes)`` (empty when nothing)."""
    problems: list[str] = []
    linear = [i for i, v in enumerate(layers) if v.kind == "linear"]
    sizes = [n_inputs, *n_hidden, n_classes]
    expected = list(itertools.pairwise(sizes))
    if len(linear) != len(expected):
        problems.append(
            f"{len(linear)} Linear layers where MLP({n_inputs}, {list(n_hidden)}, {n_classes}) needs "
            f"{len(expected)} (one per hidden layer, plus the output layer)"
        )
    else:
        for i, (a, b) in zip(linear, expected, strict=True):
            w = _widths(layers[i])
            if w is not None and sorted(w) != sorted((a, b)):
                problems.append(f"{layers[i].name} has a {w[0]}x{w[1]} weight where {a} -> {b} is expected")
    for i, j in itertools.pairwise(linear):
        if not any(layers[k].kind in ACTIVATION_KINDS for k in range(i + 1, j)):
            problems.append(
                f"no activation between {layers[i].name} and {layers[j].name}: two linear maps in a row "
                "are one linear map"
            )
    if linear:
        last = linear[-1]
        after = [k for k in range(last + 1, len(layers)) if layers[k].kind in ACTIVATION_KINDS]
        if after:
            k = after[0]
            problems.append(
                f"an activation ({layers[k].name}) after the last Linear layer: the output layer "
                "must be linear, its scores go straight to the softmax (an ELU or ReLU there bounds them from below)"
            )
    softmax = [k for k, v in enumerate(layers) if v.kind == "softmax"]
    if len(softmax) > 1 or (softmax and softmax[-1] != len(layers) - 1):
        problems.append(
            f"softmax as {', '.join(layers[k].name for k in softmax)}: only one, as the last layer "
            "(it turns the final scores into probabilities)"
        )
    return problems
