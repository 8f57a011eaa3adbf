"""A sweep's results: the table (printed and ``results.csv``), the picture and the chosen trial.

Everything is read from the trials' run directories, so a stopped, crashed or resumed sweep
reports the same way. A trial's value is its last evaluation's validation metric (the final
model's, or the last one before ASHA stopped it); the table is sorted by it (best first) and shows
only the flags that varied. The chosen trial is the best completed one (the best stopped one if
none completed); its test accuracy is reported once, here, never used to choose. No Ray here.
"""

from __future__ import annotations

import csv
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backproplab.sweep.plan import SweepPlan, Trial
from backproplab.sweep.sweep_dir import SweepDir
from backproplab.sweep.trial import evaluations, read_summary
from backproplab.utils.atomic import atomic_path, atomic_write_json
from backproplab.utils.figures import image_format, pyplot, save_figure
from backproplab.utils.table import format_table as text_table

#: How many of the best trials the picture overlays.
TOP_CURVES = 5
#: A numeric flag's axis is logarithmic when its values span more than this factor.
LOG_RANGE = 20.0


@dataclass
class TrialResult:
    """One row of the table."""

    trial: Trial
    status: str  # completed, stopped, diverged, failed, unfinished or pending
    steps: int | None = None
    value: float | None = None  # the last evaluation's metric
    best: float | None = None  # the best evaluation's metric
    test_acc: float | None = None  # the final test accuracy (reported for the chosen trial only)
    error: str | None = None
    curve: tuple[tuple[int, ...], tuple[float, ...]] = ((), ())

    def status_text(self) -> str:
        if self.status in ("stopped", "diverged") and self.steps is not None:
            return f"{self.status} at {self.steps}"
        return self.status


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def collect(plan: SweepPlan, sweep: SweepDir, failed: dict[str, str] | None = None) -> list[TrialResult]:
    """The result of every trial of ``plan``, from its run directory (``failed``: this session's
    failed trials and their error lines)."""
    failed = failed or {}
    out = []
    pick = max if plan.mode == "max" else min
    for trial in plan.trials:
        run = sweep.run_dir(trial.name)
        summary = read_summary(run) or {}
        evals = evaluations(run, plan.metric)
        status = summary.get("status")
        if status not in ("completed", "stopped", "diverged"):
            if trial.name in failed:
                status = "failed"
            elif (run / "metrics.jsonl").is_file():
                status = "unfinished"
            else:
                status = "pending"
        values = [(int(r["step"]), v) for r in evals if (v := _finite(r[plan.metric])) is not None]
        steps = summary.get("stopped_at_step", summary.get("steps"))
        if steps is None and evals:
            steps = int(evals[-1]["step"])
        out.append(
            TrialResult(
                trial=trial,
                status=status,
                steps=steps,
                value=values[-1][1] if values else None,
                best=pick(v for _, v in values) if values else None,
                test_acc=_finite(summary.get("final_test_acc")),
                error=failed.get(trial.name),
                curve=(tuple(s for s, _ in values), tuple(v for _, v in values)),
            )
        )
    return out


def ranked(results: Sequence[TrialResult], mode: str) -> list[TrialResult]:
    """Best value first (trials without a value last, in trial order)."""
    sign = -1.0 if mode == "max" else 1.0
    return sorted(results, key=lambda r: (r.value is None, sign * (r.value or 0.0), r.trial.index))


