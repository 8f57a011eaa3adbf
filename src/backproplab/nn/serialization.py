"""Save and load state dicts with torch-compatible keys: ``.npz`` files, and ``.safetensors`` files
that PyTorch reads with ``safetensors.torch.load_file`` (and that it writes, for this engine to read)."""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from backproplab.errors import DataError
from backproplab.utils.atomic import atomic_path


def save_npz(path: str | os.PathLike[str], state: Mapping[str, np.ndarray]) -> None:
    """Write ``state`` (e.g. ``model.state_dict()``) to ``path`` atomically, keys unchanged."""
    with atomic_path(path, suffix=".npz") as tmp:
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in state.items()}
        np.savez(tmp, **arrays)


def load_npz(path: str | os.PathLike[str]) -> OrderedDict[str, np.ndarray]:
    """Read a state dict written by :func:`save_npz`; a clear error for a missing or corrupt file."""
    try:
        # the file is opened here, not by np.load, which leaks its handle when the zip is corrupt
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            return OrderedDict((k, f[k]) for k in f.files)
    except FileNotFoundError:
        raise DataError(f"weights file not found: {path}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read weights file {path}: {e}") from None


def save_safetensors(path: str | os.PathLike[str], state: Mapping[str, np.ndarray]) -> None:
    """Write ``state`` to ``path`` as safetensors (atomically), keys unchanged: a torch model with the
    same keys loads it with ``load_state_dict(safetensors.torch.load_file(path))``."""
    from safetensors.numpy import save  # an optional format, imported when used

    data = save({k: np.ascontiguousarray(v) for k, v in state.items()})
    with atomic_path(path, suffix=".safetensors") as tmp:  # the bytes go through our file (mode, atomicity)
        with open(tmp, "wb") as fh:
            fh.write(data)


def load_safetensors(path: str | os.PathLike[str]) -> OrderedDict[str, np.ndarray]:
    """Read a safetensors file (written by :func:`save_safetensors` or by ``safetensors.torch``)."""
    from safetensors.numpy import load_file

    if not os.path.isfile(path):
        raise DataError(f"weights file not found: {path}")
    try:
        return OrderedDict(load_file(str(path)).items())
    except Exception as e:  # safetensors raises its own SafetensorError for a bad header or truncation
        raise DataError(f"cannot read safetensors file {path}: {type(e).__name__}: {e}") from None
