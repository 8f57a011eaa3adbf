"""Resumable checkpoints of the NumPy trainers, as one ``.npz`` file (no torch, no pickle).

A checkpoint (``checkpoint.npz`` in the run directory) stores a nested state (dicts, lists, NumPy
arrays and JSON scalars) as:

* one array per leaf array, named by its path in the state (``model/conv0.weight``,
  ``optimizer/state/3/exp_avg``, ``batches/perm``), dtype and shape kept exactly;
* ``__meta__``: a 0-d unicode array holding one JSON document, the state with every array replaced
  by ``{"__array__": name}``, plus ``format`` / ``version`` (:data:`CHECKPOINT_FORMAT`,
  :data:`CHECKPOINT_VERSION`). JSON keeps Python floats exactly (shortest round-trip repr) and
  integers of any size (the 128-bit PCG64 generator states).

The state holds the keys of :data:`REQUIRED_KEYS` (see :meth:`NumpyTrainTask.checkpoint_state
<backproplab.training.numpy_task.NumpyTrainTask.checkpoint_state>`). It is written to a temporary
file and renamed over the old one (:func:`backproplab.utils.atomic.atomic_path`), so a crash or
kill while saving leaves the previous checkpoint whole. Reading uses ``allow_pickle=False``; a
missing, truncated, garbage, foreign or incomplete file is a :class:`~backproplab.errors.CheckpointError`
with one line naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backproplab.errors import CheckpointError
from backproplab.utils.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_FORMAT = "backproplab-numpy-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("trainer", "step", "config", "model", "optimizer", "scheduler", "batches", "rng")
META_KEY = "__meta__"
ARRAY_REF = "__array__"


def _pack(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as JSON-able values, its arrays moved into ``arrays`` under their path names."""
    if isinstance(obj, np.ndarray | np.number | np.bool_):  # NumPy scalars keep their dtype too
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise TypeError(f"cannot store an object array at {path!r} in a checkpoint")
        name = path or "root"
        arrays[name] = arr
        return {ARRAY_REF: name}
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str) or "/" in key or key == ARRAY_REF:
                raise TypeError(f"checkpoint keys must be strings without '/', got {key!r} at {path!r}")
            out[key] = _pack(value, f"{path}/{key}" if path else key, arrays)
        return out
    if isinstance(obj, list | tuple):
        return [_pack(v, f"{path}/{i}" if path else str(i), arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} in a checkpoint")


def _unpack(obj: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The inverse of :func:`_pack`."""
    if isinstance(obj, dict):
        if set(obj) == {ARRAY_REF}:
            return arrays[obj[ARRAY_REF]]
        return {k: _unpack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    return obj


def save_npz_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` (the keys of :data:`REQUIRED_KEYS`) to ``path`` atomically; return the path."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state is missing {missing}")
    arrays: dict[str, np.ndarray] = {}
    meta = _pack({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, "", arrays)
    text = json.dumps(meta, allow_nan=True)
    payload: dict[str, Any] = {META_KEY: np.array(text), **arrays}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, allow_pickle=False, **payload)
    return Path(path)


def first_line(e: BaseException) -> str:
    """The exception's type and the first sentence of its message, for a one-line error."""
    lines = str(e).strip().splitlines()
    text = lines[0].split(". ")[0].rstrip(".") if lines else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_npz_checkpoint(path: str | os.PathLike[str], trainer: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_npz_checkpoint` (every array is read and checked).

    Raises :class:`CheckpointError` when the file is missing, unreadable (truncated, garbage), not
    a backproplab NumPy checkpoint, of another version, incomplete, or (with ``trainer``) written
    by another trainer.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}: nothing to resume (a run saves one at each evaluation)")
    try:
        with open(p, "rb") as fh:  # closed whatever np.load makes of the bytes
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):  # a plain .npy array
                raise CheckpointError(f"{p} is not a backproplab checkpoint")
            with npz:
                if META_KEY not in npz.files:
                    raise CheckpointError(f"{p} is not a backproplab checkpoint")
                meta_arr = npz[META_KEY]
                arrays = {name: npz[name] for name in npz.files if name != META_KEY}
        if meta_arr.shape != () or meta_arr.dtype.kind != "U":
            raise CheckpointError(f"{p} is not a backproplab checkpoint")
        meta = json.loads(str(meta_arr[()]))
    except CheckpointError:
        raise
    except Exception as e:  # BadZipFile, EOFError, ValueError (pickled data, bad header), ...
        raise CheckpointError(f"checkpoint {p} is corrupt or unreadable ({first_line(e)})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not a backproplab checkpoint")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {p} has format version {meta.get('version')}, "
            f"this backproplab reads version {CHECKPOINT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {p} is incomplete: missing {missing}")
    try:
        ckpt = _unpack(meta, arrays)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {p} is corrupt or unreadable ({first_line(e)})") from None
    if trainer is not None and ckpt["trainer"] != trainer:
        raise CheckpointError(f"checkpoint {p} was written by trainer {ckpt['trainer']!r}, not {trainer!r}")
    return dict(ckpt)


def check_config_match(
    path: str | os.PathLike[str],
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    ignore: tuple[str, ...],
) -> None:
    """Raise :class:`CheckpointError` naming the first flag whose value differs between the
    checkpoint's config ``saved`` and the run's ``current`` one (keys in ``ignore`` may differ).
    Shared with the torch checkpoints (``training.checkpoint``); this module imports no torch."""
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        if saved.get(key) != current.get(key):
            raise CheckpointError(
                f"checkpoint {path} does not match this run: it was written with --{key} {saved.get(key)!r}, "
                f"the run has --{key} {current.get(key)!r}"
            )


def load_into(load: Any, state: Any, what: str, path: str | os.PathLike[str]) -> None:
    """``load(state)`` with any failure turned into a one-line CheckpointError naming ``what``."""
    try:
        load(state)
    except CheckpointError:
        raise
    except Exception as e:  # KeyError (keys), ShapeError, ValueError, TypeError, ...
        raise CheckpointError(
            f"checkpoint {path}: the saved {what} does not match this run ({first_line(e)})"
        ) from None
