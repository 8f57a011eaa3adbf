"""Training curves as pictures: one run's loss and accuracy, or several runs overlaid."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from backproplab.training.run_dir import read_metrics
from backproplab.utils.atomic import atomic_path


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_runs(
    runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Draw train loss (left) and test accuracy (right) against step for each (label, records).

    Train loss is drawn faintly per step with a moving average on top; test loss, when logged,
    is drawn dashed. The picture is written atomically to ``path``.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (label, records) in enumerate(runs):
        color = f"C{i}"
        steps, loss = _series(records, "train_loss")
        if steps:
            ax_loss.plot(steps, loss, color=color, alpha=0.25, linewidth=0.8)
            k = max(1, len(loss) // 50)
            if k > 1:
                smooth = [
                    sum(loss[max(0, j - k + 1) : j + 1]) / len(loss[max(0, j - k + 1) : j + 1])
                    for j in range(len(loss))
                ]
                ax_loss.plot(steps, smooth, color=color, linewidth=1.5, label=f"{label} train")
            else:
                ax_loss.lines[-1].set_label(f"{label} train")
        steps, tl = _series(records, "test_loss")
        if steps:
            ax_loss.plot(steps, tl, color=color, linestyle="--", marker=".", label=f"{label} test")
        steps, acc = _series(records, "test_acc")
        if steps:
            ax_acc.plot(steps, acc, color=color, marker="o", markersize=3, label=label)
    ax_loss.set(xlabel="step", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="step", ylabel="test accuracy", title="Test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def plot_run_dirs(run_dirs: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str]) -> Path:
    """Overlay the curves of several run directories (labelled by directory name) in one picture."""
    runs = [(Path(d).name, read_metrics(d)) for d in run_dirs]
    return plot_runs(runs, path)
