"""Downloads from a local HTTP server, and the all-or-nothing tar extraction."""

from __future__ import annotations

import io
import shutil
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest

from backproplab.data import cifar10, download_url, extract_tar_atomic, load_dataset, md5_file
from backproplab.errors import DataError


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def use_remote(monkeypatch, url: str, md5: str) -> None:
    monkeypatch.setattr(cifar10, "CIFAR10_ARCHIVE", cifar10.RemoteArchive(url, md5, "cifar-10-python.tar.gz"))
    monkeypatch.setattr(cifar10, "DOWNLOAD_TIMEOUT_S", 5.0)


# ----------------------------------------------------------------------------------- download_url
def test_download_url_good(tmp_path, http_server, writers):
    body = bytes(range(256)) * 5000
    url = http_server.serve("/blob", body)
    dest = download_url(url, tmp_path / "sub" / "blob.bin", writers.md5(body), timeout=5)
    assert dest.read_bytes() == body
    assert md5_file(dest) == writers.md5(body)
    assert files_under(tmp_path) == ["sub", "sub/blob.bin"]


def test_download_url_without_md5(tmp_path, http_server):
    url = http_server.serve("/x", b"hello")
    assert download_url(url, tmp_path / "x", timeout=5).read_bytes() == b"hello"


def test_download_url_md5_mismatch_leaves_nothing(tmp_path, http_server, writers):
    body = b"corrupted body" * 100
    url = http_server.serve("/bad", body)
    want = "0" * 32
    with pytest.raises(DataError) as info:
        download_url(url, tmp_path / "bad.bin", want, timeout=5)
    msg = str(info.value)
    assert url in msg and want in msg and writers.md5(body) in msg
    assert files_under(tmp_path) == []


def test_download_url_truncated(tmp_path, http_server):
    url = http_server.serve("/trunc", b"x" * 100_000, truncate_to=30_000)
    with pytest.raises(DataError, match=r"download of http://127\.0\.0\.1:\d+/trunc was truncated"):
        download_url(url, tmp_path / "t.bin", timeout=5)
    assert files_under(tmp_path) == []


def test_download_url_404(tmp_path, http_server):
    with pytest.raises(DataError, match=r"download of http://127\.0\.0\.1:\d+/nothing failed: HTTP 404"):
        download_url(http_server.base + "/nothing", tmp_path / "n.bin", timeout=5)
    assert files_under(tmp_path) == []


