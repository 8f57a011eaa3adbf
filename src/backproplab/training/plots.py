"""Training curves as pictures: one run's loss and accuracy, or several runs overlaid.

What the pictures promise a reader:

* the loss axis is logarithmic when the finite losses span more than :data:`LOG_RANGE` (a run
  that diverged to 1e38 would otherwise flatten every other curve to zero); ``logy`` forces it;
* a run whose loss became non-finite is marked with an x at its last finite value and labelled
  "diverged at step N";
* an accuracy panel with nothing to draw says why;
* steps are integers on the x axis;
* the image format comes from the file's extension (:data:`FORMATS`); any other is an error.

:func:`plot_run_dirs` labels runs by what differs between them (trainer, data set and the flags
that vary, read from each run's ``config.json``) and refuses to overlay runs on different data
sets unless asked.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from backproplab.errors import ConfigError
from backproplab.training.run_dir import read_metrics
from backproplab.utils.figures import image_format, pyplot, save_figure

plt = pyplot()

#: The loss axis turns logarithmic when max / min of the finite positive losses exceeds this.
LOG_RANGE = 100.0
#: config.json entries that never label a run (paths, bookkeeping).
UNLABELLED = frozenset({"out", "data_dir", "data_source", "resume", "track_stats", "eval_batch_size"})


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["step"]), _finite(r.get(key))) for r in records if key in r and "step" in r]
    kept = [(s, v) for s, v in pts if v is not None]
    return [p[0] for p in kept], [p[1] for p in kept]


def diverged_step(records: Sequence[dict[str, Any]]) -> int | None:
    """The first step whose training loss is not a finite number (NaN, inf, null or "nan")."""
    for r in records:
        if "train_loss" in r and _finite(r["train_loss"]) is None:
            return int(r["step"])
    return None


def _smooth(values: list[float]) -> list[float] | None:
    k = max(1, len(values) // 50)
    if k == 1:
        return None
    out, acc = [], 0.0
    for j, v in enumerate(values):
        acc += v
        if j >= k:
            acc -= values[j - k]
        out.append(acc / min(j + 1, k))
    return out


def plot_runs(
    runs: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    path: str | os.PathLike[str],
    title: str = "",
    *,
    logy: bool | None = None,
) -> Path:
    """Draw train loss (left) and test accuracy (right) against step for each (label, records).

    Train loss is drawn faintly per step with a moving average on top; test loss, when logged,
    is drawn dashed. ``logy`` None chooses the loss axis from the range (see the module
    docstring). The picture is written atomically to ``path`` in the format of its extension.
    """
    image_format(path)  # a bad extension fails before any drawing
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    finite_losses: list[float] = []
    stopped = []
    for i, (label, records) in enumerate(runs):
        color = f"C{i}"
        steps, loss = _series(records, "train_loss")
        finite_losses += loss
        if steps:
            ax_loss.plot(steps, loss, color=color, alpha=0.25, linewidth=0.8)
            smooth = _smooth(loss)
            if smooth is not None:
                ax_loss.plot(steps, smooth, color=color, linewidth=1.5, label=f"{label} train")
            else:
                ax_loss.lines[-1].set_label(f"{label} train")
                ax_loss.lines[-1].set_alpha(1.0)
        bad = diverged_step(records)
        if bad is not None:
            stopped.append((label, bad))
            if steps:
                ax_loss.plot(
                    [steps[-1]], [loss[-1]], marker="x", markersize=10, color=color, linestyle="none"
                )
                ax_loss.annotate(f"diverged at step {bad}", (steps[-1], loss[-1]), color=color, fontsize=8,
                                 xytext=(4, 4), textcoords="offset points")  # fmt: skip
        steps, tl = _series(records, "test_loss")
        finite_losses += tl
        if steps:
            ax_loss.plot(steps, tl, color=color, linestyle="--", marker=".", label=f"{label} test")
        steps, acc = _series(records, "test_acc")
        if steps:
            ax_acc.plot(steps, acc, color=color, marker="o", markersize=3, label=label)
    positive = [v for v in finite_losses if v > 0]
    if logy is None:
        logy = bool(positive) and max(positive) / min(positive) > LOG_RANGE
    if logy and positive:
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="cross-entropy loss" + (" (log scale)" if logy else ""), title="Loss")
    ax_acc.set(xlabel="step", ylabel="test accuracy", title="Test accuracy")
    if not ax_acc.lines:
        why = (
            "none: the run diverged before its first evaluation"
            if stopped
            else "none: no evaluation was logged (the first comes at --eval_freq)"
        )
        ax_acc.text(
            0.5, 0.5, why, ha="center", va="center", transform=ax_acc.transAxes, fontsize=9, wrap=True
        )
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if len(runs) == 1 and stopped:
        title = (
            f"{title} (diverged at step {stopped[0][1]})" if title else f"diverged at step {stopped[0][1]}"
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(run_dir) / "config.json"
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError):
        return {}


def run_labels(configs: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    """A label per run from what differs between the configs (trainer, dataset, and the flags that
    every run has but with different values: a flag only one trainer has, such as ``--device``
    beside a NumPy run, names no difference); the directory names when nothing differs."""
    shared = set.intersection(*(set(c) for c in configs)) if configs else set()
    keys = sorted((shared | {"trainer", "dataset"}) - UNLABELLED)
    varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    first = [k for k in ("trainer", "dataset") if k in varying]
    varying = first + [k for k in varying if k not in first]
    if not varying:
        return list(names)
    labels = []
    for c in configs:
        parts = [str(c.get(k)) if k in ("trainer", "dataset") else f"{k}={c.get(k)}" for k in varying]
        labels.append(" ".join(parts))
    return labels


def plot_run_dirs(
    run_dirs: Sequence[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str = "",
    logy: bool | None = None,
    mixed_datasets: bool = False,
) -> Path:
    """Overlay the curves of several run directories in one picture (see the module docstring)."""
    image_format(path)
    configs = [_config(d) for d in run_dirs]
    datasets = {c.get("dataset") for c in configs if c.get("dataset")}
    if len(datasets) > 1 and not mixed_datasets:
        raise ConfigError(
            f"the runs are on different data sets ({', '.join(sorted(map(str, datasets)))}): their curves are not "
            "comparable; plot them separately, or pass --mixed_datasets"
        )
    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError(f"--labels has {len(labels)} labels for {len(run_dirs)} runs")
    names = [Path(d).name for d in run_dirs]
    chosen = list(labels) if labels is not None else run_labels(configs, names)
    runs = [(label, read_metrics(d)) for label, d in zip(chosen, run_dirs, strict=True)]
    if not title and len(datasets) == 1:
        title = f"on {next(iter(datasets))}"
    return plot_runs(runs, path, title=title, logy=logy)
