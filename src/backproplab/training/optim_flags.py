"""The optimizer and learning-rate schedule flags, one vocabulary for every trainer that has them
(``mlp-torch``, ``convnet``, ``convnet-numpy``): ``--optimizer``, ``--momentum``, ``--nesterov``,
``--weight_decay``, ``--lr_schedule {constant,step,cosine,onecycle}`` with ``--lr_step_size`` /
``--lr_gamma`` (step) and ``--schedule_steps`` (cosine, onecycle)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from backproplab.errors import ConfigError
from backproplab.training.config_checks import check_fraction, check_non_negative, check_positive
from backproplab.training.optimizers import OptimizerSpec

#: ``--lr_schedule`` values: constant; StepLR (lr0 * gamma ** (t // step_size)); cosine decay and
#: one-cycle (linear warm-up, then linear decay to 0) over ``--schedule_steps``.
SCHEDULES = ("constant", "step", "cosine", "onecycle")

Self = TypeVar("Self", bound="OptimFlags")


@dataclass
class OptimFlags:
    """Flags of the optimizer's hyperparameters and the schedule; a trainer's config inherits them
    (and may override a default, as the ConvNets do with Nesterov momentum 0.9)."""

    if TYPE_CHECKING:  # the trainer's own fields, read here (not fields of this mixin)

        @property
        def learning_rate(self) -> float: ...
        @property
        def optimizer(self) -> str: ...
        @property
        def max_steps(self) -> int: ...

    momentum: float = field(default=0.0, metadata={"help": "SGD momentum (--optimizer sgd)"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum (--optimizer sgd)"})
    weight_decay: float = field(
        default=0.0, metadata={"help": "weight decay (L2 added to the gradient; decoupled for adamw)"}
    )
    lr_schedule: str = field(
        default="constant",
        metadata={
            "help": "learning-rate schedule: constant, step (--lr_step_size, --lr_gamma), or cosine / "
            "onecycle over --schedule_steps",
            "choices": SCHEDULES,
        },
    )
    schedule_steps: int | None = field(
        default=None, metadata={"help": "length of the cosine/onecycle schedule (default: --max_steps)"}
    )
    lr_step_size: int | None = field(
        default=None,
        metadata={"help": "step schedule: multiply the learning rate by --lr_gamma every this many steps"},
    )
    lr_gamma: float = field(
        default=0.1,
        metadata={"help": "step schedule factor (torch's default 0.1; the report's recipe uses 0.5)"},
    )

    def validate_optim_flags(self) -> None:
        """Raise :class:`ConfigError` for an impossible combination or value."""
        check_positive(self, "lr_gamma", "schedule_steps", "lr_step_size")
        check_non_negative(self, "weight_decay")
        check_fraction(self, "momentum")
        if self.lr_schedule == "step" and self.lr_step_size is None:
            raise ConfigError(
                "--lr_schedule step needs --lr_step_size N (multiply by --lr_gamma every N steps)"
            )
        if self.lr_schedule != "step" and self.lr_step_size is not None:
            raise ConfigError(
                f"--lr_step_size applies to --lr_schedule step, not {self.lr_schedule}; add --lr_schedule step"
            )
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):
            raise ConfigError(
                f"--momentum and --nesterov apply to --optimizer sgd only; use --momentum 0 --no-nesterov "
                f"with --optimizer {self.optimizer}"
            )
        if self.nesterov and self.momentum <= 0:
            raise ConfigError("--nesterov needs a --momentum above 0")

    def optimizer_spec(self) -> OptimizerSpec:
        """The optimizer these flags describe."""
        sgd = self.optimizer == "sgd"
        return OptimizerSpec(
            self.optimizer,
            lr=self.learning_rate,
            momentum=self.momentum if sgd else 0.0,
            nesterov=self.nesterov if sgd else False,
            weight_decay=self.weight_decay,
        )

    def with_fixed_schedule(self: Self, resuming: bool) -> Self:
        """The config with ``schedule_steps`` fixed to ``max_steps`` for a new run (so that extending
        the run with ``--resume --max_steps`` keeps its schedule)."""
        if self.schedule_steps is None and not resuming:
            return dataclasses.replace(self, schedule_steps=self.max_steps)
        return self

    def schedule_length(self) -> int:
        return self.schedule_steps or self.max_steps
