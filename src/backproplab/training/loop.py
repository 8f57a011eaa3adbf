"""The training loop shared by every trainer (NumPy and PyTorch).

A trainer supplies a :class:`TrainTask`; the loop runs the steps, evaluates every ``eval_freq``
steps and at the last one, logs ``metrics.jsonl``, stops on a non-finite loss with a message
that names the step and the likely causes, saves a checkpoint at each evaluation (for tasks
that can) and on Ctrl-C, and finishes with ``summary.json``, ``curves.png`` and the model file.

Timing in ``summary.json`` (this session's steps only, when resumed): ``wall_seconds`` (the whole
loop), ``train_seconds`` (inside ``train_step``), ``eval_seconds`` (evaluations and their extras),
``checkpoint_seconds`` (writing checkpoints), ``steps_per_second`` and ``samples_per_second``
(training steps and samples per second of ``train_seconds``).

With a validation split (``--validation_size``) the evaluations also log ``val_loss`` and
``val_acc``, and the summary gains ``final_val_acc``, ``final_val_loss``, ``best_val_acc`` and
``best_val_step``. :func:`on_eval` lets a caller see each evaluation as it happens (a sweep reports
it to its scheduler).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from backproplab.errors import NonFiniteError
from backproplab.training.plots import plot_runs
from backproplab.training.progress import Progress
from backproplab.training.run_dir import RunDir


class TrainTask(Protocol):
    """What a trainer gives the loop."""

    batch_size: int

    def train_step(self) -> float:
        """Draw a batch, run forward, backward and the optimizer step; return the batch loss."""

    def evaluate(self) -> dict[str, float]:
        """Return at least ``test_loss`` and ``test_acc`` on the whole test split (and ``val_loss``
        and ``val_acc`` on the validation split when there is one)."""

    def save_model(self, run: RunDir) -> str:
        """Write the final weights into the run directory; return the path."""

    def divergence_hint(self) -> str:
        """The likely causes of a non-finite loss for this task's settings (one sentence)."""

    def save_checkpoint(self, run: RunDir, step: int) -> None:
        """Write a resumable checkpoint of ``step`` (tasks that cannot resume do nothing)."""

    def eval_extras(self) -> dict[str, Any]:
        """More values to log at each evaluation (e.g. per-layer statistics), or {}."""


EvalCallback = Callable[[dict[str, Any]], None]
_ON_EVAL: contextvars.ContextVar[EvalCallback | None] = contextvars.ContextVar("on_eval", default=None)


@contextlib.contextmanager
def on_eval(callback: EvalCallback) -> Iterator[None]:
    """Within the block (in this thread), call ``callback(record)`` with a copy of every evaluation's
    metrics record of every run, after it is logged and its checkpoint saved. An exception the
    callback raises ends the run as any other exception would (metrics and checkpoint are kept)."""
    token = _ON_EVAL.set(callback)
    try:
        yield
    finally:
        _ON_EVAL.reset(token)


def evaluate_splits(data: Any, evaluate_split: Callable[[Any, Any], tuple[float, float]]) -> dict[str, float]:
    """``test_loss``, ``test_acc`` and, when ``data`` has a validation split (``x_val`` not None),
    ``val_loss``, ``val_acc``: ``evaluate_split(x, y)`` gives (mean loss, accuracy) of one split."""
    out = dict(zip(("test_loss", "test_acc"), evaluate_split(data.x_test, data.y_test), strict=True))
    if data.x_val is not None and data.y_val is not None:
        out.update(zip(("val_loss", "val_acc"), evaluate_split(data.x_val, data.y_val), strict=True))
    return out