def test_download_url_connection_refused(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"
    with pytest.raises(DataError, match=rf"download of {url} failed"):
        download_url(url, tmp_path / "x", timeout=5)
    assert files_under(tmp_path) == []


def test_download_url_rejects_other_schemes(tmp_path):
    with pytest.raises(DataError, match="can only download http"):
        download_url("file:///etc/passwd", tmp_path / "p")


# ----------------------------------------------------------------------------------- CIFAR-10 download
def test_cifar_download_extract_and_reuse(tmp_path, http_server, writers, monkeypatch):
    data, exp = writers.cifar_archive_bytes()
    use_remote(monkeypatch, http_server.serve("/cifar.tar.gz", data), writers.md5(data))
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10", cache_dir=cache)
    np.testing.assert_array_equal(ds.x_train, exp.x_train)
    np.testing.assert_array_equal(ds.y_test, exp.y_test)
    assert ds.classes == exp.classes
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == data
    assert (cache / "cifar-10-python" / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert http_server.requests == ["/cifar.tar.gz"]
    again = load_dataset("cifar10", cache_dir=cache, download=False)
    np.testing.assert_array_equal(again.x_test, exp.x_test)
    assert http_server.requests == ["/cifar.tar.gz"]  # no second download
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("corrupt", r"is corrupt: md5 [0-9a-f]{32} \(\d+ bytes\), expected md5 [0-9a-f]{32}"),
        ("truncated", r"was truncated"),
        ("missing", r"failed: HTTP 404"),
    ],
)
def test_cifar_download_failures_leave_no_file(tmp_path, http_server, writers, monkeypatch, case, pattern):
    data, _ = writers.cifar_archive_bytes()
    if case == "corrupt":
        body = bytearray(data)
        body[len(body) // 2] ^= 0xFF
        url = http_server.serve("/cifar.tar.gz", bytes(body))
    elif case == "truncated":
        url = http_server.serve("/cifar.tar.gz", data, truncate_to=len(data) // 3)
    else:
        url = http_server.base + "/cifar.tar.gz"
    use_remote(monkeypatch, url, writers.md5(data))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset("cifar10", cache_dir=cache)
    assert url in str(info.value)
    assert [p for p in files_under(cache) if not Path(cache, p).is_dir()] == []


def test_cifar_no_data_and_no_download(tmp_path, monkeypatch, http_server):
    use_remote(monkeypatch, http_server.base + "/never", "0" * 32)
    with pytest.raises(
        DataError, match=r"CIFAR-10 not found \(looked for .*\) and download is off; pass --data_dir"
    ):
        load_dataset("cifar10", cache_dir=tmp_path / "cache", download=False)
    assert http_server.requests == []


def test_cifar_archive_already_in_cache(tmp_path, writers, monkeypatch):
    data, exp = writers.cifar_archive_bytes()
    use_remote(monkeypatch, "http://127.0.0.1:9/unused", writers.md5(data))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cifar-10-python.tar.gz").write_bytes(data)
    ds = load_dataset("cifar10", cache_dir=cache, download=False)
    np.testing.assert_array_equal(ds.x_train, exp.x_train)
    (cache / "cifar-10-python.tar.gz").write_bytes(data[:-10] + b"0123456789")
    shutil.rmtree(cache / "cifar-10-python")
    with pytest.raises(DataError, match=r"has md5 [0-9a-f]{32}, expected [0-9a-f]{32} .*delete it"):
        load_dataset("cifar10", cache_dir=cache, download=False)


# ----------------------------------------------------------------------------------- extraction
def make_tar(path: Path, members: list[tuple[str, bytes]], writers, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members:
            writers.add_bytes(tf, name, data)
    return path


def test_extract_good(tmp_path, writers):
    archive = make_tar(tmp_path / "a.tar.gz", [("top/x.txt", b"x"), ("top/sub/y.bin", b"\x00\x01")], writers)
    out = extract_tar_atomic(archive, tmp_path / "out")
    assert (out / "top" / "x.txt").read_bytes() == b"x"
    assert (out / "top" / "sub" / "y.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "out"]
    # An existing destination is kept as is.
    (out / "top" / "x.txt").write_bytes(b"kept")
    extract_tar_atomic(archive, out)
    assert (out / "top" / "x.txt").read_bytes() == b"kept"


@pytest.mark.parametrize(
    "bad", ["../escape.txt", "top/../../escape.txt", "/tmp/abs_escape.txt", "C:\\evil.txt"]
)
def test_extract_refuses_traversal(tmp_path, writers, bad):
    work = tmp_path / "work"
    work.mkdir()
    archive = make_tar(work / "evil.tar", [("top/ok.txt", b"ok"), (bad, b"pwned")], writers, "w")
    with pytest.raises(DataError, match="unsafe member"):
        extract_tar_atomic(archive, work / "out")
    assert sorted(p.name for p in work.iterdir()) == ["evil.tar"]
    assert not (tmp_path / "escape.txt").exists()


def test_extract_refuses_links(tmp_path, writers):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("top/passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match=r"refusing to extract link member 'top/passwd'"):
        extract_tar_atomic(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_corrupt_archive_leaves_nothing(tmp_path, writers):
    payload = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    good = make_tar(tmp_path / "good.tar.gz", [("top/a.bin", payload), ("top/b.bin", payload)], writers)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cannot extract .*bad\.tar\.gz"):
        extract_tar_atomic(bad, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz", "good.tar.gz"]
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(DataError, match="cannot extract"):
        extract_tar_atomic(garbage, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_missing_archive(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        extract_tar_atomic(tmp_path / "nope.tar.gz", tmp_path / "out")


def test_in_memory_archive_helper_is_a_real_tar(writers):
    data, _ = writers.cifar_archive_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert "cifar-10-batches-py/data_batch_1" in tf.getnames()
