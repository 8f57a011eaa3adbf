"""Unpickle the official CIFAR-10 python batches without running arbitrary code.

The batches are pickles (Python 2 era) of dicts holding a NumPy array and lists. A plain
``pickle.load`` of a file from the internet can execute any code; :func:`load_pickle` only lets
the few globals that NumPy arrays need be constructed and raises
:class:`~backproplab.errors.DataError` (naming the file) for anything else or a damaged file.
"""

from __future__ import annotations

import codecs
import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from backproplab.errors import DataError


def _numpy_private(name: str, attr: str) -> Any:
    """``numpy._core.<name>.<attr>`` (NumPy 2) or ``numpy.core.<name>.<attr>`` (NumPy 1)."""
    for module in (f"numpy._core.{name}", f"numpy.core.{name}"):
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"cannot find numpy {name}.{attr}")  # pragma: no cover


_reconstruct = _numpy_private("multiarray", "_reconstruct")
_frombuffer = _numpy_private("numeric", "_frombuffer")

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: str) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._path}: refusing to unpickle {module}.{name} (only NumPy arrays, dicts and lists "
                f"are expected in a CIFAR-10 batch)"
            ) from None


def load_pickle(path: str | os.PathLike[str], data: bytes | None = None) -> Any:
    """Unpickle ``data`` (or the file at ``path``), allowing only NumPy arrays and builtins.

    ``path`` names the file in error messages. Strings come back as ``bytes`` (``encoding="bytes"``,
    as the official batches need).
    """
    try:
        raw = data if data is not None else Path(path).read_bytes()
        return _RestrictedUnpickler(io.BytesIO(raw), os.fspath(path)).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except Exception as exc:  # pickle raises many types (UnpicklingError, EOFError, ValueError, ...)
        raise DataError(f"corrupt pickle file {path}: {type(exc).__name__}: {exc}") from None
