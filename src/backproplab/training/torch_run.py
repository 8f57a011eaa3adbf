"""Starting or resuming a PyTorch training run: the torch side of :mod:`backproplab.training.resume`.

A new run gets a fresh run directory. ``--resume RUN_DIR`` reopens one: every flag comes from
``RUN_DIR/config.json`` except ``--max_steps`` (to train further) and ``--device``; any other flag
given with ``--resume`` is a :class:`~backproplab.errors.ConfigError`. The model, optimizer,
schedule, batch sampler and generator states come from ``RUN_DIR/checkpoint.pt``; metrics logged
after the checkpoint's step are dropped, and training continues from that step, so the
metrics equal those of a run that was never interrupted. The flag handling and the flow are
torch-free (:func:`~backproplab.training.resume.resolve_resume_config`,
:func:`~backproplab.training.resume.run_resumable`) and shared with the NumPy trainers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backproplab.training.checkpoint import load_checkpoint
from backproplab.training.interrupt import InterruptFlag
from backproplab.training.resume import RESUME_FLAGS, resolve_resume_config, run_resumable
from backproplab.training.torch_task import TorchTrainTask

__all__ = ["RESUME_FLAGS", "TORCH_CHECKPOINT", "resolve_resume_config", "run_torch_trainer"]

#: The checkpoint file of a PyTorch run (``RunDir.checkpoint_path``).
TORCH_CHECKPOINT = "checkpoint.pt"


def run_torch_trainer(
    trainer: str,
    cfg: Any,
    setup: Callable[[Any, InterruptFlag], tuple[TorchTrainTask, str, str]],
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) a PyTorch trainer; return the summary (also in ``<run>/summary.json``).

    ``setup(cfg, interrupts)`` loads the data and builds the task; it returns the task, the data
    source (for config.json) and the plot title. Ctrl-C finishes the current step, saves a
    checkpoint and raises KeyboardInterrupt (the CLI exits 130).
    """
    return run_resumable(
        trainer,
        cfg,
        setup,
        checkpoint_name=TORCH_CHECKPOINT,
        load_checkpoint=load_checkpoint,
        progress=progress,
    )
