"""``backproplab train mlp-numpy``: the practical's NumPy MLP, trained with the NumPy engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backproplab import nn
from backproplab.data import BatchIterator, iterate_minibatches, load_dataset
from backproplab.training.loop import run_new
from backproplab.training.mlp_config import MLPConfig
from backproplab.training.prepared_data import PreparedData, prepare
from backproplab.training.run_dir import RunDir

EVAL_CHUNK = 2000


@dataclass
class MLPNumpyConfig(MLPConfig):
    """Flags of ``train mlp-numpy``: the practical's (see :class:`MLPConfig`)."""


def divergence_hint(learning_rate: float, loss_reduction: str, batch_size: int) -> str:
    """The likely causes of a non-finite loss, most likely first."""
    if loss_reduction == "sum":
        return (
            f"likely cause: --loss_reduction sum makes every gradient {batch_size}x (the batch size) larger "
            f"than with 'mean', an effective learning rate of {learning_rate * batch_size:g}; use mean reduction"
        )
    return f"likely causes: --learning_rate {learning_rate:g} is too high for these inputs, or the inputs are not normalised"


class NumpyMLPTask:
    """Model, loss, optimizer and batches of one NumPy MLP run (a :class:`TrainTask`)."""

    def __init__(self, cfg: MLPConfig, data: PreparedData, rng: np.random.Generator) -> None:
        self.cfg, self.data = cfg, data
        self.batch_size = cfg.batch_size
        self.model = nn.MLP(
            data.n_features,
            cfg.hidden_units,
            data.num_classes,
            activation=cfg.activation,
            init_scheme=cfg.init,
            rng=rng,
            input_grad=False,
        )
        self.loss_fn = nn.SoftmaxCrossEntropy(reduction=cfg.loss_reduction)
        params = list(self.model.parameters())
        self.optimizer: nn.optim.Optimizer = (
            nn.optim.SGD(params, lr=cfg.learning_rate)
            if cfg.optimizer == "sgd"
            else nn.optim.Adam(params, lr=cfg.learning_rate)
        )
        self.batches = BatchIterator(len(data.x_train), cfg.batch_size, rng)

    def train_step(self) -> float:
        idx = next(self.batches)
        x, y = self.data.x_train[idx], self.data.y_train[idx]  # (B, D), (B,)
        loss = self.loss_fn(self.model(x), y)
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss)

    def evaluate(self) -> dict[str, float]:
        x, y = self.data.x_test, self.data.y_test
        total_loss, correct = 0.0, 0
        eval_loss = nn.SoftmaxCrossEntropy(reduction="sum")
        with nn.no_grad():
            for sl in iterate_minibatches(len(x), EVAL_CHUNK):
                logits = self.model(x[sl])  # (chunk, classes)
                total_loss += float(eval_loss(logits.astype(np.float64), y[sl]))
                correct += int((logits.argmax(axis=1) == y[sl]).sum())
        return {"test_loss": total_loss / len(x), "test_acc": correct / len(x)}

    def save_model(self, run: RunDir) -> str:
        path = run.path / "model.npz"
        nn.save_npz(path, self.model.state_dict())
        return str(path)

    def divergence_hint(self) -> str:
        return divergence_hint(self.cfg.learning_rate, self.cfg.loss_reduction, self.cfg.batch_size)

    def save_checkpoint(self, run: RunDir, step: int) -> None:
        """The NumPy trainer keeps no resumable checkpoint; the final model is model.npz."""

    def eval_extras(self) -> dict[str, Any]:
        """With ``track_stats``: per-layer statistics on the first training batch (model left unchanged)."""
        if not self.cfg.track_stats:
            return {}
        from backproplab.verify.layer_stats import first_batch_stats

        d = self.data
        return first_batch_stats(
            self.model, d.x_train, d.y_train, self.loss_fn, self.optimizer, self.batch_size
        )


def run(cfg: MLPNumpyConfig, *, progress: bool | None = None) -> dict[str, Any]:
    """Train the NumPy MLP as configured; return the summary (also in ``<out>/summary.json``)."""
    rng = np.random.default_rng(cfg.seed)
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    data = prepare(ds, cfg.preprocess, layout="flat")
    return run_new("mlp-numpy", cfg, NumpyMLPTask(cfg, data, rng), ds.name, ds.source, progress=progress)


CONFIG = MLPNumpyConfig
