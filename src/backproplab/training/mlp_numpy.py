"""``backproplab train mlp-numpy``: the practical's NumPy MLP, trained with the NumPy engine.

The practical's flags and defaults (:class:`~backproplab.training.mlp_config.MLPConfig`), plus
``--resume RUN_DIR``: a checkpoint (``checkpoint.npz``) is written at every evaluation and on
Ctrl-C, and a resumed run continues with exactly the metrics of an uninterrupted one
(:mod:`backproplab.training.numpy_task`). One generator seeded with ``--seed`` draws the initial
weights and then the batches, as in the practical.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backproplab import nn
from backproplab.data import BatchIterator, Dataset, load_dataset
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.mlp_config import MLPConfig
from backproplab.training.numpy_task import NumpyTrainTask, run_numpy_trainer
from backproplab.training.optimizers import OptimizerSpec
from backproplab.training.prepared_data import prepare

TRAINER = "mlp-numpy"
EVAL_CHUNK = 2000


@dataclass
class MLPNumpyConfig(MLPConfig):
    """Flags of ``train mlp-numpy``: the practical's (see :class:`MLPConfig`) and ``--resume``."""

    resume: str | None = field(
        default=None, metadata={"help": "continue the run in this directory from its last checkpoint"}
    )


def divergence_hint(learning_rate: float, loss_reduction: str, batch_size: int) -> str:
    """The likely causes of a non-finite loss, most likely first."""
    if loss_reduction == "sum":
        return (
            f"likely cause: --loss_reduction sum makes every gradient {batch_size}x (the batch size) larger "
            f"than with 'mean', an effective learning rate of {learning_rate * batch_size:g}; use mean reduction"
        )
    return f"likely causes: --learning_rate {learning_rate:g} is too high for these inputs, or the inputs are not normalised"


def build_task(
    cfg: MLPNumpyConfig, interrupts: InterruptFlag, dataset: Dataset | None = None
) -> tuple[NumpyTrainTask, str, str]:
    """Load the data and build the MLP, loss, optimizer and batches of ``cfg``."""
    rng = np.random.default_rng(cfg.seed)  # the initial weights, then the batches
    ds = load_dataset(cfg.dataset, cfg.data_dir) if dataset is None else dataset
    data = prepare(ds, cfg.preprocess, layout="flat", validation_size=cfg.validation_size, seed=cfg.seed)
    model = nn.MLP(
        data.n_features,
        cfg.hidden_units,
        data.num_classes,
        activation=cfg.activation,
        init_scheme=cfg.init,
        rng=rng,
        input_grad=False,
    )
    optimizer = OptimizerSpec(cfg.optimizer, lr=cfg.learning_rate).numpy(list(model.parameters()))
    task = NumpyTrainTask(
        trainer=TRAINER,
        config=cfg,
        model=model,
        loss_fn=nn.SoftmaxCrossEntropy(reduction=cfg.loss_reduction),
        optimizer=optimizer,
        data=data,
        batches=BatchIterator(len(data.x_train), cfg.batch_size, rng),
        divergence_hint=divergence_hint(cfg.learning_rate, cfg.loss_reduction, cfg.batch_size),
        eval_batch_size=EVAL_CHUNK,
        interrupts=interrupts,
    )
    return task, ds.source, f"{TRAINER} on {ds.name}"


def run(
    cfg: MLPNumpyConfig, *, dataset: Dataset | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Train (or with ``cfg.resume``, continue) the NumPy MLP; return the summary (also in
    ``<out>/summary.json``).

    ``dataset``, when given, is trained on instead of loading ``cfg.dataset`` (from Python: a
    notebook, a test); the config is validated either way.
    """
    return run_numpy_trainer(TRAINER, cfg, functools.partial(build_task, dataset=dataset), progress=progress)


CONFIG = MLPNumpyConfig
