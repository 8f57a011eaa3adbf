"""A run directory: config.json, metrics.jsonl, summary.json, curves.png and the model file.

Every file but the metrics log is written atomically. The metrics log is appended one JSON object
per line and flushed at each evaluation, so an interrupted run keeps every line written before.

**Claiming.** A run owns its directory from the moment its :class:`RunDir` is made, before any
slow data loading: the directory is created with :func:`os.mkdir` (or found empty) and the claim
file ``.backproplab-run.lock`` is created in it with ``O_CREAT | O_EXCL`` and held with an
exclusive :func:`fcntl.flock` for as long as the run goes. A second run (or ``--resume``) given
the same directory while the first one holds it is refused with one line
(:class:`~backproplab.errors.RunDirInUseError`); the operating system drops the lock when the
process ends, however it ends, so a killed run never blocks the directory. The claim file is
removed when the run lets go of the directory.

**Reuse.** A new run refuses a non-empty directory, so nothing a user made is overwritten, with
one exception: a directory left by a run that was killed before it logged a single metric (it
holds at most the claim file, a backproplab ``config.json``, an empty ``metrics.jsonl`` and
temporary files) has nothing worth keeping and is taken over. Any other directory (a run with
metrics, a checkpoint or a summary) is refused with a message saying how to proceed:
``--resume`` when it has a checkpoint, otherwise delete it or choose another ``--out``.

**Leftovers.** Temporary files of atomic writes that a killed run left behind
(``.checkpoint.pt.*.tmp.pt``, ...) are removed whenever a run claims the directory (new or
resumed), since no other writer can then be at work there. A run that fails before training
starts (``--device cuda`` on a CPU machine, missing data) removes what it created:
:meth:`RunDir.abandon`, called by the CLI through :func:`abandon_unstarted_runs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import gc
import json
import os
import socket
import time
import weakref
from pathlib import Path
from typing import Any

from backproplab.errors import BackproplabError, ConfigError, DataError, RunDirInUseError
from backproplab.utils.atomic import (
    atomic_write_json,
    atomic_write_text,
    disk_full_error,
    is_disk_full,
    is_temp_file_name,
    remove_stale_temp_files,
)
from backproplab.utils.jsonsafe import json_safe

#: The claim file of a run directory (present while a run holds the directory).
CLAIM_FILE = ".backproplab-run.lock"
#: The checkpoint files of the trainers (PyTorch, NumPy).
CHECKPOINT_NAMES = ("checkpoint.pt", "checkpoint.npz")

# Directories made by default_run_dir in this process (so a run that fails may remove them).
_RESERVED: set[Path] = set()
# The RunDirs of this process, for abandon_unstarted_runs.
_LIVE: weakref.WeakSet[RunDir] = weakref.WeakSet()
_SERIAL = [0]


def default_run_dir(kind: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<kind>-<YYYYmmdd-HHMMSS>`` (with a counter if that exists already), created empty.

    The directory is made with :func:`os.mkdir`, so two runs started in the same second get two
    directories; the run then claims it (see :class:`RunDir`).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _out_error(base, e) from None
    i = 0
    while True:
        path = base / (f"{kind}-{stamp}" if i == 0 else f"{kind}-{stamp}-{i}")
        try:
            os.mkdir(path)
        except FileExistsError:
            i += 1
            continue
        except OSError as e:
            raise _out_error(path, e) from None
        _RESERVED.add(path.absolute())
        return path


def _out_error(path: Path, e: OSError) -> BackproplabError:
    """A one-line error for a run directory that cannot be created or written."""
    if is_disk_full(e):
        return disk_full_error(path, e, atomic=False)
    reasons = {
        errno.ENOTDIR: "a component of the path is a file, not a directory",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }
    reason = reasons.get(e.errno or 0, e.strerror or type(e).__name__)
    culprit = _file_above(path) if e.errno == errno.ENOTDIR else e.filename
    where = f" ({culprit})" if culprit and str(culprit) != str(path) else ""
    return ConfigError(f"cannot create the run directory {path}: {reason}{where}; choose another --out")


def _file_above(path: Path) -> Path:
    """The first component of ``path`` that exists and is not a directory (or ``path.parent``)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path.parent


def last_run_serial() -> int:
    """The serial number of the newest :class:`RunDir` of this process (0 before the first)."""
    return _SERIAL[0]


def abandon_unstarted_runs(since: int = 0) -> None:
    """:meth:`RunDir.abandon` the run directories made after serial ``since`` (see
    :func:`last_run_serial`) whose training never started."""
    for run in list(_LIVE):
        if run.serial > since:
            run.abandon()


