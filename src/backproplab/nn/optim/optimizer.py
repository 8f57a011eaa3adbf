"""Base class of the NumPy optimizers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from backproplab.nn.parameter import Parameter


class Optimizer:
    """Holds the parameters, the learning rate ``lr`` and per-parameter ``state``.

    ``step()`` updates every parameter whose grad is not None, in place; ``zero_grad()`` sets the
    grads to None, as ``torch.optim.Optimizer.zero_grad(set_to_none=True)``.
    """

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = float(lr)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The learning rate and per-parameter state (scratch buffers, keys starting with _, left out)."""
        return {
            "lr": self.lr,
            "state": [{k: np.copy(v) for k, v in s.items() if not k.startswith("_")} for s in self.state],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if len(sd["state"]) != len(self.params):
            raise ValueError(
                f"optimizer state has {len(sd['state'])} entries for {len(self.params)} parameters"
            )
        self.lr = float(sd["lr"])
        self.state = [{k: np.copy(v) for k, v in s.items()} for s in sd["state"]]
