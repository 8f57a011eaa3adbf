"""The :class:`~backproplab.training.loop.TrainTask` of the NumPy trainers (``mlp-numpy`` and
``convnet-numpy``): steps, evaluation, checkpoints and ``--resume``, without torch.

A checkpoint (``checkpoint.npz``, :mod:`backproplab.training.numpy_checkpoint`) is written at every
evaluation and on Ctrl-C. It holds everything a resumed run needs to continue with exactly the same
numbers: the model's state dict (parameters and BatchNorm running statistics), the optimizer's
state (learning rate; Adam moments and step counts; SGD momentum buffers), the learning-rate
schedule's position, the batch iterator (its generator state, the current epoch's permutation and
the position in it), the augmentation generator and the step.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from backproplab import nn
from backproplab.data import BatchIterator, iterate_minibatches
from backproplab.errors import CheckpointError
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.loop import evaluate_splits
from backproplab.training.numpy_checkpoint import (
    CHECKPOINT_NAME,
    check_config_match,
    load_into,
    load_npz_checkpoint,
    save_npz_checkpoint,
)
from backproplab.training.prepared_data import PreparedData
from backproplab.training.resume import run_resumable
from backproplab.training.run_dir import RunDir

#: Config fields that may differ between a checkpoint and the run resuming it.
RESUME_MAY_CHANGE = ("max_steps", "resume", "out")

Scheduler = nn.optim.LambdaLR | nn.optim.StepLR
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------------- states of the parts
def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """The bit generator's state (a JSON-able dict: PCG64's 128-bit integers stay Python ints)."""
    return dict(rng.bit_generator.state)


def set_generator_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Put ``rng`` back into ``state`` (from :func:`generator_state`)."""
    rng.bit_generator.state = state


def batch_iterator_state(batches: BatchIterator) -> dict[str, Any]:
    """Everything that decides the next batches: sizes, counters, the current epoch's permutation
    and the position in it, and the generator that draws the next permutations."""
    return {
        "n": batches.n,
        "batch_size": batches.batch_size,
        "epoch": batches.epoch,
        "step": batches.step,
        "pos": batches._pos,
        "perm": None if batches._perm is None else batches._perm.copy(),
        "rng": generator_state(batches.rng),
    }


def load_batch_iterator_state(batches: BatchIterator, state: dict[str, Any]) -> None:
    """Continue ``batches`` from ``state`` (from :func:`batch_iterator_state`); a state of other
    sizes is a ValueError."""
    if (int(state["n"]), int(state["batch_size"])) != (batches.n, batches.batch_size):
        raise ValueError(
            f"it draws from {state['n']} examples in batches of {state['batch_size']}, "
            f"this run from {batches.n} in batches of {batches.batch_size}"
        )
    perm = state["perm"]
    if perm is not None:
        perm = np.asarray(perm, dtype=np.int64)
        if perm.shape != (batches.n,):
            raise ValueError(f"its permutation has shape {perm.shape}, expected ({batches.n},)")
    pos = int(state["pos"])
    if not 0 <= pos <= batches.batches_per_epoch:
        raise ValueError(f"its position {pos} lies outside an epoch of {batches.batches_per_epoch} batches")
    set_generator_state(batches.rng, state["rng"])
    batches._perm, batches._pos = perm, pos
    batches.epoch, batches.step = int(state["epoch"]), int(state["step"])


