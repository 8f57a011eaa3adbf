"""Corrupt or malformed inputs: each is a one-line DataError (exit 2), never a traceback or silent."""

from __future__ import annotations

import io
import pickle
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from faultkit import NUMPY_RUN, one_error_line

from backproplab.cli.main import main
from backproplab.data import load_dataset
from backproplab.data.idx import parse_idx
from backproplab.data.validate import as_int_labels
from backproplab.errors import DataError


def write_batches(directory: Path, labels: list[object]) -> Path:
    """A cifar-10-batches-py directory of len(labels) images per batch, the test batch with ``labels``."""
    directory.mkdir(parents=True)
    n = len(labels)
    good = {b"data": np.zeros((n, 3072), np.uint8), b"labels": [i % 10 for i in range(n)]}
    for i in range(1, 6):
        (directory / f"data_batch_{i}").write_bytes(pickle.dumps(good, protocol=2))
    bad = {b"data": np.zeros((n, 3072), np.uint8), b"labels": labels}
    (directory / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return directory


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        ([0, 1.5, 2], "1.5 (float) at index 1"),
        ([0, "3", 2], "'3' (str) at index 1"),
        ([True, 1, 2], "True (bool) at index 0"),
    ],
)
def test_cifar_labels_that_are_not_integers(tmp_path: Path, labels: list[object], shown: str) -> None:
    d = write_batches(tmp_path / "cifar-10-batches-py", labels)
    with pytest.raises(
        DataError, match=re.escape(f"test_batch: 'labels': labels must be integers, got {shown}")
    ):
        load_dataset("cifar10", d, cache_dir=tmp_path / "cache")


def test_integer_labels_of_any_integer_type_still_load(tmp_path: Path) -> None:
    assert as_int_labels(np.array([1, 2], np.uint8)).dtype == np.int64
    assert as_int_labels([np.int32(3), 4]).tolist() == [3, 4]
    d = write_batches(tmp_path / "cifar-10-batches-py", [0, 1, 2])
    ds = load_dataset("cifar10", d, cache_dir=tmp_path / "cache")
    assert ds.y_test.tolist() == [0, 1, 2] and ds.y_test.dtype == np.int64


def test_a_tar_gz_cut_to_a_few_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("train/a/x.png")
        info.size = 1000
        tf.addfile(info, io.BytesIO(bytes(1000)))
    cut = tmp_path / "cifar10-jpeg.tar.gz"
    cut.write_bytes(buf.getvalue()[:20])
    with pytest.raises(DataError, match=r"cannot read archive .*: truncated or corrupt \(EOFError"):
        load_dataset("cifar10", cut, cache_dir=tmp_path / "cache")
    args = ["train", "mlp-numpy", "--data_dir", str(cut), "--max_steps", "1", "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert "truncated or corrupt" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_an_idx_header_whose_sizes_overflow_int64(tmp_path: Path) -> None:
    header = b"\0\0\x08\x03" + struct.pack(">III", 2**31, 2**31, 4)  # 2**64 bytes: 0 in int64
    with pytest.raises(DataError, match=r"IDX sizes \(2147483648, 2147483648, 4\) need 18446744073709551616"):
        parse_idx(header, 3, "train-images-idx3-ubyte")


def test_a_corrupt_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main([*NUMPY_RUN, "--out", str(out)]) == 0
    assert main(["train", "mlp-numpy", "--resume", str(out), "--max_steps", "30"]) == 0
    (out / "checkpoint.npz").write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["train", "mlp-numpy", "--resume", str(out), "--max_steps", "40"]) == 2
    assert "checkpoint" in one_error_line(capsys.readouterr().err)
