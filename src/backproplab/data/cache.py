"""The cache directory and the cache of decoded arrays.

Decoding 60,000 JPEGs takes seconds; reading the same arrays back from an uncompressed ``.npz``
takes a fraction of one. After a source (an image folder, a ``.tar.gz``) is decoded, its arrays
are saved under ``<cache_dir>/arrays/<name>-<key>.npz``, written atomically. The key hashes the
source's absolute path, size and modification time (for a directory: those of every file in it),
so editing or replacing the source makes a new entry. A cache file that cannot be read is
treated as a miss, removed and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from backproplab.data.dataset import Dataset
from backproplab.errors import DataError
from backproplab.utils.atomic import atomic_path

log = logging.getLogger(__name__)

CACHE_ENV = "BACKPROPLAB_CACHE"
# Bump when the decoding changes, so that older cache files are no longer used.
CACHE_FORMAT = 1
_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")


def default_cache_dir() -> Path:
    """``$BACKPROPLAB_CACHE`` if set (``~`` expanded), else ``~/.cache/backproplab``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "backproplab"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir`` as an absolute path, or :func:`default_cache_dir` when it is ``None``."""
    path = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return path.absolute()


def source_key(path: Path, files: Iterable[Path] | None = None) -> str:
    """A 16-hex-digit key for a source: its absolute path, size and mtime (ns).

    For a directory pass ``files`` (the files the loader reads): the relative path, size and
    mtime of each one are hashed too, since a directory's own mtime misses edits inside it.
    """
    path = path.absolute()
    h = hashlib.sha256()
    st = path.stat()
    h.update(f"v{CACHE_FORMAT}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for f in sorted(files or ()):
        fst = f.stat()
        h.update(f"{f.relative_to(path)}\0{fst.st_size}\0{fst.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def cache_file(cache_dir: Path, name: str, key: str) -> Path:
    """Where the decoded arrays of data set ``name`` from the source with ``key`` are stored."""
    return cache_dir / "arrays" / f"{name}-{key}.npz"


def save_arrays(path: Path, ds: Dataset) -> None:
    """Save ``ds``'s arrays and class names to ``path`` (uncompressed ``.npz``), atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            x_train=ds.x_train,
            y_train=ds.y_train,
            x_test=ds.x_test,
            y_test=ds.y_test,
            classes=np.array(ds.classes, dtype=np.str_),
        )


def load_arrays(path: Path, name: str, source: str) -> Dataset | None:
    """The :class:`Dataset` cached at ``path``, or ``None`` when there is none or it is unreadable.

    An unreadable or inconsistent file is logged, removed, and reported as a miss.
    """
    if not path.is_file():
        return None
    try:
        # Open the file here: np.load leaks its own handle when the zip directory is damaged.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            missing = [k for k in _ARRAY_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"missing arrays {missing}")
            arrays = {k: npz[k] for k in _ARRAY_KEYS}
        return Dataset(
            name=name,
            x_train=arrays["x_train"],
            y_train=arrays["y_train"],
            x_test=arrays["x_test"],
            y_test=arrays["y_test"],
            classes=tuple(str(c) for c in arrays["classes"].tolist()),
            source=source,
        )
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable cache file %s (%s); it will be rebuilt", path, exc)
        path.unlink(missing_ok=True)
        return None
