"""The one optimizer factory: an optimizer by name with torch.optim's hyperparameters, built for the
NumPy engine (:mod:`backproplab.nn.optim`) or for PyTorch (imported only when asked for)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backproplab import nn
from backproplab.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: Optimizer names; the NumPy engine has all but ``adamw``.
OPTIMIZERS = ("sgd", "adam", "adamw")
NUMPY_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer and its hyperparameters, with torch.optim's meaning (and defaults).

    ``name`` is "sgd" (``lr``, ``momentum``, ``dampening``, ``nesterov``, ``weight_decay``),
    "adam" (``lr``, ``betas``, ``eps``, ``weight_decay``: L2 added to the gradient) or "adamw"
    (the same, with decoupled weight decay; PyTorch only).
    """

    name: str
    lr: float = 1e-3
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.name!r}")
        if self.name != "sgd" and (self.momentum or self.nesterov):
            raise ConfigError(f"--momentum and --nesterov apply to --optimizer sgd only, not {self.name}")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("--nesterov needs a --momentum above 0 (and zero dampening)")

    def describe(self) -> str:
        """ "SGD(lr=0.01, momentum=0.9, nesterov=True)": the name and every non-default setting."""
        defaults = OptimizerSpec(self.name)
        keys = (
            ("momentum", "dampening", "nesterov", "weight_decay")
            if self.name == "sgd"
            else ("betas", "eps", "weight_decay")
        )
        parts = [f"lr={self.lr:g}"]
        for k in keys:
            v = getattr(self, k)
            if v != getattr(defaults, k):
                parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
        return f"{ {'sgd': 'SGD', 'adam': 'Adam', 'adamw': 'AdamW'}[self.name] }({', '.join(parts)})"

    def numpy(self, params: list[nn.Parameter]) -> nn.optim.Optimizer:
        """The backproplab optimizer over ``params``."""
        if self.name == "sgd":
            return nn.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                weight_decay=self.weight_decay, nesterov=self.nesterov,
            )  # fmt: skip
        if self.name == "adam":
            return nn.optim.Adam(
                params, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay
            )
        raise ConfigError(f"the NumPy engine has no {self.name!r} optimizer; use one of {NUMPY_OPTIMIZERS}")

    def torch(self, params: Any) -> torch.optim.Optimizer:
        """The torch.optim optimizer over ``params`` (tensors or parameter groups)."""
        import torch

        if self.name == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                weight_decay=self.weight_decay, nesterov=self.nesterov,
            )  # fmt: skip
        cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
        return cls(params, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)
