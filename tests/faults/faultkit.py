"""Helpers of the fault-injection suite (a module of its own: ``conftest`` names clash across folders)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INJECT = HERE / "inject.py"
#: A short mlp-torch run on the digits: 20 steps, checkpoints at steps 10 and 20.
TORCH_RUN = ["train", "mlp-torch", "--dataset", "digits", "--device", "cpu", "--max_steps", "20",
             "--eval_freq", "10", "--batch_size", "50", "--learning_rate", "0.05", "--preprocess", "standardize"]  # fmt: skip
NUMPY_RUN = ["train", "mlp-numpy", "--dataset", "digits", "--max_steps", "20", "--eval_freq", "10",
             "--batch_size", "50", "--learning_rate", "0.05", "--preprocess", "standardize"]  # fmt: skip
SUBPROCESS_TIMEOUT_S = 120


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``backproplab``: one thread, the test's data cache."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def run_cli(
    args: list[str], cwd: Path, *, fault: str | None = None, timeout: float = SUBPROCESS_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """``python -m backproplab ARGS`` (or, with ``fault``, the same through inject.py) in ``cwd``."""
    cmd = (
        [sys.executable, str(INJECT), fault, *args] if fault else [sys.executable, "-m", "backproplab", *args]
    )
    return subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout)


def one_error_line(stderr: str) -> str:
    """The single ``error: ...`` line of ``stderr`` (asserting there is exactly that)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]
