"""The sweep directory, held by one sweep at a time.

Layout::

    SWEEP_DIR/
      sweep.toml     the sweep file as given (for the record)
      sweep.json     the plan: every trial's flags (what --resume runs)
      trials/NAME/   one ordinary run directory per trial (config.json, metrics.jsonl, summary.json,
                     curves.png, checkpoint, model)
      logs/NAME.log  what the trial printed
      tune/          Ray Tune's own records of each session (start or resume) of the sweep
      results.csv    the results table; results.png: the picture
      summary.json   the chosen trial, its flags, its validation metric and its test accuracy

A sweep claims the directory with an exclusive :func:`fcntl.flock` on ``.backproplab-sweep.lock``
(dropped by the operating system when the process ends, however it ends); a second sweep on the
same directory is refused in one line naming the first one's pid and host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from pathlib import Path

from backproplab.errors import ConfigError, DataError, RunDirInUseError
from backproplab.training.run_dir import default_run_dir

CLAIM_FILE = ".backproplab-sweep.lock"


class SweepDir:
    """The paths of a sweep directory, claimed while the object holds it (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self._fd: int | None = None

    plan_path = property(lambda self: self.path / "sweep.json")
    spec_copy_path = property(lambda self: self.path / "sweep.toml")
    trials_dir = property(lambda self: self.path / "trials")
    logs_dir = property(lambda self: self.path / "logs")
    tune_dir = property(lambda self: self.path / "tune")
    results_csv = property(lambda self: self.path / "results.csv")
    picture = property(lambda self: self.path / "results.png")
    summary_path = property(lambda self: self.path / "summary.json")

    def run_dir(self, name: str) -> Path:
        """The run directory of trial ``name``."""
        return self.trials_dir / name

    def log_path(self, name: str) -> Path:
        """What trial ``name`` printed."""
        return self.logs_dir / f"{name}.log"

    # ------------------------------------------------------------------ making and claiming
    @classmethod
    def create(cls, out: str | None, name: str) -> SweepDir:
        """A new sweep directory (``out``, or ``runs/sweep-<name>-<time>``), claimed; an ``out`` that
        holds anything is refused."""
        path = Path(out) if out else default_run_dir(f"sweep-{name}")
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} exists and is not a directory; choose another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the sweep directory {path}: {e.strerror}") from None
        sweep = cls(path)
        sweep.claim()
        if any(p.name != CLAIM_FILE for p in sweep.path.iterdir()):
            sweep.release()
            how = f"continue it with --resume {path}" if sweep.plan_path.is_file() else "choose another --out"
            raise ConfigError(f"sweep directory {path} already exists and is not empty; {how}")
        return sweep

    @classmethod
    def open(cls, path: str) -> SweepDir:
        """An existing sweep directory (``--resume``), claimed."""
        sweep = cls(path)
        if not sweep.plan_path.is_file():
            raise DataError(f"cannot resume: {path} is not a sweep directory (no sweep.json)")
        sweep.claim()
        return sweep

    def claim(self) -> None:
        """Hold the directory's claim file (RunDirInUseError when another sweep holds it)."""
        marker = self.path / CLAIM_FILE
        fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirInUseError(
                    f"sweep directory {self.path} is in use by another sweep"
                    f"{f' ({owner})' if owner else ''}; wait for it to finish"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%F %T')}".encode(), 0
        )
        self._fd = fd

    def release(self) -> None:
        """Let go of the claim."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> SweepDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
