"""The doctor's picture of the per-layer statistics (:func:`plot_stats`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from backproplab.instrument.layer_stats import LayerStats
from backproplab.utils.figures import pyplot, save_figure
from backproplab.verify.doctor_checks import (
    DEAD_WARN,
    SATURATED_WARN,
    UPDATE_RATIO_HIGH,
    UPDATE_RATIO_VANISHING,
)

#: A panel of positive values gets a log axis when its largest / smallest exceeds this.
LOG_PANEL_RANGE = 10.0


def _bars(ax: Any, labels: list[str], values: list[float | None], title: str, color: str = "C0") -> None:
    """Bars of ``values`` per layer: a log axis when they span decades, a value of exactly 0 drawn as
    "0" on the axis (no bar at 1e-30), a missing one as "n/a", and "none" when there is nothing."""
    ax.set_title(title, fontsize=10)
    if not labels:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, fontsize=11)
        ax.set_xticks([])
        return
    xs = np.arange(len(labels))
    positive = [v for v in values if v is not None and v > 0]
    log = bool(positive) and max(positive) / min(positive) > LOG_PANEL_RANGE
    ax.bar(xs, [v if v is not None and v > 0 else 0.0 for v in values], color=color)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 3, max(positive) * 3)
    for xi, v in zip(xs, values, strict=True):
        if v is None or v <= 0:
            text = "n/a" if v is None else "0"
            ax.annotate(text, (xi, 0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=9, color="black")  # fmt: skip
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("log scale" if log else "", fontsize=8)


def _threshold(ax: Any, level: float, color: str, label: str) -> None:
    ax.axhline(level, color=color, linestyle="--", linewidth=0.9, label=f"{label} ({level:g})")


def plot_stats(stats: list[LayerStats], path: str | os.PathLike[str], title: str = "") -> Path:
    """Draw the per-layer statistics in four panels and write the picture atomically to ``path``.

    Panels: layer outputs' std and |mean|; dead and saturated fractions of the activation layers (with
    the warning thresholds); weight-gradient norms; update / weight ratios (with the vanishing, healthy
    and exploding levels). See :func:`_bars` for axes and zeros.
    """
    plt = pyplot()
    acts = [s for s in stats if s.act_mean is not None]
    ws = [s for s in stats if s.weight_norm is not None]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    _bars(
        axes[0, 0],
        [f"{s.name}\n{s.kind}" for s in acts],
        [s.act_std for s in acts],
        "layer outputs: std (dots: |mean|)",
    )
    if acts:
        means = [abs(s.act_mean or 0.0) for s in acts]
        axes[0, 0].plot(
            np.arange(len(acts)), [m if m > 0 else np.nan for m in means], "o", color="C1", label="|mean|"
        )
        axes[0, 0].legend(fontsize=8)
    ax = axes[0, 1]
    act_only = [s for s in acts if s.is_activation]
    ax.set_title("activations: dead / saturated fraction", fontsize=10)
    if act_only:
        xs = np.arange(len(act_only))
        ax.bar(xs - 0.2, [s.dead_fraction for s in act_only], width=0.4, label="dead units")
        ax.bar(xs + 0.2, [s.saturated_fraction for s in act_only], width=0.4, label="saturated entries")
        ax.set_xticks(xs, [s.name for s in act_only], fontsize=7)
        _threshold(ax, DEAD_WARN, "orange", "dead: warn")
        _threshold(ax, SATURATED_WARN, "red", "saturated: warn")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "none (no activation layers)", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
    names = [s.name for s in ws]
    _bars(axes[1, 0], names, [s.grad_norm for s in ws], "weight gradient norm ||dL/dW||", "C2")
    _bars(axes[1, 1], names, [s.update_ratio for s in ws], "update / weight ratio ||dW|| / ||W||", "C2")
    if ws:
        for level, color, label in (
            (UPDATE_RATIO_VANISHING, "red", "vanishing"),
            (1e-3, "green", "healthy ~"),
            (UPDATE_RATIO_HIGH, "red", "exploding"),
        ):
            _threshold(axes[1, 1], level, color, label)
        axes[1, 1].set_yscale("log")  # the thresholds span five decades
        axes[1, 1].set_ylim(
            UPDATE_RATIO_VANISHING / 10, max([UPDATE_RATIO_HIGH * 10, *(s.update_ratio or 0 for s in ws)])
        )
        axes[1, 1].set_ylabel("log scale", fontsize=8)
        axes[1, 1].legend(fontsize=8)
    for a in axes.ravel():
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
