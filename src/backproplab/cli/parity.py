"""``backproplab parity``: a NumPy model against its PyTorch twin, layer by layer and over training.

Builds the practical's NumPy MLP from the usual flags (or, with ``--model convnet-numpy``, the NumPy
PreAct ConvNet), its torch twin with the same weights, and
prints the per-layer parity table (forward outputs, input gradients, parameter gradients), the
first layer that diverges with a likely cause, and the step-by-step comparison of ``--steps``
training steps with matching optimizers. The reference is PyTorch's default: cross-entropy with
mean reduction, so ``backproplab parity --loss_reduction sum`` shows the NumPy loss and gradient
to be batch-size times too large and points at the loss.

Without ``--dataset`` it runs offline in seconds on synthetic data of CIFAR-10's shape
(3072 standard-normal features, 10 random classes). Exit code 0 when parity holds, 1 when a
divergence is found (2 for a bad flag, as every command).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backproplab.cli.dataclass_args import add_dataclass_args, config_from_namespace, field_like
from backproplab.errors import ConfigError
from backproplab.training.config_checks import check_fraction, check_non_negative
from backproplab.training.mlp_config import DATASETS, MLPConfig, MLPFlagsMixin
from backproplab.training.optimizers import OptimizerSpec
from backproplab.training.sample_batch import sample_batch

#: Synthetic data: CIFAR-10's flattened size and class count.
#: The NumPy trainers' models, by the trainers' names (each compared with its PyTorch twin).
MODELS = ("mlp-numpy", "convnet-numpy")
#: Default batch sizes: the MLP trainer's, and a small one for the (slow, CPU) NumPy ConvNet.
DEFAULT_BATCH = {"mlp-numpy": 200, "convnet-numpy": 8}
#: The trajectory draws its batches from this many batches' worth of samples.
POOL_BATCHES = 4


@dataclass
class ParityConfig(MLPFlagsMixin):
    """Flags of ``backproplab parity``: the MLP's (as ``train mlp-numpy``) plus the comparison's."""

    model: str = field(
        default="mlp-numpy",
        metadata={
            "help": "NumPy model to compare with its PyTorch twin: the MLP or the PreAct ConvNet of the trainer of that name",
            "choices": MODELS,
        },
    )
    dnn_hidden_units: str = field_like(MLPConfig, "dnn_hidden_units")
    loss_reduction: str = field_like(MLPConfig, "loss_reduction")
    batch_size: int | None = field_like(
        MLPConfig,
        "batch_size",
        default=None,
        help=f"batch size (default: {DEFAULT_BATCH['mlp-numpy']} for the MLP, {DEFAULT_BATCH['convnet-numpy']} for the ConvNet)",
    )
    learning_rate: float = field_like(MLPConfig, "learning_rate")
    optimizer: str = field_like(MLPConfig, "optimizer")
    init: str = field_like(MLPConfig, "init")
    activation: str = field_like(MLPConfig, "activation")
    seed: int = field_like(MLPConfig, "seed")
    dtype: str | None = field(
        default=None,
        metadata={
            "help": "precision of both models (default: float32 for the MLP; float64 for the ConvNet, whose "
            "19 BatchNorms amplify float32 rounding past any useful tolerance end to end)",
            "choices": ("float32", "float64"),
        },
    )
    momentum: float = field(
        default=0.0, metadata={"help": "SGD momentum of the trajectory (torch's meaning)"}
    )
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum (SGD, needs --momentum)"})
    weight_decay: float = field(
        default=0.0, metadata={"help": "L2 weight decay added to the gradient (SGD and Adam, as torch.optim)"}
    )
    steps: int = field(default=20, metadata={"help": "training steps compared step by step (0: none)"})
    json: bool = field(default=False, metadata={"help": "print the report as JSON"})
    dataset: str | None = field(
        default=None,
        metadata={"help": "real data set; default: synthetic data of CIFAR-10's shape", "choices": DATASETS},
    )
    data_dir: str | None = field_like(MLPConfig, "data_dir")
    preprocess: str = field_like(MLPConfig, "preprocess")

    def validate(self) -> None:
        self.validate_mlp_flags()
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch_size must be a positive integer, got {self.batch_size}")
        if self.steps < 0:
            raise ConfigError(f"--steps must be 0 or more, got {self.steps}")
        check_fraction(self, "momentum")
        check_non_negative(self, "weight_decay")
        self.optimizer_spec()  # raises ConfigError for momentum or Nesterov without SGD

    def optimizer_spec(self) -> OptimizerSpec:
        """The trajectory's optimizer with its hyperparameters."""
        return OptimizerSpec(
            self.optimizer,
            lr=self.learning_rate,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
        )


def run_parity(cfg: ParityConfig) -> tuple[Any, str]:
    """Build the MLP and its twin as configured and compare them; return (report, data description)."""
    from backproplab import nn
    from backproplab.verify.parity import compare_models, compare_trajectories

    rng = np.random.default_rng(cfg.seed)
    batch_size = cfg.batch_size or DEFAULT_BATCH[cfg.model]
    n = batch_size * (POOL_BATCHES if cfg.steps else 1)
    layout = "NCHW" if cfg.model == "convnet-numpy" else "flat"
    x, y, num_classes, desc = sample_batch(cfg.dataset, cfg.data_dir, cfg.preprocess, n, rng, layout)
    model: nn.Module
    if cfg.model == "convnet-numpy":
        model = nn.ConvNet(x.shape[1], num_classes, rng=rng)
    else:
        model = nn.MLP(
            x.shape[1],
            cfg.hidden_units,
            num_classes,
            activation=cfg.activation,
            init_scheme=cfg.init,
            rng=rng,
        )
    dtype = x_dtype(cfg)
    model.to(np.dtype(dtype))
    x = x.astype(dtype)
    loss = nn.SoftmaxCrossEntropy(cfg.loss_reduction)
    b = min(batch_size, len(x))
    report = compare_models(model, x=x[:b], y=y[:b], loss=loss)
    if cfg.steps:
        report.trajectory = compare_trajectories(
            model,
            x=x,
            y=y,
            rng=rng,
            loss=loss,
            optimizer=cfg.optimizer_spec(),
            batch_size=b,
            steps=cfg.steps,
        )
    return report, desc


def x_dtype(cfg: ParityConfig) -> str:
    """The precision the comparison runs in."""
    return cfg.dtype or ("float64" if cfg.model == "convnet-numpy" else "float32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_args(parser, ParityConfig)


def main(args: argparse.Namespace) -> int:
    from backproplab.verify.parity import format_table

    cfg = config_from_namespace(ParityConfig, args)
    report, desc = run_parity(cfg)
    if cfg.json:
        print(json.dumps({"config": dataclasses.asdict(cfg), "data": desc, **report.to_dict()}, indent=2))
    else:
        what = (
            "NumPy PreAct ConvNet"
            if cfg.model == "convnet-numpy"
            else f"NumPy MLP [{cfg.dnn_hidden_units}] ({cfg.activation}, init {cfg.init})"
        )
        print(f"{what}, loss reduction {cfg.loss_reduction}, {x_dtype(cfg)}, vs its PyTorch twin")
        print(f"data: {desc}")
        print(format_table(report))
    return 0 if report.ok else 1
