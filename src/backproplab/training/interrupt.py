"""Ctrl-C that waits for a consistent state: the step in progress finishes before training stops.

A KeyboardInterrupt raised in the middle of ``optimizer.step()`` would leave some parameters
updated and others not, and the checkpoint saved on the way out would hold that torn state.
Inside :func:`deferred_interrupts` the first SIGINT only sets ``pending``; the trainer calls
:meth:`InterruptFlag.raise_if_pending` at the start of each step, where nothing is half done, and
the training loop then saves the checkpoint of the steps completed. A second SIGINT raises at
once (``forced`` is then true and the trainer keeps its last checkpoint instead of saving a
possibly torn one). Outside the main thread signals cannot be caught and nothing is deferred.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


class InterruptFlag:
    """The state of Ctrl-C during training: ``pending`` (asked to stop) and ``forced`` (asked twice)."""

    def __init__(self) -> None:
        self.pending = False
        self.forced = False

    def raise_if_pending(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed since training started."""
        if self.pending:
            raise KeyboardInterrupt

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.pending:
            self.forced = True
            raise KeyboardInterrupt
        self.pending = True
        print(
            "\ninterrupt: finishing the current step, then saving a checkpoint (Ctrl-C again to stop now)",
            file=sys.stderr,
        )


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[InterruptFlag]:
    """Install the deferring SIGINT handler for the block (main thread only); yield its flag."""
    flag = InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, flag._handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
