"""Progress reporting: a tqdm bar on a terminal, plain lines otherwise (logs, nohup, CI).

On a terminal the bar shows the step, steps per second, elapsed time and time left. Without one
(stderr redirected), a plain line with the same numbers goes to stdout every
:data:`PLAIN_EVERY_SECONDS` seconds or every :data:`PLAIN_EVERY_FRACTION` of the run's steps,
whichever comes first, so a log shows how a long run is going between its evaluations.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from tqdm import tqdm

#: Without a terminal, print a progress line at least this often (seconds) ...
PLAIN_EVERY_SECONDS = 30.0
#: ... and at least every this fraction of the run's steps.
PLAIN_EVERY_FRACTION = 0.1


def format_duration(seconds: float) -> str:
    """``42s``, ``6m05s``, ``2h03m``: short and sortable by eye; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Steps of a run. ``update`` advances the bar; ``message`` prints a line in either mode.

    ``enabled``: the bar (True), plain lines (False), or the bar exactly when stderr is a terminal
    (None). Rates and times count from construction and cover the steps of this session only
    (``initial`` steps were done before, by the run being resumed). ``clock`` and ``file`` (the
    bar's stream; stderr by default) are for tests.
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "train",
        enabled: bool | None = None,
        *,
        every_seconds: float = PLAIN_EVERY_SECONDS,
        every_fraction: float = PLAIN_EVERY_FRACTION,
        clock: Callable[[], float] = time.monotonic,
        file: IO[str] | None = None,
    ) -> None:
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.initial, self.n, self.desc = total, initial, initial, desc
        self.every_seconds = every_seconds
        self.every_steps = max(1, math.ceil(total * every_fraction))
        self.clock = clock
        self.t_start = self._t_last = clock()
        self._n_last = initial
        self.postfix: dict[str, Any] = {}
        self.bar: Any = (
            tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=file)
            if self.tty
            else None
        )

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by ``n`` steps; ``postfix`` (e.g. ``loss=...``) is shown after the numbers."""
        self.n += n
        if postfix:
            self.postfix = postfix
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            return
        now = self.clock()
        if self.n - self._n_last >= self.every_steps or now - self._t_last >= self.every_seconds:
            self._n_last, self._t_last = self.n, now
            print(self.status_line(now), flush=True)

    def status_line(self, now: float | None = None) -> str:
        """``train: step 1200/5000 (24%)  3.10 steps/s  elapsed 6m27s  ETA 20m25s  loss=1.2345``."""
        now = self.clock() if now is None else now
        elapsed = now - self.t_start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else math.nan
        eta = (self.total - self.n) / rate if rate > 0 else math.nan
        pct = 100 * self.n / self.total if self.total else 100.0
        extra = "".join(f"  {k}={v}" for k, v in self.postfix.items())
        return (
            f"{self.desc}: step {self.n}/{self.total} ({pct:.0f}%)  {rate:.2f} steps/s  "
            f"elapsed {format_duration(elapsed)}  ETA {format_duration(eta)}{extra}"
        )

    def message(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
