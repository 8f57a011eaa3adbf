"""``backproplab train convnet-numpy``: the practical's PreAct ConvNet in the NumPy engine.

The twin of ``train convnet`` (PyTorch) with the flags that apply to a CPU-only NumPy model and
the same defaults: Adam, lr 1e-4, batch 32, 5000 steps, evaluation on the whole test split every
500 steps, inputs standardised per channel. ``--augment`` draws a random crop (zero padding 4)
and a horizontal flip per image from its own generator; ``--lr_schedule {cosine,onecycle}`` and
``--label_smoothing`` work as in ``train convnet`` (the same schedule factors and loss). The final weights go to ``model.npz``
with the torch model's state-dict keys, so ``torch_models.ConvNet`` loads them (and back).
No checkpoints or ``--resume``: a NumPy run keeps only its final model, like ``mlp-numpy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backproplab import nn
from backproplab.data import BatchIterator, iterate_minibatches, load_dataset
from backproplab.training.convnet_config import ConvNetBaseConfig
from backproplab.training.loop import run_new
from backproplab.training.prepared_data import PreparedData, prepare
from backproplab.training.run_dir import RunDir

TRAINER = "convnet-numpy"
AUGMENT_PADDING = 4


@dataclass
class ConvNetNumpyConfig(ConvNetBaseConfig):
    """Flags of ``train convnet-numpy``: those of ``train convnet`` that apply to the NumPy engine."""

    eval_batch_size: int = field(
        default=100, metadata={"help": "batch size of the evaluation (its im2col buffer grows with it)"}
    )
    optimizer: str = field(default="adam", metadata={"help": "optimizer", "choices": ("adam", "sgd")})


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


class NumpyConvNetTask:
    """Model, loss, optimizer and batches of one NumPy ConvNet run (a :class:`TrainTask`)."""

    def __init__(self, cfg: ConvNetNumpyConfig, data: PreparedData, seeds: np.random.SeedSequence) -> None:
        init_seq, batch_seq, augment_seq = seeds.spawn(3)
        self.cfg, self.data = cfg, data
        self.batch_size = cfg.batch_size
        self.model = nn.ConvNet(
            int(data.x_train.shape[1]),
            data.num_classes,
            rng=np.random.default_rng(init_seq),
            input_grad=False,
        )
        self.loss_fn = nn.SoftmaxCrossEntropy(label_smoothing=cfg.label_smoothing)
        params = list(self.model.parameters())
        self.optimizer: nn.optim.Optimizer = (
            nn.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
            if cfg.optimizer == "adam"
            else nn.optim.SGD(
                params,
                lr=cfg.learning_rate,
                momentum=cfg.momentum,
                nesterov=cfg.momentum > 0,
                weight_decay=cfg.weight_decay,
            )
        )
        self.scheduler = (
            None
            if cfg.lr_schedule == "constant"
            else nn.optim.LambdaLR(
                self.optimizer, nn.optim.ScheduleFactor(cfg.lr_schedule, cfg.schedule_steps or cfg.max_steps)
            )
        )
        self.batches = BatchIterator(len(data.x_train), cfg.batch_size, np.random.default_rng(batch_seq))
        self.augment_rng = np.random.default_rng(augment_seq) if cfg.augment else None

    def train_step(self) -> float:
        idx = next(self.batches)
        x, y = self.data.x_train[idx], self.data.y_train[idx]  # (B, C, H, W), (B,)
        if self.augment_rng is not None:
            x = random_crop_flip(x, self.augment_rng)
        loss = self.loss_fn(self.model(x), y)
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.scheduler is not None:
            self.scheduler.step()
        return float(loss)

    def evaluate(self) -> dict[str, float]:
        """Mean cross-entropy and accuracy on the test split, in eval mode (BatchNorm running statistics)."""
        x, y = self.data.x_test, self.data.y_test
        total_loss, correct = 0.0, 0
        eval_loss = nn.SoftmaxCrossEntropy(reduction="sum")
        self.model.eval()
        try:
            with nn.no_grad():
                for sl in iterate_minibatches(len(x), self.cfg.eval_batch_size):
                    logits = self.model(x[sl])  # (chunk, classes)
                    total_loss += float(eval_loss(logits.astype(np.float64), y[sl]))
                    correct += int((logits.argmax(axis=1) == y[sl]).sum())
        finally:
            self.model.train()
        return {"test_loss": total_loss / len(x), "test_acc": correct / len(x)}

    def save_model(self, run: RunDir) -> str:
        path = run.path / "model.npz"
        nn.save_npz(path, self.model.state_dict())
        return str(path)

    def divergence_hint(self) -> str:
        return (
            f"likely causes: --learning_rate {self.cfg.learning_rate:g} is too high for --optimizer "
            f"{self.cfg.optimizer}, or the inputs are not normalised"
        )

    def save_checkpoint(self, run: RunDir, step: int) -> None:
        """The NumPy trainer keeps no resumable checkpoint; the final model is model.npz."""

    def eval_extras(self) -> dict[str, Any]:
        """The learning rate, and with ``track_stats`` per-layer statistics on the first training
        batch (model left unchanged)."""
        extras: dict[str, Any] = {"lr": self.optimizer.lr}
        if self.cfg.track_stats:
            from backproplab.verify.layer_stats import first_batch_stats

            d = self.data
            extras.update(
                first_batch_stats(
                    self.model, d.x_train, d.y_train, self.loss_fn, self.optimizer, self.batch_size
                )
            )
        return extras


def run(cfg: ConvNetNumpyConfig, *, progress: bool | None = None) -> dict[str, Any]:
    """Train the NumPy ConvNet as configured; return the summary (also in ``<out>/summary.json``)."""
    subset_seq, task_seq = np.random.SeedSequence(cfg.seed).spawn(2)
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    if cfg.train_subset is not None or cfg.test_subset is not None:
        ds = ds.subset(cfg.train_subset, cfg.test_subset, np.random.default_rng(subset_seq))
    data = prepare(ds, cfg.preprocess, layout="NCHW")
    task = NumpyConvNetTask(cfg, data, task_seq)
    return run_new(TRAINER, cfg, task, ds.name, ds.source, progress=progress)


CONFIG = ConvNetNumpyConfig
