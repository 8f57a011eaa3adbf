"""``backproplab parity``: a NumPy model against its PyTorch twin, layer by layer and over training.

Builds the practical's NumPy MLP from the usual flags (or, with ``--model convnet``, the NumPy
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

from backproplab.cli.dataclass_args import add_dataclass_args, config_from_namespace
from backproplab.errors import ConfigError
from backproplab.training.mlp_config import DATASETS, MLPConfig, MLPFlagsMixin

#: Synthetic data: CIFAR-10's flattened size and class count.
SYNTHETIC_FEATURES, SYNTHETIC_CLASSES = 3072, 10
MODELS = ("mlp", "convnet")
#: Default batch sizes: the MLP trainer's, and a small one for the (slow, CPU) NumPy ConvNet.
DEFAULT_BATCH = {"mlp": 200, "convnet": 8}
#: The trajectory draws its batches from this many batches' worth of samples.
POOL_BATCHES = 4


def mlp_field(name: str, **overrides: Any) -> Any:
    """A dataclass field with the default and help of :class:`MLPConfig`'s field ``name``."""
    f = {f.name: f for f in dataclasses.fields(MLPConfig)}[name]
    return field(default=overrides.pop("default", f.default), metadata={**f.metadata, **overrides})


@dataclass
class ParityConfig(MLPFlagsMixin):
    """Flags of ``backproplab parity``: the MLP's (as ``train mlp-numpy``) plus the comparison's."""

    model: str = field(
        default="mlp",
        metadata={"help": "NumPy model to compare: the MLP or the PreAct ConvNet", "choices": MODELS},
    )
    dnn_hidden_units: str = mlp_field("dnn_hidden_units")
    loss_reduction: str = mlp_field("loss_reduction")
    batch_size: int | None = mlp_field(
        "batch_size",
        default=None,
        help=f"batch size (default: {DEFAULT_BATCH['mlp']} for the MLP, {DEFAULT_BATCH['convnet']} for the ConvNet)",
    )
    learning_rate: float = mlp_field("learning_rate")
    optimizer: str = mlp_field("optimizer")
    init: str = mlp_field("init")
    activation: str = mlp_field("activation")
    seed: int = mlp_field("seed")
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
    data_dir: str | None = mlp_field("data_dir")
    preprocess: str = mlp_field("preprocess")

    def validate(self) -> None:
        self.validate_mlp_flags()
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch_size must be a positive integer, got {self.batch_size}")
        if self.steps < 0:
            raise ConfigError(f"--steps must be 0 or more, got {self.steps}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ConfigError("--momentum and --weight_decay must be 0 or more")
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):
            raise ConfigError("--momentum and --nesterov apply to --optimizer sgd only")
        if self.nesterov and self.momentum <= 0:
            raise ConfigError("--nesterov needs a --momentum above 0")

    def optimizer_spec(self) -> Any:
        """The trajectory's optimizer with its hyperparameters."""
        from backproplab.verify.trajectory import OptimizerSpec

        return OptimizerSpec(
            self.optimizer,
            lr=self.learning_rate,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
        )


def synthetic_data(
    n: int,
    rng: np.random.Generator,
    n_features: int = SYNTHETIC_FEATURES,
    num_classes: int = SYNTHETIC_CLASSES,
) -> tuple[np.ndarray, np.ndarray, int]:
    """x ~ N(0, 1) float32 (n, n_features) and uniform random labels (n,): learnable by memorising."""
    x = rng.standard_normal((n, n_features), dtype=np.float32)  # (n, D)
    y = rng.integers(0, num_classes, size=n, dtype=np.int64)  # (n,)
    return x, y, num_classes


def mlp_data(
    dataset: str | None,
    data_dir: str | None,
    preprocess: str,
    n: int,
    rng: np.random.Generator,
    layout: str = "flat",
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(x float32, y (n,), num_classes, description): ``n`` random training samples, flat (n, D)
    or images (n, C, H, W) for ``layout="NCHW"``.

    ``dataset=None`` gives :func:`synthetic_data` (of CIFAR-10's image shape for NCHW).
    """
    if dataset is None:
        x, y, c = synthetic_data(n, rng)
        if layout == "NCHW":
            x = x.reshape(n, 3, 32, 32)  # (n, C, H, W)
        return x, y, c, f"synthetic data: {n} samples of shape {x.shape[1:]}, N(0,1), {c} random classes"
    from backproplab.data import load_dataset
    from backproplab.training.prepared_data import prepare

    ds = load_dataset(dataset, data_dir)
    data = prepare(ds, preprocess, layout=layout)
    idx = rng.choice(len(data.x_train), size=min(n, len(data.x_train)), replace=False)
    return (
        data.x_train[idx],
        data.y_train[idx],
        data.num_classes,
        f"{ds.name}: {len(idx)} training samples from {ds.source}",
    )


def run_parity(cfg: ParityConfig) -> tuple[Any, str]:
    """Build the MLP and its twin as configured and compare them; return (report, data description)."""
    from backproplab import nn
    from backproplab.verify.parity import compare_models, compare_trajectories

    rng = np.random.default_rng(cfg.seed)
    batch_size = cfg.batch_size or DEFAULT_BATCH[cfg.model]
    n = batch_size * (POOL_BATCHES if cfg.steps else 1)
    layout = "NCHW" if cfg.model == "convnet" else "flat"
    x, y, num_classes, desc = mlp_data(cfg.dataset, cfg.data_dir, cfg.preprocess, n, rng, layout)
    model: nn.Module
    if cfg.model == "convnet":
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
    return cfg.dtype or ("float64" if cfg.model == "convnet" else "float32")


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
            if cfg.model == "convnet"
            else f"NumPy MLP [{cfg.dnn_hidden_units}] ({cfg.activation}, init {cfg.init})"
        )
        print(f"{what}, loss reduction {cfg.loss_reduction}, {x_dtype(cfg)}, vs its PyTorch twin")
        print(f"data: {desc}")
        print(format_table(report))
    return 0 if report.ok else 1