def optimizer_state(optimizer: nn.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's ``state_dict()`` (learning rate, per-parameter moments / buffers / steps)."""
    return optimizer.state_dict()


def load_optimizer_state(optimizer: nn.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict`` after checking that every saved buffer has its parameter's
    shape (the engine's optimizers would otherwise fail only at the next step)."""
    entries = state["state"]
    if len(entries) == len(optimizer.params):
        for i, (p, entry) in enumerate(zip(optimizer.params, entries, strict=True)):
            for key, value in entry.items():
                arr = np.asarray(value)
                if arr.ndim and arr.shape != p.data.shape:
                    raise ValueError(
                        f"{key} of parameter {i} has shape {arr.shape}, the parameter {p.data.shape}"
                    )
    optimizer.load_state_dict(state)


def scheduler_state(scheduler: Scheduler) -> dict[str, Any]:
    """The schedule's position: its base learning rate and the number of steps taken."""
    return {"base_lr": float(scheduler.base_lr), "last_epoch": int(scheduler.last_epoch)}


def load_scheduler_state(scheduler: Scheduler, state: dict[str, Any]) -> None:
    """Continue ``scheduler`` from ``state`` (the optimizer's own state holds the current lr)."""
    scheduler.base_lr, scheduler.last_epoch = float(state["base_lr"]), int(state["last_epoch"])


# ---------------------------------------------------------------------- the task
class NumpyTrainTask:
    """Model, loss, optimizer, schedule and batches of one NumPy run (a resumable :class:`TrainTask`).

    ``train_step`` draws a batch of indices from ``batches``, gathers it from ``data``, optionally
    augments it with ``augment(x, augment_rng)``, and runs forward, ``loss_fn``, backward, the
    optimizer step and the schedule step. ``evaluate`` uses eval mode (BatchNorm running
    statistics) and :func:`backproplab.nn.no_grad` over the test split in chunks of
    ``eval_batch_size``; its loss is the plain mean cross-entropy, summed in float64.
    ``eval_extras`` logs the learning rate (with ``log_lr``) and, with the config's
    ``track_stats``, per-layer statistics on the first training batch.
    """

    def __init__(
        self,
        *,
        trainer: str,
        config: Any,
        model: nn.Module,
        loss_fn: nn.SoftmaxCrossEntropy,
        optimizer: nn.optim.Optimizer,
        data: PreparedData,
        batches: BatchIterator,
        divergence_hint: str,
        eval_batch_size: int,
        scheduler: Scheduler | None = None,
        augment: Augment | None = None,
        augment_rng: np.random.Generator | None = None,
        log_lr: bool = False,
        interrupts: InterruptFlag | None = None,
    ) -> None:
        if (augment is None) != (augment_rng is None):
            raise ValueError("augment and augment_rng go together")
        self.trainer, self.config = trainer, config
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.data, self.batches = data, batches
        self.batch_size = batches.batch_size
        self._hint = divergence_hint
        self.eval_batch_size = eval_batch_size
        self.augment, self.augment_rng = augment, augment_rng
        self.log_lr = log_lr
        self.interrupts = interrupts or InterruptFlag()

    # ------------------------------------------------------------------ TrainTask
    def train_step(self) -> float:
        self.interrupts.raise_if_pending()  # a deferred Ctrl-C stops here, between two whole steps
        idx = next(self.batches)  # (B,)
        x, y = self.data.x_train[idx], self.data.y_train[idx]  # (B, ...), (B,)
        if self.augment is not None:
            assert self.augment_rng is not None
            x = self.augment(x, self.augment_rng)
        loss = self.loss_fn(self.model(x), y)
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.scheduler is not None:
            self.scheduler.step()
        return float(loss)

    def evaluate(self) -> dict[str, float]:
        """Mean cross-entropy and accuracy on the test split (and the validation split, if any), in
        eval mode without caches."""
        return evaluate_splits(self.data, self._evaluate_split)

    def _evaluate_split(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) on the inputs ``x`` and labels ``y``."""
        total_loss, correct = 0.0, 0
        eval_loss = nn.SoftmaxCrossEntropy(reduction="sum")
        self.model.eval()
        try:
            with nn.no_grad():
                for sl in iterate_minibatches(len(x), self.eval_batch_size):
                    logits = self.model(x[sl])  # (chunk, classes)
                    total_loss += float(eval_loss(logits.astype(np.float64), y[sl]))
                    correct += int((logits.argmax(axis=1) == y[sl]).sum())
        finally:
            self.model.train()
        return total_loss / len(x), correct / len(x)

    def save_model(self, run: RunDir) -> str:
        """``model.npz`` and ``model.safetensors``: the state dict under torch's key names (the torch
        twins load either; the safetensors file with ``safetensors.torch.load_file``)."""
        path = run.path / "model.npz"
        state = self.model.state_dict()
        nn.save_npz(path, state)
        nn.save_safetensors(run.path / "model.safetensors", state)
        return str(path)

    def divergence_hint(self) -> str:
        return self._hint

    def eval_extras(self) -> dict[str, Any]:
        """The learning rate (with ``log_lr``), and with ``track_stats`` per-layer statistics on
        the first training batch (model left unchanged)."""
        extras: dict[str, Any] = {"lr": self.optimizer.lr} if self.log_lr else {}
        if getattr(self.config, "track_stats", False):
            from backproplab.instrument.layer_stats import first_batch_stats

            d = self.data
            extras.update(
                first_batch_stats(
                    self.model, d.x_train, d.y_train, self.loss_fn, self.optimizer, self.batch_size
                )
            )
        return extras

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, step: int) -> dict[str, Any]:
        """Everything :meth:`restore` needs to continue after ``step`` with the same numbers."""
        return {
            "trainer": self.trainer,
            "step": step,
            "config": dataclasses.asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": optimizer_state(self.optimizer),
            "scheduler": None if self.scheduler is None else scheduler_state(self.scheduler),
            "batches": batch_iterator_state(self.batches),
            "rng": {"augment": None if self.augment_rng is None else generator_state(self.augment_rng)},
        }

    def save_checkpoint(self, run: RunDir, step: int) -> None:
        """Write ``checkpoint.npz`` for ``step``; after a forced (double) Ctrl-C keep the previous one."""
        path = run.path / CHECKPOINT_NAME
        if self.interrupts.forced:
            print(f"stopped mid-step: keeping the last whole checkpoint in {path}", file=sys.stderr)
            return
        save_npz_checkpoint(path, self.checkpoint_state(step))

    def restore(self, ckpt: dict[str, Any], path: str) -> int:
        """Load a checkpoint (from :func:`load_npz_checkpoint`); return its step."""
        check_config_match(path, ckpt["config"], dataclasses.asdict(self.config), RESUME_MAY_CHANGE)
        load_into(self.model.load_state_dict, ckpt["model"], "model", path)
        load_into(
            lambda s: load_optimizer_state(self.optimizer, s), ckpt["optimizer"], "optimizer state", path
        )
        if (ckpt["scheduler"] is None) != (self.scheduler is None):
            raise CheckpointError(
                f"checkpoint {path}: the saved learning-rate schedule does not match this run"
            )
        if self.scheduler is not None:
            sched = self.scheduler
            load_into(
                lambda s: load_scheduler_state(sched, s), ckpt["scheduler"], "learning-rate schedule", path
            )
        load_into(
            lambda s: load_batch_iterator_state(self.batches, s),
            ckpt["batches"],
            "batch iterator state",
            path,
        )
        saved_augment = ckpt["rng"].get("augment")
        if (saved_augment is None) != (self.augment_rng is None):
            raise CheckpointError(
                f"checkpoint {path}: the saved augmentation setting does not match this run"
            )
        if self.augment_rng is not None:
            rng = self.augment_rng
            load_into(lambda s: set_generator_state(rng, s), saved_augment, "augmentation generator", path)
        return int(ckpt["step"])


def run_numpy_trainer(
    trainer: str,
    cfg: Any,
    setup: Callable[[Any, InterruptFlag], tuple[NumpyTrainTask, str, str]],
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or with ``cfg.resume``, continue from ``checkpoint.npz``) a NumPy trainer; return the
    summary (also in ``<run>/summary.json``). ``setup(cfg, interrupts)`` loads the data and builds
    the task; it returns the task, the data source (for config.json) and the plot title."""
    return run_resumable(
        trainer,
        cfg,
        setup,
        checkpoint_name=CHECKPOINT_NAME,
        load_checkpoint=load_npz_checkpoint,
        progress=progress,
    )
