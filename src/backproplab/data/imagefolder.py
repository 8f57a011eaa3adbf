"""Image-folder data sets: ``train/<class>/*.png|jpg|jpeg`` and ``test/<class>/*``.

The layout can be a directory or a tar archive (any compression, optionally with the two split
folders below a common top-level folder, such as ``cifar10/train/...``). Class names are the
folder names of ``train/``, sorted, and label ``k`` is the ``k``-th name; every test class must
be a training class. Images are decoded with Pillow to RGB (C = 3) and must all have the same
size. Hidden files (``.name``) and other extensions are skipped.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backproplab.data import decode
from backproplab.data.dataset import Dataset
from backproplab.data.extract import TAR_READ_ERRORS, check_member_name
from backproplab.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
SPLITS = ("train", "test")


@dataclass(frozen=True)
class _Image:
    split: str
    cls: str
    name: str  # for error messages: a path, or "archive:member"
    key: str  # sort key within a class


def is_image_name(name: str) -> bool:
    """True for a non-hidden file name with a PNG / JPEG extension (case-insensitive)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def looks_like_image_folder(root: Path, partial: bool = False) -> bool:
    """True when ``root`` has ``train/`` and ``test/`` subdirectories (either one, if ``partial``)."""
    found = [(root / split).is_dir() for split in SPLITS]
    return any(found) if partial else all(found)


def list_image_folder(root: Path) -> list[Path]:
    """The image files of an image-folder directory, in (split, class, file name) order.

    :class:`DataError` if ``train/`` or ``test/`` is missing or a training class has no images.
    """
    missing = [f"{split}/" for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise DataError(
            f"image folder {root} has no {' or '.join(missing)} subdirectory "
            f"(expected train/<class>/*.png|jpg and test/<class>/*.png|jpg)"
        )
    files: list[Path] = []
    for split in SPLITS:
        class_dirs = sorted(d for d in (root / split).iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            raise DataError(
                f"image folder {root / split} has no class subdirectories "
                f"(expected {split}/<class>/*.png|jpg)"
            )
        for class_dir in class_dirs:
            images = sorted(f for f in class_dir.iterdir() if is_image_name(f.name) and f.is_file())
            if split == "train" and not images:
                raise DataError(f"class folder {class_dir} has no .png/.jpg/.jpeg images")
            files.extend(images)
    return files


def read_image_folder(root: Path, name: str, files: list[Path] | None = None) -> Dataset:
    """Decode the image-folder directory ``root`` into a :class:`Dataset` called ``name``.

    ``files`` is :func:`list_image_folder`'s result, if the caller has it already.
    """
    files = list_image_folder(root) if files is None else files
    images: list[_Image] = []
    blobs: list[bytes] = []
    for f in files:
        rel = f.relative_to(root)
        images.append(_Image(split=rel.parts[0], cls=rel.parts[1], name=str(f), key=rel.parts[2]))
        try:
            blobs.append(f.read_bytes())
        except OSError as exc:
            raise DataError(f"cannot read image {f}: {exc}") from None
    return _build(name, str(root), images, blobs)


def read_image_tar(archive: Path, name: str) -> Dataset:
    """Decode an image folder stored in the tar archive ``archive`` into a :class:`Dataset`.

    The archive is read in memory (no extraction). Unsafe member names are refused
    (:class:`DataError`), like :func:`~backproplab.data.extract.extract_tar_atomic` does.
    """
    images: list[_Image] = []
    blobs: list[bytes] = []
    prefixes: set[tuple[str, ...]] = set()
    try:
        with tarfile.open(archive, mode="r:*") as tf:
            for member in tf:
                parts = check_member_name(archive, member.name)
                if (
                    not member.isfile()
                    or len(parts) < 3
                    or parts[-3] not in SPLITS
                    or not is_image_name(parts[-1])
                    or any(p.startswith(".") for p in parts)
                ):
                    continue
                prefixes.add(parts[:-3])
                fh = tf.extractfile(member)
                if fh is None:  # pragma: no cover - isfile() members always have data
                    raise DataError(f"cannot read member {member.name!r} of {archive}")
                with fh:
                    blobs.append(fh.read())
                images.append(
                    _Image(split=parts[-3], cls=parts[-2], name=f"{archive}:{'/'.join(parts)}", key=parts[-1])
                )
    except TAR_READ_ERRORS as exc:
        raise DataError(
            f"cannot read archive {archive}: corrupt or not a tar file ({type(exc).__name__}: {exc})"
        ) from None
    if not images:
        raise DataError(f"archive {archive} has no train/<class>/<image> members (.png/.jpg/.jpeg)")
    if len(prefixes) > 1:
        shown = sorted("/".join(p) for p in prefixes)[:5]
        raise DataError(f"archive {archive} has train/test folders under several top-level folders: {shown}")
    return _build(name, str(archive), images, blobs)


def _build(name: str, source: str, images: list[_Image], blobs: list[bytes]) -> Dataset:
    train_classes = sorted({im.cls for im in images if im.split == "train"})
    test_classes = sorted({im.cls for im in images if im.split == "test"})
    if not train_classes:
        raise DataError(f"{source} has no training images (expected train/<class>/*.png|jpg)")
    if not test_classes:
        raise DataError(f"{source} has no test images (expected test/<class>/*.png|jpg)")
    unknown = sorted(set(test_classes) - set(train_classes))
    if unknown:
        raise DataError(
            f"{source}: test classes {unknown} have no training folder (training classes: {train_classes})"
        )
    index = {c: i for i, c in enumerate(train_classes)}
    order = sorted(
        range(len(images)), key=lambda i: (SPLITS.index(images[i].split), index[images[i].cls], images[i].key)
    )
    names = [images[i].name for i in order]
    x = decode.decode_images(names, [blobs[i] for i in order])
    labels = np.array([index[images[i].cls] for i in order], dtype=np.int64)
    n_train = sum(im.split == "train" for im in images)
    return Dataset(
        name=name,
        x_train=x[:n_train],
        y_train=labels[:n_train],
        x_test=x[n_train:],
        y_test=labels[n_train:],
        classes=tuple(train_classes),
        source=source,
    )
