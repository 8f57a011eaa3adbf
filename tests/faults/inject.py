"""Run ``backproplab`` with one fault injected, for the fault-injection tests.

Usage: ``python inject.py FAULT ARGS...`` where FAULT is

* ``sigkill-at-step:N`` / ``sigint-at-step:N``: the process sends itself the signal when the
  training loop logs step N (``RunDir.log``, shared by every trainer);
* ``sigkill-in-save:NAME:K``: SIGKILL while the K-th atomic write of file NAME is complete in its
  temporary file but not yet renamed into place (a kill in the middle of a checkpoint save).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any


def main() -> int:
    fault, args = sys.argv[1], sys.argv[2:]
    kind, _, rest = fault.partition(":")
    if kind in ("sigkill-at-step", "sigint-at-step"):
        from backproplab.training import run_dir

        step = int(rest)
        sig = signal.SIGKILL if kind == "sigkill-at-step" else signal.SIGINT
        log = run_dir.RunDir.log

        def log_then_signal(self: Any, record: dict[str, Any]) -> None:
            log(self, record)
            if record.get("step") == step:
                os.kill(os.getpid(), sig)

        run_dir.RunDir.log = log_then_signal  # type: ignore[method-assign]
    elif kind == "sigkill-in-save":
        from backproplab.utils import atomic

        name, count = rest.rsplit(":", 1)
        seen = {"n": 0}
        commit = atomic._commit

        def commit_or_die(tmp: Path, dest: Path) -> None:
            if dest.name == name:
                seen["n"] += 1
                if seen["n"] == int(count):
                    os.kill(os.getpid(), signal.SIGKILL)
            commit(tmp, dest)

        atomic._commit = commit_or_die
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    from backproplab.cli.main import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
