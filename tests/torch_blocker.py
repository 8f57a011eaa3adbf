"""Run Python code in a subprocess where ``import torch`` fails, as on a machine without torch.

A ``sys.meta_path`` finder placed first refuses ``torch`` and its submodules with ImportError (what a
missing package raises), so code that needs torch fails as it would there; after the code, the
subprocess checks that ``torch`` never entered ``sys.modules``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

#: Installed before the code under test runs.
BLOCKER = """
import importlib.abc
import sys


class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: torch is not installed)", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
"""

#: Run after the code under test.
CHECK = """
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.split(".")[0] == "torch")
print("TORCH-FREE OK")
"""

#: Seconds a torch-free subprocess may take (a few training steps on a loaded 2-core machine).
TIMEOUT_S = 300


def run_without_torch(
    code: str, cwd: str | os.PathLike[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with torch blocked; assert it succeeded and never imported torch."""
    script = BLOCKER + textwrap.dedent(code) + CHECK
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, env=env, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0 and "TORCH-FREE OK" in proc.stdout, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc
