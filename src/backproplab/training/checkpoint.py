"""Resumable checkpoints of the PyTorch trainers: written atomically, read back with clear errors.

A checkpoint is one ``torch.save`` file (``checkpoint.pt`` in the run directory) holding a dict:

* ``format`` / ``version``: :data:`CHECKPOINT_FORMAT`, :data:`CHECKPOINT_VERSION`;
* ``trainer`` (``"mlp-torch"``, ``"convnet"``), ``step`` (optimizer steps taken), ``config`` (the
  resolved config as a dict), ``device`` (the device type it was written on);
* ``model``, ``optimizer``, ``scheduler`` (or None): their ``state_dict()``;
* ``sampler``: the batch sampler's state (generator state, permutation, position);
* ``rng``: the other generator states (the augmentation generator, torch's global CPU and CUDA
  states).

It is written to a temporary file and renamed over the old one, so a crash or Ctrl-C while saving
leaves the previous checkpoint whole; a full disk is a one-line
:class:`~backproplab.errors.DiskFullError` and also leaves it whole. Loading uses ``torch.load(weights_only=True)`` (tensors and
plain Python values only, no arbitrary code), on the CPU; a truncated, garbage or foreign file is a
:class:`~backproplab.errors.CheckpointError` with one line naming the file and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from backproplab.errors import CheckpointError
from backproplab.training.numpy_checkpoint import first_line, load_into
from backproplab.utils.atomic import atomic_path

CHECKPOINT_FORMAT = "backproplab-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("trainer", "step", "config", "model", "optimizer", "scheduler", "sampler", "rng")


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` (the keys of :data:`REQUIRED_KEYS`) to ``path`` atomically; return the path."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state is missing {missing}")
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as fh:
        # Through a Python file, so a full disk is an OSError (ENOSPC) that atomic_path reports,
        # not torch's opaque "unexpected pos" RuntimeError from its own writer.
        torch.save(payload, fh)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], trainer: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU.

    Raises :class:`CheckpointError` when the file is missing, unreadable (truncated, garbage), not
    a backproplab checkpoint, of another version, incomplete, or (with ``trainer``) written by
    another trainer.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"no checkpoint at {p}: nothing to resume (a run saves one at each evaluation); if the run "
            f"stopped before its first one, start it again with the same flags and --out {p.parent}"
        )
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a bad file
        raise CheckpointError(f"checkpoint {p} is corrupt or unreadable ({first_line(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not a backproplab checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {p} has format version {ckpt.get('version')}, "
            f"this backproplab reads version {CHECKPOINT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {p} is incomplete: missing {missing}")
    if trainer is not None and ckpt["trainer"] != trainer:
        raise CheckpointError(f"checkpoint {p} was written by trainer {ckpt['trainer']!r}, not {trainer!r}")
    return dict(ckpt)


def load_state(target: Any, state: Any, what: str, path: str | os.PathLike[str]) -> None:
    """``target.load_state_dict(state)`` with any failure turned into a one-line CheckpointError."""
    load_into(target.load_state_dict, state, what, path)
