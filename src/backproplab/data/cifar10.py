"""CIFAR-10: the official python batches (directory or archive) and image-folder copies.

Accepted sources (``data_dir`` of :func:`load_cifar10`):

a. a ``cifar-10-batches-py`` directory: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
   ``batches.meta`` (pickled dicts; ``b"data"`` is uint8 (10000, 3072), each row the 1024 red,
   then green, then blue values of a 32x32 image in row-major order; ``b"labels"`` a list);
b. a directory containing ``cifar-10-batches-py``;
c. the official ``cifar-10-python.tar.gz``;
d. an image folder ``train/<class>/*.png|jpg|jpeg`` + ``test/<class>/*``;
e. a tar archive of such an image folder (for example ``cifar10-jpeg.tar.gz``).

Sources c-e are decoded once and their arrays cached (see :mod:`backproplab.data.cache`).
Without ``data_dir`` the cache directory is used, and the official archive is downloaded into
it (md5-checked) when it holds nothing yet.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from backproplab.data import imagefolder
from backproplab.data.cache import cache_file, load_arrays, save_arrays, source_key
from backproplab.data.dataset import Dataset
from backproplab.data.download import download_url, md5_file
from backproplab.data.extract import TAR_READ_ERRORS, check_member_name, extract_tar_atomic
from backproplab.data.safe_pickle import load_pickle
from backproplab.data.validate import as_int_labels, check_labels
from backproplab.errors import DataError

log = logging.getLogger(__name__)

NAME = "cifar10"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
BATCH_FILES = (*TRAIN_BATCHES, TEST_BATCH, META)
IMAGE_SHAPE_CHW = (3, 32, 32)


@dataclass(frozen=True)
class RemoteArchive:
    """Where the official archive is downloaded from, and its md5."""

    url: str
    md5: str
    filename: str


CIFAR10_ARCHIVE = RemoteArchive(
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    filename="cifar-10-python.tar.gz",
)
# The directory the downloaded archive is extracted to, inside the cache directory.
EXTRACTED_DIR = "cifar-10-python"
DOWNLOAD_TIMEOUT_S = 60.0

HOW_TO_PROVIDE = (
    "pass --data_dir PATH, where PATH is a cifar-10-batches-py directory, cifar-10-python.tar.gz, "
    "or an image folder (train/<class>/*.jpg, test/<class>/*.jpg) or a .tar.gz of one "
    "such as cifar10-jpeg.tar.gz"
)


# ---------------------------------------------------------------------------------- entry point
def load_cifar10(data_dir: Path | None, cache_dir: Path, *, download: bool = True) -> Dataset:
    """Load CIFAR-10 from ``data_dir`` (see the module docstring) or, when ``None``, the cache."""
    if data_dir is None:
        return _load_default(cache_dir, download)
    if not data_dir.exists():
        raise DataError(f"CIFAR-10 data_dir {data_dir} does not exist; {HOW_TO_PROVIDE}")
    if data_dir.is_dir():
        if any((data_dir / f).is_file() for f in BATCH_FILES):
            return read_batches_dir(data_dir)
        if (data_dir / BATCHES_DIR).is_dir():
            return read_batches_dir(data_dir / BATCHES_DIR)
        if imagefolder.looks_like_image_folder(data_dir, partial=True):
            files = imagefolder.list_image_folder(data_dir)
            key = source_key(data_dir, files)
            return _cached(
                cache_dir, key, str(data_dir), lambda: imagefolder.read_image_folder(data_dir, NAME, files)
            )
        raise DataError(
            f"{data_dir} is not a CIFAR-10 directory: found neither {BATCHES_DIR}/ nor data_batch_1 and "
            f"{META} nor train/ and test/ folders; {HOW_TO_PROVIDE}"
        )
    try:
        is_tar = tarfile.is_tarfile(data_dir)
    except TAR_READ_ERRORS as exc:  # a cut .tar.gz raises EOFError, a damaged one zlib.error, ...
        raise DataError(
            f"cannot read archive {data_dir}: truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from None
    if not is_tar:
        raise DataError(f"{data_dir} is neither a directory nor a tar archive; {HOW_TO_PROVIDE}")
    return _cached(cache_dir, source_key(data_dir), str(data_dir), lambda: read_archive(data_dir))


def _cached(cache_dir: Path, key: str, source: str, build: Callable[[], Dataset]) -> Dataset:
    path = cache_file(cache_dir, NAME, key)
    hit = load_arrays(path, NAME, f"{source} (decoded arrays from cache {path})")
    if hit is not None:
        log.info("loaded %s from cache %s", source, path)
        return hit
    ds = build()
    try:
        save_arrays(path, ds)
        note = f"decoded, cached in {path}"
    except OSError as exc:  # a read-only or full cache must not stop training
        log.warning("could not cache decoded CIFAR-10 arrays in %s: %s", path, exc)
        note = "decoded, not cached"
    return replace(ds, source=f"{source} ({note})")


def _load_default(cache_dir: Path, download: bool) -> Dataset:
    candidates = [cache_dir / BATCHES_DIR, cache_dir / EXTRACTED_DIR / BATCHES_DIR]
    for candidate in candidates:
        if candidate.is_dir():
            return read_batches_dir(candidate)
    # A copy decoded earlier from a --data_dir (e.g. the JPEG tar.gz): the newest one.
    decoded = sorted(
        cache_file(cache_dir, NAME, "*").parent.glob(f"{NAME}-*.npz"), key=lambda p: p.stat().st_mtime
    )
    for path in reversed(decoded):
        hit = load_arrays(path, NAME, f"decoded arrays from cache {path}")
        if hit is not None:
            return hit
    archive = cache_dir / CIFAR10_ARCHIVE.filename
    if not archive.is_file():
        if not download:
            looked = ", ".join(str(c) for c in [*candidates, archive])
            raise DataError(f"CIFAR-10 not found (looked for {looked}) and download is off; {HOW_TO_PROVIDE}")
        download_url(CIFAR10_ARCHIVE.url, archive, CIFAR10_ARCHIVE.md5, timeout=DOWNLOAD_TIMEOUT_S)
    else:
        actual = md5_file(archive)
        if actual != CIFAR10_ARCHIVE.md5:
            raise DataError(
                f"{archive} has md5 {actual}, expected {CIFAR10_ARCHIVE.md5} (the official archive); "
                f"delete it to download it again"
            )
    extracted = extract_tar_atomic(archive, cache_dir / EXTRACTED_DIR)
    batches = extracted / BATCHES_DIR
    if not batches.is_dir():
        raise DataError(f"{archive} did not contain {BATCHES_DIR}/ (extracted to {extracted})")
    return read_batches_dir(batches)


# ---------------------------------------------------------------------------------- python batches
def read_batches_dir(directory: Path) -> Dataset:
    """Read a ``cifar-10-batches-py`` directory (format a)."""
    missing = [f for f in BATCH_FILES if not (directory / f).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 batches directory {directory} is missing {', '.join(missing)}")
    return _from_batches(lambda f: load_pickle(directory / f), lambda f: str(directory / f), str(directory))


def read_archive(archive: Path) -> Dataset:
    """Read a tar archive: the official python batches (format c) or an image folder (format e)."""
    contents: dict[str, bytes] = {}
    is_official = False
    try:
        with tarfile.open(archive, mode="r:*") as tf:
            for member in tf:
                parts = check_member_name(archive, member.name)
                base, parent = parts[-1], (parts[-2] if len(parts) > 1 else "")
                if member.isfile() and base == TRAIN_BATCHES[0]:
                    is_official = True
                if member.isfile() and base in BATCH_FILES and parent in (BATCHES_DIR, ""):
                    fh = tf.extractfile(member)
                    if fh is None:  # pragma: no cover - isfile() members always have data
                        raise DataError(f"cannot read member {member.name!r} of {archive}")
                    with fh:
                        contents[base] = fh.read()
                elif not is_official and len(parts) >= 3:
                    break  # deep paths before any batch file: an image folder, read by imagefolder
    except TAR_READ_ERRORS as exc:
        raise DataError(
            f"cannot read archive {archive}: corrupt or not a tar file ({type(exc).__name__}: {exc})"
        ) from None
    if not is_official:
        return imagefolder.read_image_tar(archive, NAME)
    missing = [f for f in BATCH_FILES if f not in contents]
    if missing:
        raise DataError(f"CIFAR-10 archive {archive} is missing {', '.join(missing)}")
    return _from_batches(
        lambda f: load_pickle(f"{archive}:{f}", contents[f]), lambda f: f"{archive}:{f}", str(archive)
    )


def _from_batches(load: Callable[[str], Any], label: Callable[[str], str], source: str) -> Dataset:
    meta = load(META)
    names = _get(meta, "label_names", label(META))
    if not isinstance(names, list) or not names:
        raise DataError(f"{label(META)}: label_names must be a non-empty list, got {type(names).__name__}")
    classes = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
    k = len(classes)
    x_train, y_train = zip(*(_read_batch(load(f), label(f), k) for f in TRAIN_BATCHES), strict=True)
    x_test, y_test = _read_batch(load(TEST_BATCH), label(TEST_BATCH), k)
    return Dataset(
        name=NAME,
        x_train=np.concatenate(x_train),
        y_train=np.concatenate(y_train),
        x_test=x_test,
        y_test=y_test,
        classes=classes,
        source=source,
    )


def _get(d: Any, key: str, label: str) -> Any:
    if not isinstance(d, Mapping):
        raise DataError(f"{label}: expected a pickled dict, got {type(d).__name__}")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{label}: no {key!r} entry (keys: {sorted(str(k) for k in d)})")


def _read_batch(batch: Any, label: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch dict -> uint8 (n, 32, 32, 3) images (NHWC) and int64 (n,) labels."""
    data = _get(batch, "data", label)
    labels = _get(batch, "labels", label)
    c, h, w = IMAGE_SHAPE_CHW
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != c * h * w
    ):
        raise DataError(
            f"{label}: 'data' must be uint8 of shape (n, {c * h * w}), got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        )
    try:
        y = as_int_labels(labels)
    except DataError as exc:
        raise DataError(f"{label}: 'labels': {exc}") from None
    if y.shape != (data.shape[0],):
        raise DataError(f"{label}: {data.shape[0]} images but labels of shape {y.shape}")
    try:
        check_labels(y, num_classes)
    except DataError as exc:
        raise DataError(f"{label}: {exc}") from None
    x = np.ascontiguousarray(data.reshape(-1, c, h, w).transpose(0, 2, 3, 1))
    return x, y
