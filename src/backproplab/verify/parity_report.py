"""The parity report: one row per compared tensor (per layer, then end to end), the verdict, the
hints and notes, and its text and JSON forms."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from backproplab.utils.table import format_table as text_table
from backproplab.verify.diff import TensorDiff, agree_rtol
from backproplab.verify.trajectory import TrajectoryReport

#: End-to-end rows agree when ||A - B|| / ||B|| is at most this many times the per-layer tolerance.
END_TO_END_FACTOR = 10.0

MODEL = "(model)"
LOSS = "loss"


def END_TO_END_RTOL(dtype: str) -> float:
    """The end-to-end tolerance on ``norm_rel_err`` for a model of ``dtype``."""
    return END_TO_END_FACTOR * agree_rtol(dtype)


@dataclass
class ParityRow:
    """One compared tensor: ``layer`` (module path, ``loss`` or ``(model)``), ``quantity``, numbers."""

    layer: str
    quantity: str
    order: str
    diff: TensorDiff
    status: str
    hint: str | None = None
    rounding_noise: float | None = None

    @property
    def diverges(self) -> bool:
        return self.status == "DIVERGES"

    @property
    def shown_quantity(self) -> str:
        """The quantity as the table shows it (the loss row's are "value" and "grad")."""
        if self.layer == LOSS:
            return "value" if self.quantity == "loss" else "grad"
        return self.quantity

    @property
    def label(self) -> str:
        """ "layers.0 weight grad", "loss", "loss grad", "(model) output"."""
        return self.quantity if self.layer == LOSS else f"{self.layer} {self.quantity}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "quantity": self.quantity,
            "order": self.order,
            "status": self.status,
            "hint": self.hint,
            "rounding_noise": self.rounding_noise,
            **self.diff.to_dict(),
        }


@dataclass
class ParityReport:
    """Result of :func:`compare_models` (and, optionally, :func:`compare_trajectories`)."""

    rows: list[ParityRow]
    end_to_end: list[ParityRow]
    dtype: str
    rtol: float
    batch_size: int
    reference_loss: str
    hints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trajectory: TrajectoryReport | None = None

    @property
    def first_divergence(self) -> ParityRow | None:
        """The first diverging per-layer row (forward order, then backward order), else end-to-end."""
        return next((r for r in self.rows if r.diverges), None) or next(
            (r for r in self.end_to_end if r.diverges), None
        )

    @property
    def ok(self) -> bool:
        """No row diverges, no hint fired, and the trajectories (if compared) agree."""
        traj_ok = self.trajectory is None or self.trajectory.first_divergence is None
        return self.first_divergence is None and not self.hints and traj_ok

    def to_dict(self) -> dict[str, Any]:
        first = self.first_divergence
        return {
            "ok": self.ok,
            "dtype": self.dtype,
            "rtol": self.rtol,
            "batch_size": self.batch_size,
            "reference_loss": self.reference_loss,
            "first_divergence": None
            if first is None
            else {"layer": first.layer, "quantity": first.quantity, "order": first.order, "hint": first.hint},
            "hints": list(self.hints),
            "notes": list(self.notes),
            "rows": [r.to_dict() for r in self.rows],
            "end_to_end": [r.to_dict() for r in self.end_to_end],
            "trajectory": None if self.trajectory is None else self.trajectory.to_dict(),
        }


# ---------------------------------------------------------------------------- text output
def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _table(rows: list[ParityRow]) -> list[str]:
    header = ("layer", "quantity", "max abs err", "max rel err", "cosine", "norm ratio", "status")
    cells = [
        (
            r.layer,
            r.shown_quantity,
            _fmt(r.diff.max_abs_err),
            _fmt(r.diff.max_rel_err),
            "-" if math.isnan(r.diff.cosine) else f"{r.diff.cosine:.6f}",
            _fmt(r.diff.norm_ratio),
            r.status + (f": {r.hint}" if r.hint else ""),
        )
        for r in rows
    ]
    return text_table(header, cells, right=(2, 3, 4, 5))


def format_table(report: ParityReport) -> str:
    """The report as text: per-layer table, end-to-end table, verdict, hints, notes, trajectory."""
    lines = [
        f"per-layer parity ({report.dtype}, batch {report.batch_size}, reference loss "
        f"{report.reference_loss}; "
        f"agreement: max rel err <= {report.rtol:g})",
        *_table(report.rows),
        "",
        "end to end (twin run from the input alone; agreement: ||A-B||/||B|| <= "
        f"{END_TO_END_RTOL(report.dtype):g})",
        *_table(report.end_to_end),
        "",
    ]
    first = report.first_divergence
    if first is None:
        lines.append("first divergence: none, parity holds")
    else:
        lines.append(f"first divergence: {first.label} ({first.order} order): {first.hint}")
    lines += [f"hint: {h}" for h in report.hints]
    lines += [f"note: {n}" for n in report.notes]
    traj = report.trajectory
    if traj is not None:
        lines += [
            "",
            f"training trajectory ({traj.optimizer}, batch {traj.batch_size}; "
            f"tolerances: loss {traj.loss_rtol:g}, parameters {traj.param_rtol:g})",
        ]
        steps = [
            (
                str(s.step),
                f"{s.loss_numpy:.6g}",
                f"{s.loss_torch:.6g}",
                _fmt(s.loss_rel_diff),
                _fmt(s.param_rel_diff),
                "DIVERGES" if s.diverges else "",
            )
            for s in traj.steps
        ]
        header = ("step", "loss numpy", "loss torch", "loss rel diff", "param rel diff", "")
        lines += text_table(header, steps, right=(0, 1, 2, 3, 4))
        fd = traj.first_divergence
        lines.append(
            "trajectories agree at every step"
            if fd is None
            else f"trajectories diverge from step {fd}: {traj.hint}"
        )
        lines += [f"note: {n}" for n in traj.notes]
    lines.append("PARITY HOLDS" if report.ok else "PARITY BROKEN")
    return "\n".join(lines)
