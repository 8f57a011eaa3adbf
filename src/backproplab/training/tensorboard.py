"""TensorBoard scalars of a run, written next to its metrics: ``tensorboard --logdir runs``.

Every numeric value of a metrics record becomes one scalar at the record's step: ``train_loss`` as
``train/loss``, ``test_loss`` / ``test_acc`` as ``test/loss`` / ``test/accuracy``, ``lr`` as
``train/lr``, and nested values (the per-layer statistics of ``--track_stats``) as
``<key>/<layer>/<statistic>``. Non-finite values are skipped (TensorBoard draws none for them).

The event file is written here, with no dependency (tensorboardX imports torch when it is
installed, and the NumPy trainers must run without it): TensorBoard's format is a sequence of
TFRecords (``uint64 length``, masked CRC-32C of the length, the bytes, masked CRC-32C of the bytes),
each an ``Event`` protocol buffer: ``wall_time`` (field 1, double), ``step`` (2, int64), and either
``file_version`` (3, the first record), a ``SessionLog`` (7) or a ``Summary`` (5) of ``Value``
messages with ``tag`` (1) and ``simple_value`` (2, float).

A resumed run continues from its checkpoint's step, so the steps that the interrupted process
logged after that checkpoint would appear twice. As TensorFlow's summary writers do, every process
writes a ``SessionLog`` START event at the step of its first record: TensorBoard then discards the
earlier events at or after that step (its "purge orphaned data", on by default), as
``metrics.jsonl`` is truncated to the checkpoint's step.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: Metrics keys -> TensorBoard tags; other keys keep their name.
TAGS = {"train_loss": "train/loss", "test_loss": "test/loss", "test_acc": "test/accuracy", "lr": "train/lr"}


def scalars(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every finite number in ``record`` (nested dicts joined with "/")."""
    for key, value in record.items():
        if key == "step":
            continue
        tag = f"{prefix}/{key}" if prefix else TAGS.get(key, key)
        if isinstance(value, Mapping):
            yield from scalars(value, tag)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield tag, float(value)


# ---------------------------------------------------------------------------- the file format
def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as TFRecord uses."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


#: ``SessionLog.status`` START (``tensorflow/core/util/event.proto``), as a serialised SessionLog.
SESSION_START = b"\x08\x01"


def event(
    step: int,
    wall_time: float,
    *,
    version: str | None = None,
    values: Mapping[str, float] | None = None,
    session_start: bool = False,
) -> bytes:
    """One serialised ``Event``: a file version, a session start, or a summary of scalar values."""
    body = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(max(step, 0))
    if version is not None:
        body += _field(3, version.encode())
    if session_start:
        body += _field(7, SESSION_START)
    if values:
        summary = b"".join(
            _field(1, _field(1, tag.encode()) + b"\x15" + struct.pack("<f", v)) for tag, v in values.items()
        )
        body += _field(5, summary)
    return body


def record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


class TensorBoardLog:
    """Scalars of one run in ``logdir`` (the run directory), one event file per process.

    Records are kept in memory and written at :meth:`flush` (the run flushes at every evaluation,
    as it does its metrics), so a run killed before its first evaluation leaves no event file.
    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = Path(logdir) / name
        self._pending = bytearray(record(event(0, time.time(), version="brain.Event:2")))
        self._started = False

    def log(self, rec: Mapping[str, Any]) -> None:
        values = dict(scalars(rec))
        if values:
            step = int(rec["step"])
            if not self._started:  # this process's first record: earlier events from here on are orphans
                self._pending += record(event(step, time.time(), session_start=True))
                self._started = True
            self._pending += record(event(step, time.time(), values=values))

    def flush(self) -> None:
        if not self._pending:
            return
        with open(self.path, "ab") as fh:
            fh.write(self._pending)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
