"""``backproplab train convnet-numpy``: the practical's PreAct ConvNet in the NumPy engine.

The twin of ``train convnet`` (PyTorch) with the flags that apply to a CPU-only NumPy model and
the same defaults: Adam, lr 1e-4, batch 32, 5000 steps, evaluation on the whole test split every
500 steps, inputs standardised per channel. ``--augment`` draws a random crop (zero padding 4)
and a horizontal flip per image from its own generator; ``--lr_schedule {cosine,onecycle}`` and
``--label_smoothing`` work as in ``train convnet`` (the same schedule factors and loss). The final weights go to ``model.npz``
with the torch model's state-dict keys, so ``torch_models.ConvNet`` loads them (and back).
A checkpoint (``checkpoint.npz``) is written at every evaluation and on Ctrl-C; ``--resume RUN_DIR``
continues with exactly the metrics of an uninterrupted run (:mod:`backproplab.training.numpy_task`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backproplab import nn
from backproplab.data import BatchIterator, load_dataset
from backproplab.training.convnet_config import ConvNetBaseConfig
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.numpy_task import NumpyTrainTask, run_numpy_trainer
from backproplab.training.prepared_data import prepare

TRAINER = "convnet-numpy"
AUGMENT_PADDING = 4


@dataclass
class ConvNetNumpyConfig(ConvNetBaseConfig):
    """Flags of ``train convnet-numpy``: those of ``train convnet`` that apply to the NumPy engine."""

    eval_batch_size: int = field(
        default=100, metadata={"help": "batch size of the evaluation (its im2col buffer grows with it)"}
    )
    optimizer: str = field(default="adam", metadata={"help": "optimizer", "choices": ("adam", "sgd")})
    resume: str | None = field(
        default=None, metadata={"help": "continue the run in this directory from its last checkpoint"}
    )

    def resolved(self) -> ConvNetNumpyConfig:
        """The config with ``schedule_steps`` fixed (so extending a run keeps its schedule)."""
        if self.schedule_steps is None and self.resume is None:
            return dataclasses.replace(self, schedule_steps=self.max_steps)
        return self


def random_crop_flip(x: np.ndarray, rng: np.random.Generator, padding: int = AUGMENT_PADDING) -> np.ndarray:
    """Per image of ``x`` (N, C, H, W): pad ``padding`` zeros on each side, crop a random HxW window
    at offsets (dy, dx) ~ U{0..2 padding}, and flip horizontally with probability 1/2, all drawn
    from ``rng``. Output pixel (i, j) of image n is padded pixel (dy_n + i, dx_n + j), or
    (dy_n + i, dx_n + W - 1 - j) when image n is flipped: one gather. The zeros pad normalised
    inputs, so a padded pixel is the mean colour under ``--preprocess standardize``.
    """
    n, c, h, w = x.shape
    dy = np.asarray(rng.integers(0, 2 * padding + 1, size=n))  # (N,)
    dx = np.asarray(rng.integers(0, 2 * padding + 1, size=n))  # (N,)
    flipped = np.asarray(rng.random(n) < 0.5)  # (N,)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # (N, C, H+2p, W+2p)
    ar_w = np.arange(w)
    rows = dy[:, None] + np.arange(h)  # (N, H)
    cols = dx[:, None] + np.where(flipped[:, None], w - 1 - ar_w, ar_w)  # (N, W)
    return padded[
        np.arange(n)[:, None, None, None],
        np.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]  # (N, C, H, W)


def make_optimizer(cfg: ConvNetNumpyConfig, model: nn.Module) -> nn.optim.Optimizer:
    """Adam, or SGD with Nesterov momentum (plain SGD with ``--momentum 0``), as configured."""
    params = list(model.parameters())
    if cfg.optimizer == "adam":
        return nn.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return nn.optim.SGD(
        params,
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        nesterov=cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def build_task(cfg: ConvNetNumpyConfig, interrupts: InterruptFlag) -> tuple[NumpyTrainTask, str, str]:
    """Load the data (the ``--train_subset`` / ``--test_subset`` draws first) and build the ConvNet,
    loss, optimizer, schedule, batches and augmentation of ``cfg``; every generator comes from
    ``--seed`` through :class:`numpy.random.SeedSequence`."""
    subset_seq, task_seq = np.random.SeedSequence(cfg.seed).spawn(2)
    init_seq, batch_seq, augment_seq = task_seq.spawn(3)
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    if cfg.train_subset is not None or cfg.test_subset is not None:
        ds = ds.subset(cfg.train_subset, cfg.test_subset, np.random.default_rng(subset_seq))
    data = prepare(ds, cfg.preprocess, layout="NCHW")
    model = nn.ConvNet(
        int(data.x_train.shape[1]),
        data.num_classes,
        rng=np.random.default_rng(init_seq),
        input_grad=False,
    )
    optimizer = make_optimizer(cfg, model)
    scheduler = (
        None
        if cfg.lr_schedule == "constant"
        else nn.optim.LambdaLR(
            optimizer, nn.optim.ScheduleFactor(cfg.lr_schedule, cfg.schedule_steps or cfg.max_steps)
        )
    )
    task = NumpyTrainTask(
        trainer=TRAINER,
        config=cfg,
        model=model,
        loss_fn=nn.SoftmaxCrossEntropy(label_smoothing=cfg.label_smoothing),
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        batches=BatchIterator(len(data.x_train), cfg.batch_size, np.random.default_rng(batch_seq)),
        divergence_hint=(
            f"likely causes: --learning_rate {cfg.learning_rate:g} is too high for --optimizer "
            f"{cfg.optimizer}, or the inputs are not normalised"
        ),
        eval_batch_size=cfg.eval_batch_size,
        augment=random_crop_flip if cfg.augment else None,
        augment_rng=np.random.default_rng(augment_seq) if cfg.augment else None,
        log_lr=True,
        interrupts=interrupts,
    )
    return task, ds.source, f"{TRAINER} on {ds.name}"


def run(cfg: ConvNetNumpyConfig, *, progress: bool | None = None) -> dict[str, Any]:
    """Train (or with ``cfg.resume``, continue) the NumPy ConvNet as configured; return the summary
    (also in ``<out>/summary.json``)."""
    return run_numpy_trainer(TRAINER, cfg.resolved(), build_task, progress=progress)


CONFIG = ConvNetNumpyConfig
