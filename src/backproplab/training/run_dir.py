"""A run directory: config.json, metrics.jsonl, summary.json, curves.png and the model file.

Every file but the metrics log is written atomically. The metrics log is appended one JSON object
per line and flushed at each evaluation, so an interrupted run keeps every line written before.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from backproplab.errors import ConfigError, DataError
from backproplab.utils.atomic import atomic_write_json, atomic_write_text


def default_run_dir(kind: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<kind>-<YYYYmmdd-HHMMSS>`` (with a counter if that exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{kind}-{stamp}"
    i = 1
    while path.exists():
        path = Path(root) / f"{kind}-{stamp}-{i}"
        i += 1
    return path


class RunDir:
    """The files of one training run.

    A new run refuses an existing non-empty directory, so nothing a user made is overwritten;
    ``resume=True`` opens an existing run instead.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.path = Path(path)
        if resume:
            if not (self.path / "config.json").is_file():
                raise DataError(f"cannot resume: {self.path} is not a run directory (no config.json)")
        elif self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise ConfigError(
                f"output directory {self.path} already exists and is not empty; choose another --out"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self._metrics_fh: Any = None

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

    def load_config(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.config_path.read_text()))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {self.config_path}: {e}") from None

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record (a JSON object on one line).

        Non-finite floats are written as the strings "nan", "inf" and "-inf", keeping the file
        strict JSON that any reader parses.
        """
        if self._metrics_fh is None:
            self._metrics_fh = open(self.metrics_path, "a", encoding="utf-8")
        self._metrics_fh.write(json.dumps(json_safe(record), allow_nan=False) + "\n")

    def flush(self) -> None:
        if self._metrics_fh is not None:
            self._metrics_fh.flush()
            os.fsync(self._metrics_fh.fileno())

    def close(self) -> None:
        if self._metrics_fh is not None:
            self.flush()
            self._metrics_fh.close()
            self._metrics_fh = None

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after ``last_step`` (used when resuming from a checkpoint at that step)."""
        self.close()
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (also inside lists and dicts) replaced by its string."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


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