def _val_summary(last: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    """The summary entries of the validation split from the last and the best evaluation."""
    return {
        "final_val_acc": last["val_acc"],
        "final_val_loss": last.get("val_loss"),
        "best_val_acc": best["val_acc"],
        "best_val_step": best["step"],
    }


def _finish(task: TrainTask, run: RunDir, summary: dict[str, Any], title: str) -> None:
    run.close()
    records = run.read_metrics()
    if records:
        plot_runs([(run.path.name, records)], run.curves_path, title=title)
    run.write_summary(summary)


def train_loop(
    task: TrainTask,
    run: RunDir,
    *,
    max_steps: int,
    eval_freq: int,
    start_step: int = 0,
    title: str = "",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train from ``start_step`` to ``max_steps``; return the summary written to summary.json."""
    history = run.read_metrics() if start_step > 0 else []
    evals = [r for r in history if "test_acc" in r]
    best = max(evals, key=lambda r: r["test_acc"], default=None)
    summary: dict[str, Any] = {
        "status": "running",
        "steps": start_step,
        "final_test_acc": evals[-1]["test_acc"] if evals else None,
        "final_test_loss": evals[-1]["test_loss"] if evals else None,
        "best_test_acc": best["test_acc"] if best else None,
        "best_step": best["step"] if best else None,
    }
    val_evals = [r for r in evals if "val_acc" in r]
    best_val = max(val_evals, key=lambda r: r["val_acc"], default=None)
    if best_val is not None:
        summary.update(_val_summary(val_evals[-1], best_val))
    callback = _ON_EVAL.get()
    bar = Progress(max_steps, initial=start_step, desc=title or "train", enabled=progress)
    t_start = time.perf_counter()
    train_seconds = eval_seconds = checkpoint_seconds = 0.0
    step = start_step

    def update_summary() -> None:
        wall = time.perf_counter() - t_start
        done = step - start_step
        rate = done / train_seconds if train_seconds > 0 else None
        summary.update(
            steps=step,
            wall_seconds=round(wall, 3),
            train_seconds=round(train_seconds, 3),
            eval_seconds=round(eval_seconds, 3),
            checkpoint_seconds=round(checkpoint_seconds, 3),
            steps_per_second=None if rate is None else round(rate, 3),
            samples_per_second=None if rate is None else round(rate * task.batch_size, 1),
        )

    # Overflow on the way to a non-finite loss is expected and reported below, not as warnings.
    errstate = np.errstate(over="ignore", invalid="ignore", divide="ignore")
    errstate.__enter__()
    try:
        while step < max_steps:
            t0 = time.perf_counter()
            loss = task.train_step()
            train_seconds += time.perf_counter() - t0
            step += 1
            record: dict[str, Any] = {"step": step, "train_loss": float(loss)}
            if not math.isfinite(loss):
                run.log(record)
                summary["status"] = "diverged"
                update_summary()
                _finish(task, run, summary, title)
                raise NonFiniteError(
                    f"training loss became {loss} at step {step}; {task.divergence_hint()} "
                    f"(metrics so far kept in {run.path})"
                )
            if step % eval_freq == 0 or step == max_steps:
                t0 = time.perf_counter()
                record.update(task.evaluate())
                record.update(task.eval_extras())
                t_eval = time.perf_counter() - t0
                eval_seconds += t_eval
                if best is None or record["test_acc"] > best["test_acc"]:
                    best = record
                summary.update(
                    final_test_acc=record["test_acc"],
                    final_test_loss=record["test_loss"],
                    best_test_acc=best["test_acc"],
                    best_step=best["step"],
                )
                if "val_acc" in record:
                    if best_val is None or record["val_acc"] > best_val["val_acc"]:
                        best_val = record
                    summary.update(_val_summary(record, best_val))
                run.log(record)
                run.flush()
                t0 = time.perf_counter()
                task.save_checkpoint(run, step)
                checkpoint_seconds += time.perf_counter() - t0
                bar.message(
                    f"step {step:>6}/{max_steps}  train loss {loss:.4f}  "
                    f"test loss {record['test_loss']:.4f}  test acc {record['test_acc']:.4f}  "
                    + (f"val acc {record['val_acc']:.4f}  " if "val_acc" in record else "")
                    + f"(eval {t_eval:.1f}s)"
                )
                if callback is not None:
                    callback(dict(record))
            else:
                run.log(record)
            bar.update(1, loss=f"{loss:.4f}")
    except KeyboardInterrupt:
        bar.close()
        task.save_checkpoint(run, step)
        summary["status"] = "interrupted"
        update_summary()
        _finish(task, run, summary, title)
        raise
    finally:
        errstate.__exit__(None, None, None)
        bar.close()
        run.close()
    summary["status"] = "completed"
    update_summary()
    summary["model"] = task.save_model(run)
    _finish(task, run, summary, title)
    return summary
