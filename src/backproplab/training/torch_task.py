"""The :class:`~backproplab.training.loop.TrainTask` of the PyTorch trainers: steps, evaluation, checkpoints
(shared by ``mlp-torch`` and ``convnet``)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from backproplab import nn as np_nn
from backproplab.errors import CheckpointError, NonFiniteError
from backproplab.training.checkpoint import load_state, save_checkpoint
from backproplab.training.device_data import DeviceBatchSampler, DeviceData
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.loop import evaluate_splits
from backproplab.training.lr_schedules import current_lr
from backproplab.training.numpy_checkpoint import check_config_match
from backproplab.training.run_dir import RunDir
from backproplab.training.torch_device import autocast
from backproplab.utils.atomic import remove_stale_temp_files

#: Config fields that may differ between a checkpoint and the run resuming it.
RESUME_MAY_CHANGE = ("max_steps", "device", "resume", "out")


class TorchTrainTask:
    """Model, loss, optimizer, schedule and on-device batches of one PyTorch run.

    ``train_step`` draws a batch of indices on the device (``sampler``), gathers it from the
    resident data, optionally augments it with ``augment(x, generator)`` and runs
    forward (under ``amp`` autocast), ``loss_fn(logits, y)`` in float32, backward, the optimizer
    and scheduler steps. ``evaluate`` uses eval mode (BatchNorm running statistics) and
    ``torch.inference_mode`` over the test split in chunks of ``eval_batch_size``; its loss is the
    plain mean cross-entropy. Checkpoints hold everything a resumed run needs to continue with
    exactly the same numbers (see :mod:`backproplab.training.checkpoint`).
    """

    def __init__(
        self,
        *,
        trainer: str,
        config: Any,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        data: DeviceData,
        sampler: DeviceBatchSampler,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        device: torch.device,
        divergence_hint: str,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        augment_generator: torch.Generator | None = None,
        amp: str = "none",
        channels_last: bool = False,
        eval_batch_size: int = 1000,
        interrupts: InterruptFlag | None = None,
    ) -> None:
        self.trainer, self.config = trainer, config
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.data, self.sampler, self.loss_fn, self.device = data, sampler, loss_fn, device
        self.batch_size = sampler.batch_size
        self._hint = divergence_hint
        self.augment, self.augment_generator = augment, augment_generator
        self.amp, self.channels_last, self.eval_batch_size = amp, channels_last, eval_batch_size
        self.interrupts = interrupts or InterruptFlag()

    # ------------------------------------------------------------------ TrainTask
    def train_step(self) -> float:
        self.interrupts.raise_if_pending()  # a deferred Ctrl-C stops here, between two whole steps
        idx = self.sampler.next()  # (B,) on the device
        x, y = self.data.x_train[idx], self.data.y_train[idx]  # (B, ...), (B,)
        if self.augment is not None:
            assert self.augment_generator is not None
            x = self.augment(x, self.augment_generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.model.train()
        with autocast(self.device, self.amp):
            logits = self.model(x)  # (B, classes)
        loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        try:
            self.optimizer.step()
        except RuntimeError as e:  # e.g. "value cannot be converted to type float without overflow"
            if "overflow" not in str(e):
                raise
            raise NonFiniteError(
                f"the optimizer step overflowed float32 ({str(e).splitlines()[0]}); {self._hint}"
            ) from None
        if self.scheduler is not None:
            self.scheduler.step()
        return float(loss.detach())

    def evaluate(self) -> dict[str, float]:
        return evaluate_splits(self.data, self._evaluate_split)

    def _evaluate_split(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) on the inputs ``x`` and labels ``y``."""
        n = int(x.shape[0])
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.model.eval()
        try:
            with torch.inference_mode(), autocast(self.device, self.amp):
                for lo in range(0, n, self.eval_batch_size):
                    sl = slice(lo, min(lo + self.eval_batch_size, n))
                    logits = self.model(x[sl]).float()  # (chunk, classes)
                    total_loss += F.cross_entropy(logits, y[sl], reduction="sum").double()
                    correct += (logits.argmax(dim=1) == y[sl]).sum()
        finally:
            self.model.train()
        return float(total_loss) / n, int(correct) / n

    def save_model(self, run: RunDir) -> str:
        """``model.npz`` and ``model.safetensors``: the state dict under torch's key names, loadable by
        the NumPy twins too."""
        path = run.path / "model.npz"
        state = {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        np_nn.save_npz(path, state)
        np_nn.save_safetensors(run.path / "model.safetensors", state)  # torch's load_file reads it
        return str(path)

    def divergence_hint(self) -> str:
        return self._hint

    def eval_extras(self) -> dict[str, Any]:
        """The learning rate, and with the config's ``track_stats`` the per-layer statistics
        (:func:`backproplab.instrument.layer_stats.torch_layer_stats`) on the first training batch."""
        extras: dict[str, Any] = {"lr": current_lr(self.optimizer)}
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
        cuda = (
            torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized()
            else []
        )
        return {
            "trainer": self.trainer,
            "step": step,
            "config": dataclasses.asdict(self.config),
            "device": self.device.type,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": {
                "augment": None if self.augment_generator is None else self.augment_generator.get_state(),
                "torch_cpu": torch.get_rng_state(),
                "torch_cuda": cuda,
            },
        }

    def save_checkpoint(self, run: RunDir, step: int) -> None:
        """Write ``checkpoint.pt`` for ``step``; after a forced (double) Ctrl-C keep the previous one."""
        if self.interrupts.forced:
            print(
                f"stopped mid-step: keeping the last whole checkpoint in {run.checkpoint_path}",
                file=sys.stderr,
            )
            return
        save_checkpoint(run.checkpoint_path, self.checkpoint_state(step))
        # Temporary files of a save that a kill interrupted (this run holds the directory).
        remove_stale_temp_files(run.path, run.checkpoint_path.name)

    def restore(self, ckpt: dict[str, Any], path: str) -> int:
        """Load a checkpoint (from :func:`.checkpoint.load_checkpoint`); return its step."""
        if ckpt.get("device") != self.device.type:
            raise CheckpointError(
                f"checkpoint {path} was written on {ckpt.get('device')}, this run is on {self.device.type}: "
                f"resume with --device {ckpt.get('device')} "
                "(generator states do not carry across device types)"
            )
        check_config_match(path, ckpt["config"], dataclasses.asdict(self.config), RESUME_MAY_CHANGE)
        load_state(self.model, ckpt["model"], "model", path)
        load_state(self.optimizer, ckpt["optimizer"], "optimizer state", path)
        if (ckpt["scheduler"] is None) != (self.scheduler is None):
            raise_mismatch(path, "learning-rate schedule")
        if self.scheduler is not None:
            load_state(self.scheduler, ckpt["scheduler"], "learning-rate schedule", path)
        load_state(self.sampler, ckpt["sampler"], "batch sampler state", path)
        rng = ckpt["rng"]
        if (rng.get("augment") is None) != (self.augment_generator is None):
            raise_mismatch(path, "augmentation setting")
        if self.augment_generator is not None:
            load_state(
                _GeneratorState(self.augment_generator), rng["augment"], "augmentation generator", path
            )
        torch.set_rng_state(rng["torch_cpu"])
        if rng.get("torch_cuda") and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["torch_cuda"])
        return int(ckpt["step"])


class _GeneratorState:
    """Adapter so a generator's ``set_state`` goes through :func:`load_state`'s error handling."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def load_state_dict(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def raise_mismatch(path: str, what: str) -> None:
    raise CheckpointError(f"checkpoint {path}: the saved {what} does not match this run")
