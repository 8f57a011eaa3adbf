"""Helpers of the sweep tests (importable as ``sweep_helpers``): sweep files, the ``backproplab``
command in a subprocess with a Ray environment of the test's own, the clean-up of the Ray processes
a test started (found by the test's own Ray token, so nothing else on the machine is touched), and
plans made by hand."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backproplab.sweep.plan import SweepPlan, Trial

VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"


def write_spec(tmp_path: Path, text: str, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def processes_with_token(token: str) -> list[int]:
    """The live processes whose environment holds ``RAY_AUTH_TOKEN=token`` (this test's Ray)."""
    needle = f"RAY_AUTH_TOKEN={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry))
    return found


def stop_processes_with_token(token: str, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, every process of this test's Ray (see :func:`processes_with_token`)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = processes_with_token(token)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = processes_with_token(token)
        if not pids:
            return


class RayEnv:
    """An environment for the Ray processes of one test: token authentication with a token of the
    test, a short temporary root (Ray's socket paths must stay short), one BLAS thread."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(32)
        self.tmp = Path(tempfile.mkdtemp(prefix="bpl-ray-", dir="/tmp"))
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_TMPDIR": str(self.tmp),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("RAY_ADDRESS", None)

    def close(self) -> None:
        stop_processes_with_token(self.token)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sweep(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """``backproplab sweep ARGS`` in a subprocess with this environment."""
        return subprocess.run(
            [sys.executable, "-m", "backproplab", "sweep", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_sweep(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as fh:
            return subprocess.Popen(
                [sys.executable, "-m", "backproplab", "sweep", *args], env=self.env, stdout=fh, stderr=fh
            )


def make_plan_by_hand(trials: list[dict[str, object]], **fixed: object) -> SweepPlan:
    """A checked plan of ``mlp-numpy`` on digits with these searched flags (no Ray needed)."""
    plan = SweepPlan(
        name="hand",
        spec_path="hand.toml",
        trainer="mlp-numpy",
        metric="val_acc",
        mode="max",
        fixed={"dataset": "digits", "validation_size": 300, "max_steps": 40, "eval_freq": 20, **fixed},
        searched=sorted({k for t in trials for k in t}),
        trials=[Trial(i, f"trial-{i:02d}", dict(t)) for i, t in enumerate(trials)],
    )
    plan.check()
    return plan