def choose(results: Sequence[TrialResult], mode: str) -> TrialResult | None:
    """The best completed trial (the best stopped one when none completed), or None."""
    for statuses in (("completed",), ("stopped",)):
        pool = [r for r in results if r.status in statuses and r.value is not None]
        if pool:
            return ranked(pool, mode)[0]
    return None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(plan: SweepPlan, results: Sequence[TrialResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table, sorted (see the module docstring)."""
    metric = plan.metric
    header = ["rank", "trial", *plan.varied, metric, f"best {metric}", "steps", "status"]
    rows = []
    for i, r in enumerate(ranked(results, plan.mode), 1):
        rows.append(
            [
                str(i) if r.value is not None else "-",
                r.trial.name,
                *(_cell(r.trial.flags.get(f)) for f in plan.varied),
                "" if r.value is None else f"{r.value:.4f}",
                "" if r.best is None else f"{r.best:.4f}",
                "" if r.steps is None else str(r.steps),
                r.status_text(),
            ]
        )
    return header, rows


def format_table(plan: SweepPlan, results: Sequence[TrialResult]) -> str:
    """The table as aligned text (the project's table format; numbers right-aligned)."""
    header, rows = table(plan, results)
    n = len(header)
    return "\n".join(text_table(header, rows, right={0, n - 4, n - 3, n - 2}))


def write_csv(path: Path, plan: SweepPlan, results: Sequence[TrialResult]) -> None:
    """``results.csv``: the table's columns (raw values), sorted, written atomically."""
    metric = plan.metric
    header = ["trial", *plan.varied, metric, f"best_{metric}", "steps", "status"]
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in ranked(results, plan.mode):
            w.writerow(
                [
                    r.trial.name,
                    *(r.trial.flags.get(f) for f in plan.varied),
                    r.value,
                    r.best,
                    r.steps,
                    r.status,
                ]
            )


def command(plan: SweepPlan, trial: Trial) -> str:
    """The ``backproplab train`` command that trains ``trial`` alone."""
    words = ["backproplab", "train", plan.trainer]
    for flag, value in plan.values(trial).items():
        if value is None:
            continue
        if isinstance(value, bool):
            words.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            words += [f"--{flag}", str(value)]
    return shlex.join(words)


def write_summary(
    path: Path, plan: SweepPlan, results: Sequence[TrialResult], chosen: TrialResult | None
) -> dict[str, Any]:
    """``summary.json`` of the sweep: counts, and the chosen trial with its test accuracy."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    data: dict[str, Any] = {
        "sweep": plan.name,
        "trainer": plan.trainer,
        "metric": plan.metric,
        "mode": plan.mode,
        "trials": len(results),
        "status": counts,
        "chosen": None,
    }
    if chosen is not None:
        data["chosen"] = {
            "trial": chosen.trial.name,
            "flags": chosen.trial.flags,
            plan.metric: chosen.value,
            "step": chosen.steps,
            "test_acc": chosen.test_acc,
            "command": command(plan, chosen.trial),
        }
    atomic_write_json(path, data)
    return data


# ---------------------------------------------------------------------- the picture
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _flag_panel(
    ax: Any, plan: SweepPlan, flag: str, with_value: Sequence[TrialResult], chosen: TrialResult | None
) -> None:
    """The metric against one varied flag: a numeric axis (logarithmic over a wide range), or the
    flag's values as categories (points spread a little so that equal values stay visible)."""
    values: list[Any] = [t.flags.get(flag) for t in plan.trials]
    numeric = all(_is_number(v) for v in values)
    categories: list[Any] = []
    for v in values:
        if v not in categories:
            categories.append(v)

    def x_of(r: TrialResult) -> float:
        v: Any = r.trial.flags.get(flag)
        if numeric:
            return float(v)
        jitter = ((r.trial.index * 0.618) % 1.0 - 0.5) * 0.2
        return categories.index(v) + jitter

    for status, style in (
        ("completed", {"marker": "o", "color": "C0", "label": "completed"}),
        ("stopped", {"marker": "o", "facecolors": "none", "edgecolors": "C1", "label": "stopped early"}),
    ):
        pts = [r for r in with_value if r.status == status]
        if pts:
            ax.scatter([x_of(r) for r in pts], [r.value for r in pts], s=28, **style)
    if chosen is not None:
        ax.scatter([x_of(chosen)], [chosen.value], marker="*", s=180, color="C3", zorder=5, label="chosen")
    positive = [float(v) for v in values if _is_number(v) and v > 0]
    wide = bool(positive) and max(positive) / min(positive) > LOG_RANGE
    if numeric and len(positive) == len(values) and (flag in plan.log_scale or wide):
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels collide
    if not numeric:
        ax.set_xlim(-0.5, len(categories) - 0.5)
        ax.set_xticks(
            range(len(categories)),
            [str(c) for c in categories],
            rotation=20 if len(categories) > 3 else 0,
            fontsize=8,
        )
    ax.set(xlabel=flag, ylabel=plan.metric)
    ax.grid(alpha=0.3)


def plot_results(
    path: Path, plan: SweepPlan, results: Sequence[TrialResult], chosen: TrialResult | None
) -> Path:
    """The picture: the metric against each varied flag (one panel each; completed trials filled,
    stopped ones hollow, the chosen one a star), then the best trials' curves of the metric
    against step overlaid."""
    plt = pyplot()
    image_format(path)  # a bad extension fails before anything is drawn
    varied = plan.varied
    n_panels = len(varied) + 1
    ncols = min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.6 * nrows), squeeze=False)
    flat = list(axes.flat)
    with_value = [r for r in results if r.value is not None]
    for ax, flag in zip(flat, varied, strict=False):
        _flag_panel(ax, plan, flag, with_value, chosen)
    ax = flat[len(varied)]
    best = [r for r in ranked(with_value, plan.mode) if r.curve[0]][:TOP_CURVES]
    for i, r in enumerate(best):
        desc = plan.describe(r.trial)
        label = f"{r.trial.name}: {desc}" if len(desc) <= 48 else f"{r.trial.name}: {desc[:45]}..."
        width = 2.2 if chosen is not None and r.trial.name == chosen.trial.name else 1.2
        ax.plot(r.curve[0], r.curve[1], marker=".", color=f"C{i}", linewidth=width, label=label)
    ax.set(xlabel="step", ylabel=plan.metric, title=f"the {len(best)} best trials")
    ax.grid(alpha=0.3)
    if best:
        ax.legend(fontsize=7)
    for extra in flat[n_panels:]:
        extra.set_visible(False)
    handles, labels = flat[0].get_legend_handles_labels()
    if handles and varied:
        flat[0].legend(handles, labels, fontsize=7)
    dataset = plan.fixed.get("dataset", "")
    fig.suptitle(
        f"sweep {plan.name}: {plan.metric} of {len(with_value)} of {len(results)} trials "
        f"(train {plan.trainer}{f' on {dataset}' if dataset else ''})"
    )
    fig.tight_layout()
    return save_figure(fig, path)


def read_results_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a ``results.csv`` (for tests and scripts)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
