"""The training doctor: quick checks that tell why a network will not learn, before it trains.

:func:`diagnose` runs the checks of :mod:`~backproplab.verify.doctor_checks` (initial loss, non-finite
values, batch-size scaling, activations, updates, overfitting one batch; each PASS, WARN or FAIL with a
one-line reason and a fix) on one batch of a model seen through a back end
(:mod:`~backproplab.verify.doctor_backends`: NumPy or PyTorch); :func:`format_report` prints them and
:func:`~backproplab.verify.doctor_figure.plot_stats` draws the per-layer statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backproplab.instrument.layer_stats import LayerStats
from backproplab.utils.table import format_table
from backproplab.verify.doctor_backends import Backend, NumpyBackend, TorchBackend
from backproplab.verify.doctor_checks import (
    OVERFIT_BATCH,
    OVERFIT_STEPS,
    SATURATED_WARN,
    SCALING_REPEATS,
    STATUSES,
    Check,
    check_activations,
    check_batch_scaling,
    check_initial_loss,
    check_nonfinite,
    check_overfit,
    check_updates,
)
from backproplab.verify.doctor_figure import plot_stats

__all__ = [
    "OVERFIT_BATCH",
    "OVERFIT_STEPS",
    "SATURATED_WARN",
    "STATUSES",
    "Backend",
    "Check",
    "DoctorReport",
    "NumpyBackend",
    "TorchBackend",
    "check_activations",
    "check_batch_scaling",
    "check_initial_loss",
    "check_nonfinite",
    "check_overfit",
    "check_updates",
    "diagnose",
    "format_report",
    "plot_stats",
]


@dataclass
class DoctorReport:
    """All checks and the per-layer statistics they used."""

    checks: list[Check]
    stats: list[LayerStats]
    batch_size: int
    num_classes: int

    @property
    def worst(self) -> str:
        return max((c.status for c in self.checks), key=STATUSES.index, default="PASS")

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "worst": self.worst,
            "batch_size": self.batch_size,
            "num_classes": self.num_classes,
            "checks": [c.to_dict() for c in self.checks],
            "layer_stats": [s.to_dict() for s in self.stats],
        }


# ---------------------------------------------------------------------------- the whole run
def diagnose(
    backend: Backend,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    batch_size: int,
    overfit_steps: int = OVERFIT_STEPS,
    overfit_batch: int = OVERFIT_BATCH,
) -> DoctorReport:
    """Run every check on the first ``batch_size`` samples of (x, y) (see the module docstring).

    The model is not changed: the overfitting run trains a copy. NumPy's overflow and invalid-value
    warnings are silenced: non-finite values are what the checks report.
    """
    with np.errstate(all="ignore"):
        return _diagnose(backend, x, y, num_classes, batch_size, overfit_steps, overfit_batch)


def _diagnose(
    backend: Backend,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    batch_size: int,
    overfit_steps: int,
    overfit_batch: int,
) -> DoctorReport:
    b = min(batch_size, len(x))
    xb, yb = x[:b], y[:b]  # (b, ...), (b,)
    loss0 = backend.loss(xb, yb)
    stats = backend.stats(xb, yb)
    checks = [check_initial_loss(loss0, num_classes, b), check_nonfinite(xb, loss0, stats)]
    norms = [backend.grad_norm(np.concatenate([xb] * k), np.concatenate([yb] * k)) for k in SCALING_REPEATS]
    checks.append(check_batch_scaling(norms))
    checks.append(check_activations(stats, float(np.std(xb, dtype=np.float64))))
    checks.append(check_updates(stats))
    m = min(overfit_batch, len(x))
    clone = backend.copy()
    xo, yo = x[:m], y[:m]  # (m, ...), (m,)
    losses = [clone.train_step(xo, yo) for _ in range(overfit_steps)]
    losses.append(clone.loss(xo, yo))
    checks.append(check_overfit(losses, clone.accuracy(xo, yo), overfit_steps, m))
    return DoctorReport(checks, stats, b, num_classes)


def format_report(report: DoctorReport) -> str:
    """One line per check (status, name, reason) and an indented fix line when it is not PASS."""
    lines = [
        f"doctor: {len(report.checks)} checks on a batch of {report.batch_size} ({report.num_classes} "
        "classes)"
    ]
    for c in report.checks:
        lines.append(f"{c.status:<4}  {c.name}: {c.reason}")
        if c.status != "PASS" and c.fix:
            lines.append(f"      fix: {c.fix}")
    lines.append("")

    def f(v: float | None, fmt: str = ".3g") -> str:
        return "-" if v is None else format(v, fmt)

    header = ("layer", "kind", "act mean", "act std", "dead", "sat", "grad norm", "upd/weight")
    rows = [
        (
            s.name, s.kind, f(s.act_mean), f(s.act_std), f(s.dead_fraction, ".0%"),
            f(s.saturated_fraction, ".0%"), f(s.grad_norm), f(s.update_ratio),
        )
        for s in report.stats
    ]  # fmt: skip
    lines += format_table(header, rows, right=range(2, 8))
    lines.append(f"verdict: {report.worst}")
    return "\n".join(lines)
