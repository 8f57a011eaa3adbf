"""The cache of decoded arrays: hits skip decoding, changes of the source miss, bad files rebuild."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from backproplab.data import decode, default_cache_dir, load_dataset
from backproplab.data.cache import cache_file, source_key
from backproplab.errors import DataError


def _no_decode(*args, **kwargs):
    raise AssertionError("decode_images was called on a cache hit")


@pytest.mark.parametrize("kind", ["tar", "folder"])
def test_second_load_is_a_cache_hit(tmp_path, writers, cache_dir, monkeypatch, kind):
    if kind == "tar":
        src = tmp_path / "images.tar.gz"
        writers.write_image_tar(src, "JPEG")
    else:
        src = tmp_path / "folder"
        writers.write_image_folder(src, "PNG")
    first = load_dataset("cifar10", src, cache_dir=cache_dir)
    assert "decoded, cached in" in first.source
    monkeypatch.setattr(decode, "decode_images", _no_decode)
    second = load_dataset("cifar10", src, cache_dir=cache_dir)
    assert "decoded arrays from cache" in second.source
    for attr in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(first, attr), getattr(second, attr)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert first.classes == second.classes
    # Only the finished .npz is left: no temporary files.
    names = [p.name for p in (cache_dir / "arrays").iterdir()]
    assert len(names) == 1 and names[0].startswith("cifar10-") and names[0].endswith(".npz")
    if kind == "tar":
        assert names[0] == cache_file(cache_dir, "cifar10", source_key(src)).name


def test_changed_source_misses(tmp_path, writers, cache_dir):
    src = tmp_path / "images.tar.gz"
    writers.write_image_tar(src, "PNG", seed=5)
    load_dataset("cifar10", src, cache_dir=cache_dir)
    exp = writers.write_image_tar(src, "PNG", seed=6)  # new content, new size/mtime
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ds = load_dataset("cifar10", src, cache_dir=cache_dir)
    np.testing.assert_array_equal(ds.x_train, exp.x_train)
    assert len(list((cache_dir / "arrays").iterdir())) == 2


def test_edit_inside_folder_misses(tmp_path, writers, cache_dir):
    root = tmp_path / "folder"
    writers.write_image_folder(root, "PNG")
    load_dataset("cifar10", root, cache_dir=cache_dir)
    img = root / "train" / "cat" / "0000.png"
    img.write_bytes(writers.encode(np.full((32, 32, 3), 7, np.uint8), "PNG"))
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ds = load_dataset("cifar10", root, cache_dir=cache_dir)
    cat = ds.classes.index("cat")
    np.testing.assert_array_equal(ds.x_train[ds.y_train == cat][0], np.full((32, 32, 3), 7, np.uint8))


def test_corrupt_cache_file_is_rebuilt(tmp_path, writers, cache_dir, caplog):
    src = tmp_path / "images.tar.gz"
    exp = writers.write_image_tar(src, "PNG")
    load_dataset("cifar10", src, cache_dir=cache_dir)
    (npz,) = (cache_dir / "arrays").iterdir()
    npz.write_bytes(npz.read_bytes()[:1000])
    ds = load_dataset("cifar10", src, cache_dir=cache_dir)
    np.testing.assert_array_equal(ds.x_train, exp.x_train)
    assert "ignoring unreadable cache file" in caplog.text
    assert "decoded, cached in" in ds.source
    np.testing.assert_array_equal(load_dataset("cifar10", src, cache_dir=cache_dir).x_test, exp.x_test)


def test_unwritable_cache_still_loads(tmp_path, writers):
    src = tmp_path / "images.tar.gz"
    exp = writers.write_image_tar(src, "PNG")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    ds = load_dataset("cifar10", src, cache_dir=blocker)
    np.testing.assert_array_equal(ds.x_train, exp.x_train)
    assert "not cached" in ds.source


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BACKPROPLAB_CACHE", "~/somewhere")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "somewhere"
    monkeypatch.delenv("BACKPROPLAB_CACHE")
    assert default_cache_dir() == Path(tmp_path) / ".cache" / "backproplab"


def test_env_cache_dir_is_used(monkeypatch, tmp_path, writers):
    monkeypatch.setenv("BACKPROPLAB_CACHE", str(tmp_path / "envcache"))
    src = tmp_path / "images.tar.gz"
    writers.write_image_tar(src, "PNG")
    load_dataset("cifar10", src)
    assert len(list((tmp_path / "envcache" / "arrays").glob("cifar10-*.npz"))) == 1


def test_cache_miss_does_not_hide_errors(tmp_path, cache_dir):
    with pytest.raises(DataError):
        load_dataset("cifar10", tmp_path / "missing.tar.gz", cache_dir=cache_dir)


def test_no_data_dir_uses_a_copy_decoded_earlier(tmp_path, writers, cache_dir, monkeypatch):
    with pytest.raises(DataError, match="download is off"):
        load_dataset("cifar10", None, cache_dir=cache_dir, download=False)
    src = tmp_path / "images.tar.gz"
    exp = writers.write_image_tar(src, "PNG")
    load_dataset("cifar10", src, cache_dir=cache_dir)
    src.unlink()  # the cached arrays alone must do
    monkeypatch.setattr(decode, "decode_images", _no_decode)
    ds = load_dataset("cifar10", None, cache_dir=cache_dir, download=False)
    np.testing.assert_array_equal(ds.x_train, exp.x_train)
    np.testing.assert_array_equal(ds.y_test, exp.y_test)
    assert "decoded arrays from cache" in ds.source
