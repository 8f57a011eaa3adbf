"""Fashion-MNIST (IDX files, plain and gzipped) and scikit-learn's digits."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest

from backproplab.data import fashion_mnist, load_dataset
from backproplab.data.idx import parse_idx
from backproplab.errors import DataError


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, writers, cache_dir, gz):
    exp = writers.write_idx_dir(tmp_path / "fm", gz=gz)
    ds = load_dataset("fashion-mnist", tmp_path / "fm", cache_dir=cache_dir)
    assert ds.name == "fashion-mnist"
    assert ds.input_shape == (28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train, exp.x_train)
    np.testing.assert_array_equal(ds.y_train, exp.y_train)
    np.testing.assert_array_equal(ds.x_test, exp.x_test)
    np.testing.assert_array_equal(ds.y_test, exp.y_test)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and ds.num_classes == 10


def test_plain_file_preferred_and_mixed_ok(tmp_path, writers, cache_dir):
    d = tmp_path / "fm"
    exp = writers.write_idx_dir(d, gz=True)
    # Replace one .gz by its plain version: a mix of plain and .gz files loads.
    raw = gzip.decompress((d / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    (d / "t10k-labels-idx1-ubyte").write_bytes(raw)
    np.testing.assert_array_equal(load_dataset("fashion_mnist", d, cache_dir=cache_dir).y_test, exp.y_test)


def test_bad_magic(tmp_path, writers, cache_dir):
    d = tmp_path / "fm"
    writers.write_idx_dir(d, gz=False)
    data = bytearray((d / "train-images-idx3-ubyte").read_bytes())
    data[2] = 0x0D  # float32 type code
    (d / "train-images-idx3-ubyte").write_bytes(bytes(data))
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte: bad IDX magic number 0x00000d03, expected 0x00000803"
    ):
        load_dataset("fashion-mnist", d, cache_dir=cache_dir)


def test_labels_file_passed_as_images(tmp_path, writers, cache_dir):
    d = tmp_path / "fm"
    writers.write_idx_dir(d, gz=False)
    (d / "train-images-idx3-ubyte").write_bytes((d / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataError, match=r"bad IDX magic number 0x00000801, expected 0x00000803"):
        load_dataset("fashion-mnist", d, cache_dir=cache_dir)


def test_truncated_data(tmp_path, writers, cache_dir):
    d = tmp_path / "fm"
    writers.write_idx_dir(d, gz=True)
    raw = gzip.decompress((d / "t10k-images-idx3-ubyte.gz").read_bytes())
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match=r"IDX sizes \(5, 28, 28\) need 3920 data bytes, the file has 3820"):
        load_dataset("fashion-mnist", d, cache_dir=cache_dir)


def test_corrupt_gzip(tmp_path, writers, cache_dir):
    d = tmp_path / "fm"
    writers.write_idx_dir(d, gz=True)
    data = (d / "train-labels-idx1-ubyte.gz").read_bytes()
    (d / "train-labels-idx1-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cannot read .*train-labels-idx1-ubyte\.gz"):
        load_dataset("fashion-mnist", d, cache_dir=cache_dir)


def test_count_mismatch_and_label_range(tmp_path, writers, cache_dir):
    d = tmp_path / "fm"
    writers.write_idx_dir(d, gz=False)
    (d / "train-labels-idx1-ubyte").write_bytes(writers.idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(DataError, match=r"has 12 images but .*train-labels-idx1-ubyte has 11 labels"):
        load_dataset("fashion-mnist", d, cache_dir=cache_dir)
    (d / "train-labels-idx1-ubyte").write_bytes(writers.idx_bytes(np.full(12, 10, np.uint8)))
    with pytest.raises(DataError, match=r"labels must be in \[0, 10\), got values in \[10, 10\]"):
        load_dataset("fashion-mnist", d, cache_dir=cache_dir)


def test_missing_files_listed(tmp_path, writers, cache_dir):
    d = tmp_path / "fm"
    writers.write_idx_dir(d, gz=True)
    (d / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"fm is missing t10k-images-idx3-ubyte\[\.gz\]"):
        load_dataset("fashion-mnist", d, cache_dir=cache_dir)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("fashion-mnist", tmp_path / "nowhere", cache_dir=cache_dir)


def test_default_dir_absent(tmp_path, monkeypatch, cache_dir):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", tmp_path / "no-such-dir")
    with pytest.raises(
        DataError, match=r"install the Debian package dataset-fashion-mnist or pass --data_dir"
    ):
        load_dataset("fashion-mnist", cache_dir=cache_dir)


def test_default_dir_falls_back_to_cache(tmp_path, monkeypatch, writers, cache_dir):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", tmp_path / "no-such-dir")
    exp = writers.write_idx_dir(cache_dir / "fashion-mnist", gz=True)
    ds = load_dataset("fashion-mnist", cache_dir=cache_dir)
    np.testing.assert_array_equal(ds.x_test, exp.x_test)


def test_parse_idx_short_inputs():
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00\x00", 1, "f")
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]), 3, "f")


# ----------------------------------------------------------------------------------- digits
def test_digits():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", data_dir="/ignored")
    assert (ds.n_train, ds.n_test) == (1437, 360)
    assert ds.input_shape == (8, 8, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.classes == tuple(str(d) for d in range(10))
    bunch = load_digits()
    images, target = bunch.images, bunch.target
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(
        ds.x_train[:, :, :, 0], np.rint(images[perm[:1437]] * 255 / 16).astype(np.uint8)
    )
    np.testing.assert_array_equal(ds.y_test, target[perm[1437:]])
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    # 16 -> 255, 8 -> 128 (round half to even of 127.5), 1 -> 16
    assert {int(v) for v in np.unique(ds.x_train)} <= {int(np.rint(k * 255 / 16)) for k in range(17)}
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        load_dataset("digits")
