"""Download a file over HTTP(S) into place, all or nothing, with an optional md5 check.

The body is streamed to a temporary file next to ``dest`` while its md5 is computed; only when the
byte count matches ``Content-Length`` and the md5 matches is it renamed onto ``dest``. Any failure
(network error, HTTP error, truncated body, md5 mismatch) raises
:class:`~backproplab.errors.DataError` naming the URL, and leaves no partial file behind.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from backproplab.errors import DataError
from backproplab.utils.atomic import atomic_path

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def md5_file(path: str | os.PathLike[str]) -> str:
    """Hex md5 digest of a file's content."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download_url(
    url: str, dest: str | os.PathLike[str], md5: str | None = None, *, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` atomically and return ``dest`` as a :class:`Path`.

    ``md5`` (hex, case-insensitive) is checked when given. ``timeout`` (seconds) bounds each
    blocking socket operation, not the whole transfer. Only ``http`` and ``https`` URLs are
    accepted.
    """
    dest_path = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DataError(f"can only download http(s) URLs, got {url!r}")
    expected = md5.lower() if md5 is not None else None
    log.info("downloading %s to %s", url, dest_path)
    try:
        with atomic_path(dest_path) as tmp:
            digest, n_bytes, length = _fetch(url, tmp, timeout)
            if length is not None and n_bytes != length:
                raise DataError(
                    f"download of {url} was truncated: got {n_bytes} bytes, Content-Length is {length}"
                )
            if expected is not None and digest != expected:
                raise DataError(
                    f"download of {url} is corrupt: md5 {digest} ({n_bytes} bytes), expected md5 {expected}"
                )
    except DataError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"download of {url} failed: {exc.reason}") from None
    except http.client.IncompleteRead as exc:
        raise DataError(
            f"download of {url} was truncated: the connection closed after {len(exc.partial)} bytes "
            f"of the current read, {exc.expected} more expected"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DataError(f"download of {url} failed: {type(exc).__name__}: {exc}") from None
    return dest_path


def _fetch(url: str, tmp: Path, timeout: float) -> tuple[str, int, int | None]:
    """Stream ``url`` into ``tmp``; return (md5 hex, bytes written, Content-Length or None)."""
    h = hashlib.md5(usedforsecurity=False)
    n_bytes = 0
    request = urllib.request.Request(url, headers={"User-Agent": "backproplab"})
    with urllib.request.urlopen(request, timeout=timeout) as resp, open(tmp, "wb") as out:
        header = resp.headers.get("Content-Length")
        length = int(header) if header is not None and header.strip().isdigit() else None
        while chunk := resp.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
            n_bytes += len(chunk)
    return h.hexdigest(), n_bytes, length
