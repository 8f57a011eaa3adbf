"""Progress reporting: a tqdm bar on a terminal, plain lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class Progress:
    """Steps of a run. ``update`` advances the bar; ``message`` prints a line in either mode."""

    def __init__(
        self, total: int, initial: int = 0, desc: str = "train", enabled: bool | None = None
    ) -> None:
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar: Any = (
            tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True) if self.tty else None
        )

    def update(self, n: int = 1, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def message(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
