"""The practical's MLP in PyTorch, the twin of :class:`backproplab.nn.MLP`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from backproplab.nn.init import PRACTICAL_STD
from backproplab.torch_models.init import torch_default_

ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


class TorchMLP(nn.Module):
    """Linear -> [BatchNorm1d] -> activation -> ... -> Linear, returning logits (N, n_classes).

    Without batchnorm the parameter names (``layers.0.weight``, ``layers.2.weight``, ...) equal
    :class:`backproplab.nn.MLP`'s, so a state dict loads across both ways with no transposes.
    ``init_scheme``: ``"practical"`` (weights ~ N(0, 1e-4^2), zero bias), ``"torch"`` (PyTorch's
    default Linear init) or ``"kaiming"`` (kaiming_normal_, zero bias); draws use ``generator``.
    """

    def __init__(
        self,
        n_inputs: int,
        n_hidden: Sequence[int],
        n_classes: int,
        *,
        activation: str = "elu",
        batchnorm: bool = False,
        init_scheme: str = "practical",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        widths = [n_inputs, *n_hidden, n_classes]
        mods: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
            lin = nn.Linear(w_in, w_out)
            last = i == len(widths) - 2
            _init_linear(
                lin,
                init_scheme,
                generator,
                "linear" if last else ("tanh" if activation == "tanh" else "relu"),
            )
            mods.append(lin)
            if not last:
                if batchnorm:
                    mods.append(nn.BatchNorm1d(w_out))
                mods.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out


@torch.no_grad()
def _init_linear(lin: nn.Linear, scheme: str, generator: torch.Generator | None, nonlinearity: str) -> None:
    if scheme == "practical":
        lin.weight.normal_(0.0, PRACTICAL_STD, generator=generator)
        lin.bias.zero_()
    elif scheme == "torch":
        torch_default_(lin, generator)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(lin.weight, nonlinearity=nonlinearity, generator=generator)  # type: ignore[arg-type]
        lin.bias.zero_()
    else:
        raise ValueError(f"unknown init scheme {scheme!r}")
