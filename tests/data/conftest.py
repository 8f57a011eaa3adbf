"""Writers of tiny data-set fixtures in every supported format, and a local HTTP server.

Every writer returns what it wrote (the expected arrays), so tests compare real values.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_BATCH = 20


# ----------------------------------------------------------------------------------- CIFAR batches
@dataclass
class Expected:
    """The arrays a loader should return for a fixture."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    rows_train: np.ndarray | None = None  # CIFAR row format (N, 3072), C,H,W order
    extra: dict[str, object] = field(default_factory=dict)


def cifar_batch_files(seed: int = 0) -> tuple[dict[str, bytes], Expected]:
    """Official-format batches (pickled at protocol 2, bytes keys) of PER_BATCH images each."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    rows_all, labels_all = [], []
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        rows = rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=PER_BATCH).tolist()
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": rows,
            b"filenames": [f"img_{i}.png".encode() for i in range(PER_BATCH)],
        }
        files[name] = pickle.dumps(batch, protocol=2)
        rows_all.append(rows)
        labels_all.append(np.array(labels, dtype=np.int64))
    meta = {
        b"num_cases_per_batch": PER_BATCH,
        b"label_names": [c.encode() for c in CIFAR_CLASSES],
        b"num_vis": 3072,
    }
    files["batches.meta"] = pickle.dumps(meta, protocol=2)
    nhwc = [r.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) for r in rows_all]
    expected = Expected(
        x_train=np.concatenate(nhwc[:5]),
        y_train=np.concatenate(labels_all[:5]),
        x_test=nhwc[5],
        y_test=labels_all[5],
        classes=CIFAR_CLASSES,
        rows_train=np.concatenate(rows_all[:5]),
    )
    return files, expected


def write_cifar_batches(directory: Path, seed: int = 0) -> Expected:
    """Write a ``cifar-10-batches-py``-style directory."""
    files, expected = cifar_batch_files(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return expected


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mtime: int = 1_600_000_000) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    tf.addfile(info, io.BytesIO(data))


def add_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tf.addfile(info)


def cifar_archive_bytes(seed: int = 0) -> tuple[bytes, Expected]:
    """The official ``cifar-10-python.tar.gz`` layout, in memory."""
    files, expected = cifar_batch_files(seed)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        add_dir(tf, "cifar-10-batches-py")
        add_bytes(tf, "cifar-10-batches-py/readme.html", b"<html>fixture</html>")
        for name, data in files.items():
            add_bytes(tf, f"cifar-10-batches-py/{name}", data)
    return buf.getvalue(), expected


# ----------------------------------------------------------------------------------- image folders
def smooth_images(rng: np.random.Generator, n: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """uint8 (n, H, W, 3) smooth colour gradients (JPEG keeps them to within a few levels)."""
    h, w = size
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        base = rng.uniform(40, 200, size=3)
        slope = rng.uniform(-40, 40, size=(2, 3))
        img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(img).save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


# Created in this (unsorted) order on purpose: labels must follow the sorted names.
FOLDER_CLASSES = ("truck", "airplane", "cat")
FOLDER_COUNTS = {"train": 4, "test": 2}


def image_folder_files(
    fmt: str = "PNG", seed: int = 1, noise: bool = True
) -> tuple[dict[str, bytes], Expected]:
    """Relative path -> encoded bytes of an image folder; PNG gets random noise (lossless check)."""
    rng = np.random.default_rng(seed)
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    files: dict[str, bytes] = {}
    sorted_classes = tuple(sorted(FOLDER_CLASSES))
    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[int]] = {"train": [], "test": []}
    arrays = {}
    for split, count in FOLDER_COUNTS.items():
        for cls in FOLDER_CLASSES:
            if noise and fmt == "PNG":
                imgs = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
            else:
                imgs = smooth_images(rng, count)
            for i, img in enumerate(imgs):
                files[f"{split}/{cls}/{i:04d}.{ext}"] = encode(img, fmt)
            arrays[(split, cls)] = imgs
    for split in ("train", "test"):
        for label, cls in enumerate(sorted_classes):
            xs[split].extend(arrays[(split, cls)])
            ys[split].extend([label] * FOLDER_COUNTS[split])
    expected = Expected(
        x_train=np.stack(xs["train"]),
        y_train=np.array(ys["train"], dtype=np.int64),
        x_test=np.stack(xs["test"]),
        y_test=np.array(ys["test"], dtype=np.int64),
        classes=sorted_classes,
    )
    return files, expected


def write_image_folder(root: Path, fmt: str = "PNG", seed: int = 1) -> Expected:
    files, expected = image_folder_files(fmt, seed)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return expected


def write_image_tar(path: Path, fmt: str = "JPEG", seed: int = 2, prefix: str = "") -> Expected:
    """A ``.tar.gz`` of an image folder, plus decoys the loader must skip."""
    files, expected = image_folder_files(fmt, seed)
    with tarfile.open(path, mode="w:gz") as tf:
        add_bytes(tf, f"{prefix}README.txt", b"not an image")
        add_bytes(tf, f"{prefix}train/cat/._0000.jpg", b"AppleDouble junk")
        for rel, data in reversed(list(files.items())):  # archive order must not matter
            add_bytes(tf, prefix + rel, data)
    return expected


# ----------------------------------------------------------------------------------- IDX
def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_idx_dir(directory: Path, gz: bool, seed: int = 3, n_train: int = 12, n_test: int = 5) -> Expected:
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=n_train).astype(np.uint8)
    x_test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=n_test).astype(np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    for stem, arr in [
        ("train-images-idx3-ubyte", x_train),
        ("train-labels-idx1-ubyte", y_train),
        ("t10k-images-idx3-ubyte", x_test),
        ("t10k-labels-idx1-ubyte", y_test),
    ]:
        data = idx_bytes(arr)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return Expected(
        x_train=x_train[..., None],
        y_train=y_train.astype(np.int64),
        x_test=x_test[..., None],
        y_test=y_test.astype(np.int64),
        classes=(),
    )


@pytest.fixture
def writers() -> SimpleNamespace:
    """The fixture writers above, for tests that build their own variants."""
    return SimpleNamespace(
        cifar_batch_files=cifar_batch_files,
        write_cifar_batches=write_cifar_batches,
        cifar_archive_bytes=cifar_archive_bytes,
        image_folder_files=image_folder_files,
        write_image_folder=write_image_folder,
        write_image_tar=write_image_tar,
        write_idx_dir=write_idx_dir,
        idx_bytes=idx_bytes,
        encode=encode,
        add_bytes=add_bytes,
        add_dir=add_dir,
        md5=lambda data: hashlib.md5(data).hexdigest(),
    )


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# ----------------------------------------------------------------------------------- HTTP server
@dataclass
class Route:
    body: bytes
    status: int = 200
    truncate_to: int | None = None  # send only this many bytes of body (Content-Length stays full)


class LocalServer:
    """``http.server`` on 127.0.0.1 with an ephemeral port, serving ``routes``; records requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(self.path)
                if route is None or route.status != 200:
                    self.send_error(route.status if route else 404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                body = route.body if route.truncate_to is None else route.body[: route.truncate_to]
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        host, port = self.httpd.server_address[:2]
        self.base = f"http://{host}:{port}"

    def serve(self, path: str, body: bytes, status: int = 200, truncate_to: int | None = None) -> str:
        """Serve ``body`` at ``path`` (or answer ``status``); returns the URL."""
        self.routes[path] = Route(body=body, status=status, truncate_to=truncate_to)
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    server = LocalServer()
    try:
        yield server
    finally:
        server.close()
