"""The IDX file format of MNIST and Fashion-MNIST, plain or gzipped.

Layout (big-endian): two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions ``d``, then ``d`` uint32 sizes, then the data in C order. Image files have
``d = 3`` (count, rows, columns), label files ``d = 1`` (count).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from backproplab.errors import DataError

UBYTE = 0x08


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX file (``.gz`` by name suffix); :class:`DataError` if unreadable."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def parse_idx(data: bytes, ndim: int, label: str) -> np.ndarray:
    """Parse an unsigned-byte IDX file with ``ndim`` dimensions into a uint8 array.

    Checks the magic number, the dimension count and that the data length equals the product of
    the sizes; ``label`` (a path) names the file in errors.
    """
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise DataError(f"{label}: {len(data)} bytes is too short for an IDX file")
    zero, dtype_code, dims = data[:2], data[2], data[3]
    if zero != b"\0\0" or dtype_code != UBYTE or dims != ndim:
        raise DataError(
            f"{label}: bad IDX magic number 0x{data[:4].hex()}, expected 0x0000{UBYTE:02x}{ndim:02x} "
            f"(unsigned bytes, {ndim} dimensions)"
        )
    if len(data) < header:
        raise DataError(f"{label}: truncated IDX header ({len(data)} bytes, expected at least {header})")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape)  # Python integers: sizes such as (2**31, 2**31, 4) must not wrap to 0
    actual = len(data) - header
    if actual != expected:
        raise DataError(f"{label}: IDX sizes {shape} need {expected} data bytes, the file has {actual}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read the unsigned-byte IDX file at ``path`` (plain or ``.gz``) with ``ndim`` dimensions."""
    return parse_idx(read_idx_bytes(path), ndim, str(path))
