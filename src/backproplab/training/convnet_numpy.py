"""``backproplab train convnet-numpy``: the practical's PreAct ConvNet in the NumPy engine.

The twin of ``train convnet`` (PyTorch) with the flags that apply to a CPU-only NumPy model and
the same defaults: Adam, lr 1e-4, batch 32, 5000 steps, evaluation on the whole test split every
500 steps, inputs standardised per channel. ``--augment`` draws a random crop (zero padding 4)
and a horizontal flip per image from its own generator; the optimizer and schedule flags
(``--momentum``, ``--nesterov``, ``--weight_decay``, ``--lr_schedule``) and ``--label_smoothing`` work
as in ``train convnet`` (the same schedule factors and loss). The final weights go to ``model.npz``
with the torch model's state-dict keys, so ``torch_models.ConvNet`` loads them (and back).
A checkpoint (``checkpoint.npz``) is written at every evaluation and on Ctrl-C; ``--resume RUN_DIR``
continues with exactly the metrics of an uninterrupted run (:mod:`backproplab.training.numpy_task`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backproplab import nn
from backproplab.data import BatchIterator, Dataset, load_dataset
from backproplab.training.augment import random_crop_flip_numpy
from backproplab.training.convnet_config import ConvNetBaseConfig
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.lr_schedules import numpy_scheduler
from backproplab.training.numpy_task import NumpyTrainTask, run_numpy_trainer
from backproplab.training.optimizers import NUMPY_OPTIMIZERS
from backproplab.training.prepared_data import prepare
from backproplab.training.seeds import derive_seeds

TRAINER = "convnet-numpy"


@dataclass
class ConvNetNumpyConfig(ConvNetBaseConfig):
    """Flags of ``train convnet-numpy``: those of ``train convnet`` that apply to the NumPy engine."""

    eval_batch_size: int = field(
        default=100, metadata={"help": "batch size of the evaluation (its im2col buffer grows with it)"}
    )
    optimizer: str = field(default="adam", metadata={"help": "optimizer", "choices": NUMPY_OPTIMIZERS})
    resume: str | None = field(
        default=None, metadata={"help": "continue the run in this directory from its last checkpoint"}
    )

    def resolved(self) -> ConvNetNumpyConfig:
        """The config with ``schedule_steps`` fixed (so extending a run keeps its schedule)."""
        return self.with_fixed_schedule(resuming=self.resume is not None)


def build_task(
    cfg: ConvNetNumpyConfig, interrupts: InterruptFlag, dataset: Dataset | None = None
) -> tuple[NumpyTrainTask, str, str]:
    """Load the data (the ``--train_subset`` / ``--test_subset`` draws first) and build the ConvNet,
    loss, optimizer, schedule, batches and augmentation of ``cfg``; every generator is seeded from
    ``--seed`` by :func:`~backproplab.training.seeds.derive_seeds`, in the order of ``train convnet``."""
    subset_seed, init_seed, batch_seed, augment_seed = derive_seeds(cfg.seed, 4)
    ds = load_dataset(cfg.dataset, cfg.data_dir) if dataset is None else dataset
    if cfg.train_subset is not None or cfg.test_subset is not None:
        ds = ds.subset(cfg.train_subset, cfg.test_subset, np.random.default_rng(subset_seed))
    data = prepare(ds, cfg.preprocess, layout="NCHW", validation_size=cfg.validation_size, seed=cfg.seed)
    model = nn.ConvNet(
        int(data.x_train.shape[1]),
        data.num_classes,
        rng=np.random.default_rng(init_seed),
        input_grad=False,
    )
    optimizer = cfg.optimizer_spec().numpy(list(model.parameters()))
    scheduler = numpy_scheduler(optimizer, cfg)
    task = NumpyTrainTask(
        trainer=TRAINER,
        config=cfg,
        model=model,
        loss_fn=nn.SoftmaxCrossEntropy(label_smoothing=cfg.label_smoothing),
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        batches=BatchIterator(len(data.x_train), cfg.batch_size, np.random.default_rng(batch_seed)),
        divergence_hint=(
            f"likely causes: --learning_rate {cfg.learning_rate:g} is too high for --optimizer "
            f"{cfg.optimizer}, or the inputs are not normalised"
        ),
        eval_batch_size=cfg.eval_batch_size,
        augment=random_crop_flip_numpy if cfg.augment else None,
        augment_rng=np.random.default_rng(augment_seed) if cfg.augment else None,
        log_lr=True,
        interrupts=interrupts,
    )
    return task, ds.source, f"{TRAINER} on {ds.name}"


def run(
    cfg: ConvNetNumpyConfig, *, dataset: Dataset | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Train (or with ``cfg.resume``, continue) the NumPy ConvNet as configured; return the summary
    (also in ``<out>/summary.json``).

    ``dataset``, when given, is trained on instead of loading ``cfg.dataset`` (from Python: a
    notebook, a test); the config is validated either way.
    """
    return run_numpy_trainer(
        TRAINER, cfg.resolved(), functools.partial(build_task, dataset=dataset), progress=progress
    )


CONFIG = ConvNetNumpyConfig
