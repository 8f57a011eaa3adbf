"""``backproplab doctor``: why will this MLP not learn? Checks before (or during) training.

Builds the practical's MLP from the usual flags, in the NumPy engine (``--model mlp-numpy``) or
in PyTorch (``--model mlp-torch``), optionally trains it ``--warmup_steps`` steps, and runs the
checks of :mod:`backproplab.verify.doctor` on one batch: initial loss against ln(C), non-finite
values, gradient-norm scaling with the batch size (flags sum reduction), dead or saturated
activations, update/weight ratios (flags vanishing and exploding updates) and whether it can
overfit one batch in ``--overfit_steps`` steps. Each prints PASS, WARN or FAIL with a reason and
a fix; the per-layer statistics are drawn into ``--plot`` (default ``<out>/doctor.png``) and the
report is saved as ``<out>/doctor.json`` with the resolved config.

Without ``--dataset`` it uses synthetic data of CIFAR-10's shape (random labels, which a
network can still memorise). Exit code 0 when no check fails, 1 when one does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from backproplab.cli.dataclass_args import add_dataclass_args, config_from_namespace, field_like
from backproplab.errors import ConfigError
from backproplab.training.mlp_config import DATASETS, MLPConfig, MLPFlagsMixin
from backproplab.training.optimizers import OptimizerSpec
from backproplab.training.sample_batch import sample_batch
from backproplab.verify import doctor as D

MODELS = ("mlp-numpy", "mlp-torch")


@dataclass
class DoctorConfig(MLPFlagsMixin):
    """Flags of ``backproplab doctor``."""

    model: str = field(
        default="mlp-numpy", metadata={"help": "which implementation to examine", "choices": MODELS}
    )
    dnn_hidden_units: str = field_like(MLPConfig, "dnn_hidden_units")
    loss_reduction: str = field_like(MLPConfig, "loss_reduction")
    batch_size: int = field_like(MLPConfig, "batch_size")
    learning_rate: float = field_like(MLPConfig, "learning_rate")
    optimizer: str = field_like(MLPConfig, "optimizer")
    init: str = field_like(MLPConfig, "init")
    activation: str = field_like(MLPConfig, "activation")
    seed: int = field_like(MLPConfig, "seed")
    overfit_steps: int = field(
        default=D.OVERFIT_STEPS, metadata={"help": "steps of the overfit-one-batch check"}
    )
    overfit_batch: int = field(
        default=D.OVERFIT_BATCH, metadata={"help": "samples of the overfit-one-batch check"}
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "train this many steps first (diagnose during training)"}
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "real data set; default: synthetic data of CIFAR-10's shape", "choices": DATASETS},
    )
    data_dir: str | None = field_like(MLPConfig, "data_dir")
    preprocess: str = field_like(MLPConfig, "preprocess")
    plot: str | None = field(
        default=None, metadata={"help": "picture of the per-layer statistics (default <out>/doctor.png)"}
    )
    out: str | None = field(default=None, metadata={"help": "output directory (default: runs/doctor-<time>)"})
    json: bool = field(default=False, metadata={"help": "print the report as JSON"})

    def validate(self) -> None:
        self.validate_mlp_flags()
        for name in ("batch_size", "overfit_steps", "overfit_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"--warmup_steps must be 0 or more, got {self.warmup_steps}")


def build_backend(
    cfg: DoctorConfig, n_features: int, num_classes: int, rng: np.random.Generator
) -> D.Backend:
    """The configured model, loss and optimizer, NumPy or PyTorch."""
    spec = OptimizerSpec(cfg.optimizer, lr=cfg.learning_rate)
    if cfg.model == "mlp-numpy":
        from backproplab import nn

        model = nn.MLP(
            n_features,
            cfg.hidden_units,
            num_classes,
            activation=cfg.activation,
            init_scheme=cfg.init,
            rng=rng,
            input_grad=False,
        )
        return D.NumpyBackend(model, nn.SoftmaxCrossEntropy(cfg.loss_reduction), spec.numpy)
    import torch

    from backproplab.torch_models import TorchMLP

    gen = torch.Generator().manual_seed(cfg.seed)
    tmodel = TorchMLP(
        n_features,
        cfg.hidden_units,
        num_classes,
        activation=cfg.activation,
        init_scheme=cfg.init,
        generator=gen,
    )

    return D.TorchBackend(tmodel, torch.nn.CrossEntropyLoss(reduction=cfg.loss_reduction), spec.torch)


def run_doctor(cfg: DoctorConfig) -> tuple[D.DoctorReport, str]:
    """Build, optionally warm up, and diagnose the configured model; return (report, data description)."""
    rng = np.random.default_rng(cfg.seed)
    n = max(cfg.batch_size, cfg.overfit_batch) * (4 if cfg.warmup_steps else 1)
    x, y, num_classes, desc = sample_batch(cfg.dataset, cfg.data_dir, cfg.preprocess, n, rng)
    backend = build_backend(cfg, x.shape[1], num_classes, rng)
    b = min(cfg.batch_size, len(x))
    for _ in range(cfg.warmup_steps):
        idx = rng.choice(len(x), size=b, replace=False)
        backend.train_step(x[idx], y[idx])
    report = D.diagnose(
        backend,
        x,
        y,
        num_classes=num_classes,
        batch_size=b,
        overfit_steps=cfg.overfit_steps,
        overfit_batch=cfg.overfit_batch,
    )
    return report, desc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_args(parser, DoctorConfig)


def main(args: argparse.Namespace) -> int:
    from backproplab.training.run_dir import RunDir, default_run_dir
    from backproplab.utils.atomic import atomic_write_json

    cfg = config_from_namespace(DoctorConfig, args)
    run = RunDir(cfg.out or default_run_dir("doctor"))
    run.save_config(cfg, tool="doctor")
    report, desc = run_doctor(cfg)
    plot = D.plot_stats(
        report.stats,
        cfg.plot or run.path / "doctor.png",
        title=(
            f"{cfg.model} [{cfg.dnn_hidden_units}] init {cfg.init}, {cfg.optimizer} lr "
            f"{cfg.learning_rate:g}, {cfg.loss_reduction}"
        ),
    )
    result = {"config": dataclasses.asdict(cfg), "data": desc, **report.to_dict(), "plot": str(plot)}
    atomic_write_json(run.path / "doctor.json", result)
    if cfg.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{cfg.model} [{cfg.dnn_hidden_units}] ({cfg.activation}, init {cfg.init}, {cfg.optimizer} lr "
            f"{cfg.learning_rate:g}, "
            f"loss reduction {cfg.loss_reduction}); data: {desc}"
        )
        print(D.format_report(report))
        print(f"per-layer statistics: {plot}")
        print(f"report: {run.path / 'doctor.json'}")
    return 1 if report.worst == "FAIL" else 0