class RunDir:
    """The files of one training run, claimed for this run alone (see the module docstring).

    A new run refuses an existing non-empty directory (except the leftovers of a run killed before
    its first step), so nothing a user made is overwritten; ``resume=True`` opens an existing run
    instead. Either way the directory is claimed at once; :meth:`release` (or the end of the
    process) lets go of it.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        self._metrics_fh: Any = None
        self._tensorboard: Any = None  # the run's TensorBoard scalars, opened with the first record
        self._claim_fd: int | None = None
        self._created = False  # this run made the directory
        self._wrote_config = False
        self.started = False  # a metric was logged: the run has results to keep
        if resume:
            if not (self.path / "config.json").is_file():
                raise DataError(f"cannot resume: {self.path} is not a run directory (no config.json)")
            self._claim()
        else:
            self._create()
            self._claim()
            try:
                self._check_reusable()
            except BaseException:
                self.release()
                raise
        remove_stale_temp_files(self.path)
        _SERIAL[0] += 1
        self.serial = _SERIAL[0]
        _LIVE.add(self)

    # ------------------------------------------------------------------ claiming
    def _create(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a parent directory should be
            raise _out_error(self.path, NotADirectoryError(errno.ENOTDIR, "Not a directory")) from None
        except OSError as e:
            raise _out_error(self.path, e) from None
        try:
            os.mkdir(self.path)
            self._created = True
        except FileExistsError:
            if not self.path.is_dir():
                raise ConfigError(
                    f"output directory {self.path} exists and is not a directory; choose another --out"
                ) from None
            self._created = self.path.absolute() in _RESERVED
        except OSError as e:
            raise _out_error(self.path, e) from None

    def _claim(self) -> None:
        """Create (``O_EXCL``) or open the claim file and lock it; RunDirInUseError if held."""
        marker = self.path / CLAIM_FILE
        collected = False
        while True:
            try:
                try:
                    fd = os.open(marker, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                    os.write(fd, _owner_text().encode())  # named at once, for a run refused meanwhile
                except FileExistsError:
                    try:
                        fd = os.open(marker, os.O_RDWR)
                    except FileNotFoundError:
                        continue  # released between the two opens: try again
            except OSError as e:
                raise _out_error(self.path, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                owner = _read_owner(fd)
                os.close(fd)
                if owner.startswith(f" (pid {os.getpid()} ") and not collected:
                    # Held by a RunDir of this process: if that object is unreachable garbage
                    # (a finished run caught in a reference cycle), collecting it lets go.
                    collected = True
                    gc.collect()
                    continue
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunDirInUseError(
                        f"run directory {self.path} is in use by another run{owner}; wait for it to "
                        "finish or choose another --out"
                    ) from None
                raise _out_error(self.path, e) from None
            try:
                same = os.stat(marker).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed it while letting go: claim anew
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, _owner_text().encode(), 0)
            except OSError as e:
                os.close(fd)
                raise _out_error(self.path, e) from None
            self._claim_fd = fd
            return

    def _check_reusable(self) -> None:
        """Raise ConfigError unless the (claimed) directory holds nothing of another run."""
        names = {p.name for p in self.path.iterdir()} - {CLAIM_FILE}
        names = {n for n in names if not is_temp_file_name(n)}
        if not names:
            return
        leftover_of_killed_run = names <= {"config.json", "metrics.jsonl"} and (
            _is_run_config(self.config_path)
            and (not self.metrics_path.exists() or _has_no_records(self.metrics_path))
        )
        if leftover_of_killed_run:
            for name in names:  # a config and an empty log of a run killed before its first step
                (self.path / name).unlink()
            return
        shown = ", ".join(sorted(names)[:6]) + (", ..." if len(names) > 6 else "")
        if any(name in names for name in CHECKPOINT_NAMES):
            how = f"continue it with --resume {self.path}, or choose another --out"
        elif "metrics.jsonl" in names and "summary.json" not in names:
            how = (
                "it holds a run that stopped before its first checkpoint and cannot be resumed; "
                f"delete it (rm -r {self.path}) to start again there, or choose another --out"
            )
        else:
            how = "choose another --out"
        raise ConfigError(f"output directory {self.path} already exists and is not empty ({shown}); {how}")

    def release(self) -> None:
        """Let go of the directory: close the metrics log and remove the claim file."""
        with contextlib.suppress(Exception):
            self.close()
        fd, self._claim_fd = self._claim_fd, None
        if fd is None:
            return
        try:
            marker = self.path / CLAIM_FILE
            with contextlib.suppress(OSError):
                if os.stat(marker).st_ino == os.fstat(fd).st_ino:
                    marker.unlink()
        finally:
            os.close(fd)

    def abandon(self) -> None:
        """Remove what this run created if it holds nothing worth keeping, then :meth:`release`.

        For a new run that has not logged a metric and whose directory holds only what it wrote
        before training (its config.json, an empty metrics.jsonl, the claim file, temporary files),
        those files are removed, and the directory too when this run made it. A resumed run, or a
        directory with anything else in it (metrics, a checkpoint, a summary), keeps everything.
        """
        if self._claim_fd is None:
            return
        with contextlib.suppress(Exception):
            self.close()
        if not self.resume and not self.started and self._holds_only_setup_files():
            if self._wrote_config:
                self.config_path.unlink(missing_ok=True)
            if self.metrics_path.is_file():
                self.metrics_path.unlink(missing_ok=True)
            remove_stale_temp_files(self.path)
            self.release()
            if self._created:
                with contextlib.suppress(OSError):
                    self.path.rmdir()  # only if empty
                _RESERVED.discard(self.path.absolute())
            return
        self.release()

    def _holds_only_setup_files(self) -> bool:
        try:
            names = {p.name for p in self.path.iterdir()}
        except OSError:
            return False
        names = {n for n in names if n != CLAIM_FILE and not is_temp_file_name(n)}
        if "config.json" in names and not self._wrote_config:
            return False
        if "metrics.jsonl" in names and not _has_no_records(self.metrics_path):
            return False
        return names <= {"config.json", "metrics.jsonl"}

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    curves_path = property(lambda self: self.path / "curves.png")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")

    def save_config(self, config: Any, **extra: Any) -> None:
        """Write the resolved config (a dataclass or dict) plus ``extra`` entries to config.json."""
        is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
        data = dataclasses.asdict(config) if is_instance else dict(config)
        data.update(extra)
        atomic_write_json(self.config_path, data)
        self._wrote_config = True

    def load_config(self) -> dict[str, Any]:
        """The saved config.json as a dict (DataError if it cannot be read)."""
        try:
            return dict(json.loads(self.config_path.read_text()))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {self.config_path}: {e}") from None

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record (a JSON object on one line).

        Non-finite floats are written as the strings "nan", "inf" and "-inf", keeping the file
        strict JSON that any reader parses.
        """
        self.started = True
        line = json.dumps(json_safe(record), allow_nan=False) + "\n"
        try:
            if self._metrics_fh is None:
                self._metrics_fh = open(self.metrics_path, "a", encoding="utf-8")
            self._metrics_fh.write(line)
            if self._tensorboard is None:
                from backproplab.training.tensorboard import TensorBoardLog

                self._tensorboard = TensorBoardLog(self.path)
            self._tensorboard.log(record)
        except OSError as e:
            self._fail_metrics(e)

    def flush(self) -> None:
        """Write the buffered metrics to disk (fsync); a full disk is a DiskFullError."""
        if self._metrics_fh is not None:
            try:
                self._metrics_fh.flush()
                os.fsync(self._metrics_fh.fileno())
            except OSError as e:
                self._fail_metrics(e)
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def close(self) -> None:
        """Flush and close the metrics log (it reopens on the next :meth:`log`)."""
        if self._metrics_fh is not None:
            self.flush()
            fh, self._metrics_fh = self._metrics_fh, None
            fh.close()
        if self._tensorboard is not None:
            tb, self._tensorboard = self._tensorboard, None
            tb.close()

    def _fail_metrics(self, e: OSError) -> None:
        """Drop the metrics file handle (its buffer cannot be written) and raise a one-line error."""
        fh, self._metrics_fh = self._metrics_fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()
        if is_disk_full(e):
            raise disk_full_error(self.metrics_path, e, atomic=False) from None
        raise e

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of this run's metrics.jsonl."""
        return read_metrics(self.path)

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after ``last_step`` (used when resuming from a checkpoint at that step)."""
        self.close()
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write summary.json atomically. The summary is a run's last file (completed, diverged or
        interrupted), so it also lets go of the directory (:meth:`release`): a ``--resume`` may claim it."""
        atomic_write_json(self.summary_path, summary)
        self.release()


def _owner_text() -> str:
    """What the claim file says about its holder."""
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"


def _read_owner(fd: int) -> str:
    """`` (pid N on HOST since ...)`` from a claim file, or "" when it cannot be read."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


def _is_run_config(path: Path) -> bool:
    """Whether ``path`` is a config.json written by a backproplab run (it names its trainer)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "trainer" in data


def _has_no_records(path: Path) -> bool:
    """Whether the metrics log ``path`` holds no complete record (empty, or one torn line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return False
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        return False
    return True


def read_metrics(run_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``run_path/metrics.jsonl`` (a torn last line, from a crash, is skipped)."""
    path = Path(run_path) / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{run_path} has no metrics.jsonl: not a run directory")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
