"""The practical's multi-layer perceptron in NumPy."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from backproplab.nn.activations import ELU, ReLU, Tanh
from backproplab.nn.linear import Linear
from backproplab.nn.module import Module, Sequential

ACTIVATIONS: dict[str, type[Module]] = {"elu": ELU, "relu": ReLU, "tanh": Tanh}


class MLP(Module):
    """Linear -> activation -> ... -> Linear, returning logits (N, n_classes).

    ``n_hidden`` lists the hidden widths; an empty list gives multinomial logistic regression.
    The layers live in ``self.layers`` (a :class:`Sequential`), so parameter names are
    ``layers.0.weight``, ``layers.0.bias``, ``layers.2.weight``, ... exactly as in
    :class:`backproplab.torch_models.TorchMLP`, and weights load across with ``load_state_dict``.

    ``init_scheme`` is ``"practical"`` (weights ~ N(0, 1e-4^2), zero bias: the practical's default),
    ``"torch"`` (PyTorch's default Linear init) or ``"kaiming"``; each layer draws its weights once,
    in layer order, from ``rng`` (:meth:`Linear.reset_parameters`).
    ``input_grad=False`` skips the gradient with respect to the input (data needs none), which
    saves the largest matmul of the backward pass; ``backward`` then returns None.
    The practical's loss head, Softmax followed by CrossEntropy on probabilities, is kept outside
    the model so the model's output matches ``torch.nn``'s convention (logits).
    """

    def __init__(
        self,
        n_inputs: int,
        n_hidden: Sequence[int],
        n_classes: int,
        *,
        activation: str = "elu",
        init_scheme: str = "practical",
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float32,
        input_grad: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        rng = rng if rng is not None else np.random.default_rng()
        self.n_inputs, self.n_hidden, self.n_classes = n_inputs, list(n_hidden), n_classes
        widths = [n_inputs, *self.n_hidden, n_classes]
        mods: list[Module] = []
        for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
            nonlin = "linear" if i == len(widths) - 2 else ("tanh" if activation == "tanh" else "relu")
            mods.append(
                Linear(w_in, w_out, rng=rng, dtype=dtype, init_scheme=init_scheme, nonlinearity=nonlin)
            )
            if i < len(widths) - 2:
                mods.append(ACTIVATIONS[activation]())
        first = mods[0]
        assert isinstance(first, Linear)
        first.needs_input_grad = input_grad
        self.layers = Sequential(*mods)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.layers(x)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        return self.layers.backward(dout)
