"""``backproplab train mlp-torch``: the practical's MLP in PyTorch, with the practical's tuning knobs.

The flags and defaults of ``train mlp-numpy`` (same init N(0, 1e-4^2), SGD lr 1e-3, batch 200,
1400 steps, mean-image subtraction), so default results compare, plus:

* ``--better_init``: inputs standardised per channel and PyTorch's default Linear init (short for
  ``--preprocess standardize --init torch``);
* the optimizer and schedule flags every trainer shares
  (:class:`~backproplab.training.optim_flags.OptimFlags`): ``--optimizer {sgd,adam}``,
  ``--momentum``, ``--nesterov``, ``--weight_decay`` (L2 added to the gradient, as torch.optim),
  ``--lr_schedule step --lr_step_size N --lr_gamma G`` (StepLR, lr = lr0 * G ** (step // N)),
  ``--lr_schedule {cosine,onecycle}``;
* ``--batchnorm``: BatchNorm1d after each hidden Linear;
* ``--device {auto,cpu,cuda}``, ``--resume RUN_DIR``.

The report's best recipe: ``--dnn_hidden_units 200,200,150,100,100 --better_init --optimizer
adam --lr_schedule step --lr_step_size 500 --lr_gamma 0.5 --max_steps 4000``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from backproplab.data import Dataset, load_dataset
from backproplab.errors import ConfigError
from backproplab.torch_models import TorchMLP
from backproplab.training.config_checks import check_float32
from backproplab.training.device_data import DeviceBatchSampler, DeviceData
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.lr_schedules import torch_scheduler
from backproplab.training.mlp_config import MLPConfig
from backproplab.training.mlp_numpy import divergence_hint
from backproplab.training.optim_flags import OptimFlags
from backproplab.training.prepared_data import prepare
from backproplab.training.seeds import derive_seeds
from backproplab.training.torch_device import DEVICES, make_generator, select_device
from backproplab.training.torch_run import run_torch_trainer
from backproplab.training.torch_task import TorchTrainTask

TRAINER = "mlp-torch"
EVAL_BATCH_SIZE = 2000


@dataclass
class MLPTorchConfig(MLPConfig, OptimFlags):
    """Flags of ``train mlp-torch``: those of ``mlp-numpy`` plus the practical's PyTorch knobs."""

    better_init: bool = field(
        default=False,
        metadata={
            "help": "standardised inputs, PyTorch's default init (--preprocess standardize --init torch)"
        },
    )
    batchnorm: bool = field(default=False, metadata={"help": "BatchNorm1d after each hidden Linear layer"})
    device: str = field(
        default="auto", metadata={"help": "device: cuda if available (auto), cpu or cuda", "choices": DEVICES}
    )
    resume: str | None = field(
        default=None, metadata={"help": "continue the run in this directory from its last checkpoint"}
    )

    def validate(self) -> None:
        super().validate()
        if self.better_init and self.init not in ("practical", "torch"):
            raise ConfigError(f"--better_init sets --init torch; it conflicts with --init {self.init}")
        self.validate_optim_flags()
        check_float32("weight_decay", self.weight_decay)
        check_float32("lr_gamma", self.lr_gamma)

    def resolved(self) -> MLPTorchConfig:
        """The config with ``--better_init`` spelled out and the schedule's length fixed (what
        config.json records)."""
        cfg = self.with_fixed_schedule(resuming=self.resume is not None)
        if cfg.better_init:
            return dataclasses.replace(cfg, init="torch", preprocess="standardize")
        return cfg


def build_task(
    cfg: MLPTorchConfig, interrupts: InterruptFlag, dataset: Dataset | None = None
) -> tuple[TorchTrainTask, str, str]:
    """Load the data onto the device and build the model, optimizer and schedule of ``cfg``."""
    device = select_device(cfg.device)
    init_seed, batch_seed = derive_seeds(cfg.seed, 2)
    ds = load_dataset(cfg.dataset, cfg.data_dir) if dataset is None else dataset
    data = prepare(ds, cfg.preprocess, layout="flat", validation_size=cfg.validation_size, seed=cfg.seed)
    model = TorchMLP(
        data.n_features,
        cfg.hidden_units,
        data.num_classes,
        activation=cfg.activation,
        batchnorm=cfg.batchnorm,
        init_scheme=cfg.init,
        generator=make_generator(init_seed, torch.device("cpu")),  # CPU draws: the same weights on any device
    ).to(device)
    optimizer = cfg.optimizer_spec().torch(model.parameters())
    scheduler = torch_scheduler(optimizer, cfg)
    device_data = DeviceData.from_prepared(data, device)
    task = TorchTrainTask(
        trainer=TRAINER,
        config=cfg,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        data=device_data,
        sampler=DeviceBatchSampler(device_data.n_train, cfg.batch_size, make_generator(batch_seed, device)),
        loss_fn=torch.nn.CrossEntropyLoss(reduction=cfg.loss_reduction),
        device=device,
        divergence_hint=divergence_hint(cfg.learning_rate, cfg.loss_reduction, cfg.batch_size),
        eval_batch_size=EVAL_BATCH_SIZE,
        interrupts=interrupts,
    )
    return task, ds.source, f"{TRAINER} on {ds.name} ({device.type})"


def run(
    cfg: MLPTorchConfig, *, dataset: Dataset | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Train (or with ``cfg.resume``, continue) the PyTorch MLP; return the summary.

    ``dataset``, when given, is trained on instead of loading ``cfg.dataset`` (from Python: a
    notebook, a test); the config is validated either way.
    """
    return run_torch_trainer(
        TRAINER, cfg.resolved(), functools.partial(build_task, dataset=dataset), progress=progress
    )


CONFIG = MLPTorchConfig
