"""CIFAR-10 loading from every supported source format, and its error messages."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from backproplab.data import cifar10, load_dataset, to_float
from backproplab.errors import DataError


def assert_matches(ds, exp, exact: bool = True) -> None:
    assert ds.name == "cifar10"
    assert ds.classes == exp.classes
    assert ds.x_train.dtype == np.uint8 and ds.x_test.dtype == np.uint8
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.x_train.shape == exp.x_train.shape and ds.x_test.shape == exp.x_test.shape
    np.testing.assert_array_equal(ds.y_train, exp.y_train)
    np.testing.assert_array_equal(ds.y_test, exp.y_test)
    if exact:
        np.testing.assert_array_equal(ds.x_train, exp.x_train)
        np.testing.assert_array_equal(ds.x_test, exp.x_test)


# ----------------------------------------------------------------------------------- official batches
def test_batches_dir_round_trip(tmp_path, writers, cache_dir):
    exp = writers.write_cifar_batches(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path / "cifar-10-batches-py", cache_dir=cache_dir)
    assert_matches(ds, exp)
    assert ds.input_shape == (32, 32, 3) and ds.num_classes == 10
    assert ds.n_train == len(exp.y_train) == 100 and ds.n_test == 20
    # The flat layout reproduces the official row format (R plane, G plane, B plane).
    np.testing.assert_array_equal(to_float(ds.x_train, "flat"), exp.rows_train.astype(np.float32))
    assert str(tmp_path / "cifar-10-batches-py") in ds.source


def test_parent_of_batches_dir(tmp_path, writers, cache_dir):
    exp = writers.write_cifar_batches(tmp_path / "cifar-10-batches-py")
    assert_matches(load_dataset("CIFAR-10", str(tmp_path), cache_dir=cache_dir), exp)


def test_official_archive(tmp_path, writers, cache_dir):
    data, exp = writers.cifar_archive_bytes()
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(data)
    ds = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert_matches(ds, exp)
    assert "cached" in ds.source
    assert len(list((cache_dir / "arrays").glob("cifar10-*.npz"))) == 1


def test_missing_batch_file_is_named(tmp_path, writers, cache_dir):
    d = tmp_path / "cifar-10-batches-py"
    writers.write_cifar_batches(d)
    (d / "data_batch_4").unlink()
    (d / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"is missing data_batch_4, batches\.meta") as info:
        load_dataset("cifar10", d, cache_dir=cache_dir)
    assert str(d) in str(info.value)


def test_corrupt_pickle_names_file(tmp_path, writers, cache_dir):
    d = tmp_path / "cifar-10-batches-py"
    writers.write_cifar_batches(d)
    good = (d / "data_batch_3").read_bytes()
    (d / "data_batch_3").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"corrupt pickle file .*data_batch_3"):
        load_dataset("cifar10", d, cache_dir=cache_dir)
    (d / "data_batch_3").write_bytes(b"\x00garbage, not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", d, cache_dir=cache_dir)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_code_is_refused(tmp_path, writers, cache_dir):
    d = tmp_path / "cifar-10-batches-py"
    writers.write_cifar_batches(d)
    (d / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch: refusing to unpickle (posix|os)\.system"):
        load_dataset("cifar10", d, cache_dir=cache_dir)


def test_batch_with_wrong_shape_or_labels(tmp_path, writers, cache_dir):
    d = tmp_path / "cifar-10-batches-py"
    writers.write_cifar_batches(d)
    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}
    (d / "data_batch_2").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(
        DataError, match=r"data_batch_2: 'data' must be uint8 of shape \(n, 3072\), got .*\(4, 100\)"
    ):
        load_dataset("cifar10", d, cache_dir=cache_dir)
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]}
    (d / "data_batch_2").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(
        DataError, match=r"data_batch_2: labels must be in \[0, 10\), got values in \[3, 10\]"
    ):
        load_dataset("cifar10", d, cache_dir=cache_dir)
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3]}
    (d / "data_batch_2").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"2 images but labels of shape \(1,\)"):
        load_dataset("cifar10", d, cache_dir=cache_dir)


# ----------------------------------------------------------------------------------- image folders
def test_png_folder_is_lossless_and_sorted(tmp_path, writers, cache_dir):
    exp = writers.write_image_folder(tmp_path / "folder", "PNG")
    ds = load_dataset("cifar10", tmp_path / "folder", cache_dir=cache_dir)
    assert ds.classes == ("airplane", "cat", "truck")  # sorted, not creation order
    assert_matches(ds, exp)


def test_jpeg_folder_is_close(tmp_path, writers, cache_dir):
    exp = writers.write_image_folder(tmp_path / "folder", "JPEG")
    ds = load_dataset("cifar10", tmp_path / "folder", cache_dir=cache_dir)
    assert_matches(ds, exp, exact=False)
    diff = np.abs(ds.x_train.astype(int) - exp.x_train.astype(int))
    assert diff.mean() < 2.0 and diff.max() <= 16
    assert not np.array_equal(ds.x_train, np.zeros_like(ds.x_train))


def test_grey_and_rgba_pngs_become_rgb(tmp_path, writers, cache_dir):
    root = tmp_path / "folder"
    grey = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) % 256
    rgba = np.dstack([np.full((32, 32), v, np.uint8) for v in (10, 20, 30, 128)])
    (root / "train" / "a").mkdir(parents=True)
    (root / "test" / "a").mkdir(parents=True)
    Image.fromarray(grey.astype(np.uint8), mode="L").save(root / "train" / "a" / "0.png")
    Image.fromarray(rgba, mode="RGBA").save(root / "test" / "a" / "0.png")
    ds = load_dataset("cifar10", root, cache_dir=cache_dir)
    np.testing.assert_array_equal(ds.x_train[0], np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2))
    np.testing.assert_array_equal(ds.x_test[0, 0, 0], [10, 20, 30])


def test_image_tar_with_prefix_and_decoys(tmp_path, writers, cache_dir):
    archive = tmp_path / "images.tar.gz"
    exp = writers.write_image_tar(archive, "PNG", prefix="cifar10/")
    ds = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert_matches(ds, exp)


def test_jpeg_tar(tmp_path, writers, cache_dir):
    archive = tmp_path / "images.tar.gz"
    exp = writers.write_image_tar(archive, "JPEG")
    ds = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert_matches(ds, exp, exact=False)
    assert np.abs(ds.x_test.astype(int) - exp.x_test.astype(int)).mean() < 2.0


def test_corrupt_image_names_file(tmp_path, writers, cache_dir):
    root = tmp_path / "folder"
    writers.write_image_folder(root, "PNG")
    bad = root / "train" / "cat" / "0002.png"
    bad.write_bytes(b"\x89PNG but not really")
    with pytest.raises(DataError, match=r"cannot decode image .*train/cat/0002\.png"):
        load_dataset("cifar10", root, cache_dir=cache_dir)
    assert not (cache_dir / "arrays").exists() or not list((cache_dir / "arrays").iterdir())


def test_truncated_jpeg_names_file(tmp_path, writers, cache_dir):
    root = tmp_path / "folder"
    writers.write_image_folder(root, "JPEG")
    bad = root / "test" / "truck" / "0001.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(DataError, match=r"cannot decode image .*test/truck/0001\.jpg"):
        load_dataset("cifar10", root, cache_dir=cache_dir)


def test_mismatched_size_names_file(tmp_path, writers, cache_dir):
    root = tmp_path / "folder"
    writers.write_image_folder(root, "PNG")
    bad = root / "train" / "truck" / "0001.png"
    bad.write_bytes(writers.encode(np.zeros((28, 30, 3), np.uint8), "PNG"))
    with pytest.raises(DataError, match=r"image .*train/truck/0001\.png is 28x30 \(HxW\), expected 32x32"):
        load_dataset("cifar10", root, cache_dir=cache_dir)


def test_corrupt_image_in_tar(tmp_path, writers, cache_dir):
    archive = tmp_path / "images.tar.gz"
    files, _ = writers.image_folder_files("PNG")
    files["test/cat/0001.png"] = b"junk"
    with tarfile.open(archive, "w:gz") as tf:
        for rel, data in files.items():
            writers.add_bytes(tf, rel, data)
    with pytest.raises(DataError, match=r"images\.tar\.gz:test/cat/0001\.png"):
        load_dataset("cifar10", archive, cache_dir=cache_dir)


def test_test_class_without_training_folder(tmp_path, writers, cache_dir):
    root = tmp_path / "folder"
    writers.write_image_folder(root, "PNG")
    (root / "test" / "zebra").mkdir()
    (root / "test" / "zebra" / "0.png").write_bytes(writers.encode(np.zeros((32, 32, 3), np.uint8), "PNG"))
    with pytest.raises(DataError, match=r"test classes \['zebra'\] have no training folder"):
        load_dataset("cifar10", root, cache_dir=cache_dir)


def test_empty_training_class(tmp_path, writers, cache_dir):
    root = tmp_path / "folder"
    writers.write_image_folder(root, "PNG")
    (root / "train" / "zebra").mkdir()
    with pytest.raises(DataError, match=r"class folder .*train/zebra has no \.png/\.jpg/\.jpeg images"):
        load_dataset("cifar10", root, cache_dir=cache_dir)


# ----------------------------------------------------------------------------------- bad paths
def test_missing_directory(tmp_path, cache_dir):
    with pytest.raises(DataError, match=r"data_dir .*nope does not exist; pass --data_dir"):
        load_dataset("cifar10", tmp_path / "nope", cache_dir=cache_dir)


def test_unrecognised_directory(tmp_path, cache_dir):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"is not a CIFAR-10 directory: found neither cifar-10-batches-py/"):
        load_dataset("cifar10", tmp_path / "stuff", cache_dir=cache_dir)


def test_image_folder_without_test(tmp_path, writers, cache_dir):
    root = tmp_path / "folder"
    writers.write_image_folder(root, "PNG")
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match=r"image folder .*folder has no test/ subdirectory"):
        load_dataset("cifar10", root, cache_dir=cache_dir)


def test_file_that_is_not_a_tar(tmp_path, cache_dir):
    f = tmp_path / "data.bin"
    f.write_bytes(b"just some bytes" * 100)
    with pytest.raises(DataError, match=r"data\.bin is neither a directory nor a tar archive"):
        load_dataset("cifar10", f, cache_dir=cache_dir)


def test_corrupt_tar_gz(tmp_path, writers, cache_dir):
    data, _ = writers.cifar_archive_bytes()
    f = tmp_path / "cifar-10-python.tar.gz"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", f, cache_dir=cache_dir)
    assert not (cache_dir / "arrays").exists() or not list((cache_dir / "arrays").iterdir())


def test_official_archive_missing_member(tmp_path, writers, cache_dir):
    files, _ = writers.cifar_batch_files()
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in files.items():
            if name != "test_batch":
                writers.add_bytes(tf, f"cifar-10-batches-py/{name}", data)
    with pytest.raises(DataError, match=r"cifar\.tar\.gz is missing test_batch"):
        load_dataset("cifar10", archive, cache_dir=cache_dir)


def test_tar_with_traversal_member_is_refused(tmp_path, writers, cache_dir):
    archive = tmp_path / "evil.tar"
    files, _ = writers.image_folder_files("PNG")
    with tarfile.open(archive, "w") as tf:
        for rel, data in files.items():
            writers.add_bytes(tf, rel, data)
        writers.add_bytes(tf, "../train/cat/9999.png", next(iter(files.values())))
    with pytest.raises(DataError, match=r"unsafe member '\.\./train/cat/9999\.png'"):
        load_dataset("cifar10", archive, cache_dir=cache_dir)


def test_tar_without_images(tmp_path, writers, cache_dir):
    archive = tmp_path / "empty.tar"
    with tarfile.open(archive, "w") as tf:
        writers.add_bytes(tf, "docs/a/b/readme.txt", b"hi")
    with pytest.raises(DataError, match=r"has no train/<class>/<image> members"):
        load_dataset("cifar10", archive, cache_dir=cache_dir)


def test_unknown_dataset_name():
    with pytest.raises(
        DataError, match=r"unknown data set 'mnist'; choose one of cifar10, fashion-mnist, digits"
    ):
        load_dataset("mnist")


def test_in_memory_official_batches_accept_protocol_5(tmp_path, writers, cache_dir):
    """Batches re-saved by Python 3 / NumPy 2 (default pickle protocol) load too."""
    files, exp = writers.cifar_batch_files()
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name, data in files.items():
        obj = pickle.loads(data)
        (d / name).write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    assert_matches(load_dataset("cifar10", d, cache_dir=cache_dir), exp)


def test_remote_archive_constant():
    assert cifar10.CIFAR10_ARCHIVE.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar10.CIFAR10_ARCHIVE.md5 == "c58f30108f718f92721af3b95e74349a"
