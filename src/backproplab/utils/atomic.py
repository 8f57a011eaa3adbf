"""Atomic file writes: a file is either the old version or the complete new one, never half.

The data goes to a temporary file ``.<name>.<random>.tmp[<suffix>]`` in the destination's
directory, is flushed and fsynced, given the permissions the umask allows (as ``open`` would;
``mkstemp`` alone makes 0600 files) and is then renamed over the destination with
:func:`os.replace` (atomic on POSIX). On any error, or a KeyboardInterrupt, the temporary file is
removed and the destination is left untouched. A temporary file can only outlive its write when
the process is killed (SIGKILL, power loss); :func:`remove_stale_temp_files` clears those.

A full file system (``ENOSPC``, or ``EDQUOT`` over quota) is a
:class:`~backproplab.errors.DiskFullError`: one line naming the file, saying that its previous
version is unchanged and what the directory keeps.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backproplab.errors import DiskFullError

#: errno values that mean "the file system has no room for this write".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

# ".<dest name>.<8 random mkstemp characters>.tmp<suffix>", as made by atomic_path.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def current_umask() -> int:
    """The process's umask (read from /proc on Linux, else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError saying that the file system is full or over quota."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def _disk_full_in_chain(exc: BaseException) -> OSError | None:
    """The disk-full OSError behind ``exc``, if any: ``exc`` itself or what it was raised from or
    while handling (``torch.save`` turns a full disk into a RuntimeError while closing its zip)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if is_disk_full(cur):
            assert isinstance(cur, OSError)
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def disk_full_error(path: str | os.PathLike[str], exc: OSError, *, atomic: bool = True) -> DiskFullError:
    """The one-line :class:`DiskFullError` for a write of ``path`` that failed with ``exc``.

    It names the file, says whether its previous version is unchanged (``atomic`` writes) and lists
    what the directory keeps.
    """
    p = Path(path)
    try:
        kept = sorted(q.name for q in p.parent.iterdir() if not q.name.startswith("."))
    except OSError:
        kept = []
    what = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
    previous = f"; the previous {p.name}, if any, is unchanged" if atomic else ""
    keeps = f"{p.parent} keeps {', '.join(kept)}" if kept else f"nothing is kept in {p.parent}"
    err = DiskFullError(f"{what} while writing {p}{previous}; {keeps}; free some space and try again")
    err.errno = exc.errno
    err.filename = str(p)
    return err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    ``suffix`` is kept on the temporary name (some writers, such as ``np.savez``, need it). The
    file ends up with mode ``0o666 & ~umask``, like any file ``open`` creates. A full disk raises
    :class:`DiskFullError` (also an ``OSError``); the temporary file is removed in every case.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(dest, exc) from None
        raise
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        finally:
            os.close(fd)
        yield tmp
        _commit(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = _disk_full_in_chain(exc)
        if full is not None and not isinstance(exc, DiskFullError):
            raise disk_full_error(dest, full) from None
        raise


def _commit(tmp: Path, dest: Path) -> None:
    """Flush ``tmp`` to the disk and rename it onto ``dest`` (where a full disk shows at the latest;
    the fault-injection tests replace this function to simulate one)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)


def is_temp_file_name(name: str) -> bool:
    """Whether ``name`` is the name of a temporary file made by :func:`atomic_path`."""
    return _TEMP_NAME.match(name) is not None


def remove_stale_temp_files(directory: str | os.PathLike[str], target: str | None = None) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in ``directory`` (of ``target`` only, if
    given) when a process was killed mid-write; return what was removed.

    Only call it while no other process can be writing there (for a run directory: while holding
    its claim, see :class:`~backproplab.training.run_dir.RunDir`).
    """
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return []
    for p in entries:
        if not is_temp_file_name(p.name) or not p.is_file():
            continue
        if target is not None and not p.name.startswith(f".{target}."):
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
