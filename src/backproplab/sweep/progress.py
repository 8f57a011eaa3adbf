"""The sweep's progress line: trials done, running and pending, and the best so far.

``sweep report-mlp: 5/16 done (2 stopped early, 1 failed), 2 running, 9 pending; best val_acc 0.5123
(trial-04); 12m03s`` is printed whenever a trial starts or ends, when the best value changes, and
at least every :data:`HEARTBEAT_SECONDS` while trials run. No Ray here: the runner feeds the events
from its Ray Tune callback.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO

from backproplab.training.progress import format_duration

#: While trials run, print the line at least this often (seconds).
HEARTBEAT_SECONDS = 60.0


class SweepProgress:
    """Counts of the sweep's trials and the best value of ``metric`` (``mode`` max or min)."""

    def __init__(
        self,
        name: str,
        total: int,
        metric: str,
        mode: str,
        *,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.name, self.total, self.metric, self.mode = name, total, metric, mode
        self.file = file
        self.clock, self.heartbeat = clock, heartbeat
        self.t_start = self._t_last = clock()
        self.running: set[str] = set()
        self.done: dict[str, str] = {}  # name -> "done", "stopped" or "failed"
        self.values: dict[str, float] = {}  # name -> last reported value of the metric
        self._best: tuple[str, float] | None = None

    # ------------------------------------------------------------------ events
    def started(self, trial: str) -> None:
        self.running.add(trial)
        self.done.pop(trial, None)
        self._print()

    def result(self, trial: str, value: float) -> None:
        """A reported value of the metric; prints when the best changes."""
        if not math.isfinite(value):
            return
        self.values[trial] = value
        before = self._best
        self._best = self.best()
        if self._best != before:
            self._print()

    def finished(self, trial: str, how: str) -> None:
        """``how``: ``done``, ``stopped`` (early, by the scheduler) or ``failed``."""
        self.running.discard(trial)
        self.done[trial] = how
        self._print()

    def tick(self) -> None:
        """Print the line if nothing was printed for a heartbeat while trials run."""
        if self.running and self.clock() - self._t_last >= self.heartbeat:
            self._print()

    # ------------------------------------------------------------------ the line
    def best(self) -> tuple[str, float] | None:
        """(trial, value) of the best last-reported value so far."""
        if not self.values:
            return None
        pick = max if self.mode == "max" else min
        name = pick(self.values, key=lambda k: self.values[k])
        return name, self.values[name]

    def line(self) -> str:
        n_done = len(self.done)
        extra = [
            f"{n} {label}"
            for label, n in (
                ("stopped early", sum(v == "stopped" for v in self.done.values())),
                ("failed", sum(v == "failed" for v in self.done.values())),
            )
            if n
        ]
        pending = max(0, self.total - n_done - len(self.running))
        best = self.best()
        best_text = f"best {self.metric} {best[1]:.4f} ({best[0]})" if best else f"no {self.metric} yet"
        extra_text = f" ({', '.join(extra)})" if extra else ""
        return (
            f"sweep {self.name}: {n_done}/{self.total} done{extra_text}, "
            f"{len(self.running)} running, {pending} pending; {best_text}; "
            f"{format_duration(self.clock() - self.t_start)}"
        )

    def _print(self) -> None:
        self._t_last = self.clock()
        print(self.line(), file=self.file or sys.stdout, flush=True)
