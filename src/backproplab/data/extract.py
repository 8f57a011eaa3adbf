"""Safe tar handling: member-name checks and all-or-nothing extraction.

:func:`extract_tar_atomic` extracts into a temporary directory beside the destination and renames
it into place only once every member is written, so a crash or a corrupt archive never leaves a
half-extracted directory that a later run would mistake for a complete one. Members with absolute
paths or ``..`` components, links and device files are refused (path traversal).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from backproplab.errors import DataError

log = logging.getLogger(__name__)

# What a damaged .tar / .tar.gz / .tar.bz2 / .tar.xz raises while it is read.
TAR_READ_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error, OSError)
try:  # lzma is optional in some Python builds
    import lzma

    TAR_READ_ERRORS = (*TAR_READ_ERRORS, lzma.LZMAError)
except ImportError:  # pragma: no cover
    pass


def check_member_name(archive: str | os.PathLike[str], name: str) -> tuple[str, ...]:
    """Return a tar member's name as relative path components; :class:`DataError` if it could escape.

    Refused: absolute paths (``/x``, ``C:\\x``), any ``..`` component, empty names. ``.`` and empty
    components are dropped (``./a//b`` -> ``("a", "b")``).
    """
    normalized = name.replace("\\", "/")
    parts = tuple(p for p in normalized.split("/") if p not in ("", "."))
    if (
        not parts
        or normalized.startswith("/")
        or ".." in parts
        or (len(normalized) > 1 and normalized[1] == ":")  # a Windows drive letter
    ):
        raise DataError(f"unsafe member {name!r} in archive {archive}: absolute or '..' paths are refused")
    return parts


def extract_tar_atomic(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract ``archive`` (any tar compression) so that ``dest`` becomes a directory of its members.

    ``dest`` appears complete or not at all. If ``dest`` already exists it is returned untouched
    (a previous or concurrent extraction finished first). Only regular files and directories are
    extracted; an unsafe member name, a link or device member, or a damaged archive raises
    :class:`DataError` and leaves nothing behind.
    """
    archive_path = Path(archive)
    dest_path = Path(dest)
    if dest_path.exists():
        return dest_path
    if not archive_path.is_file():
        raise DataError(f"archive {archive_path} does not exist or is not a file")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_path.name}.", suffix=".extracting", dir=dest_path.parent))
    try:
        _extract_members(archive_path, tmp)
        try:
            os.replace(tmp, dest_path)
        except OSError:
            if not dest_path.is_dir():  # not a lost race with another extraction: a real failure
                raise
            log.info("%s was extracted concurrently; using that copy", dest_path)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, TAR_READ_ERRORS) and not isinstance(exc, DataError):
            raise DataError(
                f"cannot extract {archive_path} into {dest_path}: corrupt archive or write error "
                f"({type(exc).__name__}: {exc})"
            ) from None
        raise
    return dest_path


def _extract_members(archive: Path, out: Path) -> None:
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            target = out.joinpath(*check_member_name(archive, member.name))
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise DataError(f"cannot read member {member.name!r} of {archive}")
                with src, open(target, "wb") as fh:
                    shutil.copyfileobj(src, fh, 1 << 20)
            else:
                kind = "link" if member.issym() or member.islnk() else "special file"
                raise DataError(f"refusing to extract {kind} member {member.name!r} from archive {archive}")
