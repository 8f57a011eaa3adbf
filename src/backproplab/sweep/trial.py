"""One trial of a sweep: the trainer's ``run(cfg)`` in a Ray worker, as an ordinary run directory.

:func:`run_trial` is the Ray Tune function trainable. It trains in the worker's process with one
BLAS thread per CPU of the trial (the worker's environment sets ``OMP_NUM_THREADS`` and its
siblings before NumPy loads; torch gets ``set_num_threads``), writes what the trainer prints to
``logs/NAME.log``, and reports every evaluation's validation metrics to Tune (through
:func:`backproplab.training.loop.on_eval`), so that ASHA can stop a poor trial; the last
evaluation is reported after the run has written its summary, curves and model.

Nothing finished is ever trained again. What the trial finds in its run directory decides
(:func:`trial_state`): nothing (``new``: train), a summary of a run that ended (``finished``:
completed, diverged or stopped early: report its evaluations again and return, so that a resumed
sweep's scheduler sees them), a checkpoint (``partial``: report the evaluations so far, then
continue with the trainer's ``--resume``), or the leftovers of a run killed before its first
checkpoint (``stale``: removed, then train). A trial that ASHA stopped is finished by the driver
with :func:`finish_stopped_run`: a ``summary.json`` with status ``stopped`` and the curves.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import os
import shutil
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from backproplab.cli.dataclass_args import config_from_namespace
from backproplab.errors import BackproplabError, ConfigError, NonFiniteError, RunDirInUseError
from backproplab.training.run_dir import CHECKPOINT_NAMES, CLAIM_FILE, RunDir, read_metrics

#: Statuses of a run that has ended for good (a summary.json with one of them is ``finished``).
FINISHED = ("completed", "diverged", "stopped")
#: The record keys a trial reports to Tune (never a test metric: selection is on validation).
REPORTED = ("step", "train_loss", "val_loss", "val_acc")
#: The environment variables that set a worker's BLAS / OpenMP thread count.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class TrialError(RuntimeError):
    """A trial that failed with a user error (its one line, also in the trial's log)."""


def read_summary(run_path: Path) -> dict[str, Any] | None:
    """The run's summary.json, or None when it has none (or one that cannot be read)."""
    try:
        data = json.loads((run_path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_claimed(run_path: Path) -> bool:
    """Whether a live process holds the run directory's claim (see :class:`RunDir`)."""
    try:
        fd = os.open(run_path / CLAIM_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def trial_state(run_path: Path) -> str:
    """``new``, ``finished``, ``partial`` or ``stale`` (see the module docstring)."""
    if not run_path.is_dir() or not any(p.name != CLAIM_FILE for p in run_path.iterdir()):
        return "new"
    summary = read_summary(run_path)
    if summary is not None and summary.get("status") in FINISHED:
        return "finished"
    if any((run_path / name).is_file() for name in CHECKPOINT_NAMES):
        return "partial"
    return "stale"


def evaluations(run_path: Path, metric: str) -> list[dict[str, Any]]:
    """The run's evaluation records that hold ``metric``, in step order."""
    try:
        records = read_metrics(run_path)
    except BackproplabError:
        return []
    return [r for r in records if metric in r]


def reported(record: dict[str, Any]) -> dict[str, Any]:
    """What a trial reports to Tune of one evaluation record."""
    return {k: record[k] for k in REPORTED if k in record}


def summary_from_metrics(records: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """A summary.json for a run that ended without writing one, from its metrics."""
    summary: dict[str, Any] = {"status": status, "steps": records[-1]["step"] if records else 0}
    for split, best_step in (("test", "best_step"), ("val", "best_val_step")):
        evals = [r for r in records if f"{split}_acc" in r]
        if evals:
            best = max(evals, key=lambda r: r[f"{split}_acc"])
            summary[f"final_{split}_acc"] = evals[-1][f"{split}_acc"]
            summary[f"final_{split}_loss"] = evals[-1].get(f"{split}_loss")
            summary[f"best_{split}_acc"] = best[f"{split}_acc"]
            summary[best_step] = best["step"]
    return summary


def finish_stopped_run(run_path: Path, step: int, *, timeout: float = 30.0) -> bool:
    """Write ``summary.json`` (status ``stopped``, ``stopped_at_step``) and ``curves.png`` for a trial
    that the scheduler stopped at ``step``; return whether it did. A run that already has a
    finished summary, or no metrics, is left as it is; a run still held by its worker is waited for
    (``timeout`` seconds)."""
    from backproplab.training.plots import plot_runs

    if trial_state(run_path) == "finished" or not (run_path / "metrics.jsonl").is_file():
        return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            run = RunDir(run_path, resume=True)
            break
        except RunDirInUseError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    try:
        records = run.read_metrics()
        if not records:
            return False
        kept = [r for r in records if r.get("step", 0) <= step] or records
        summary = summary_from_metrics(kept, "stopped")
        summary["stopped_at_step"] = step
        summary["run_dir"] = str(run_path)
        title = f"{run.load_config().get('trainer', '')} (stopped early at step {step})"
        plot_runs([(run_path.name, kept)], run.curves_path, title=title.strip())
        run.write_summary(summary)
        return True
    finally:
        run.release()


def _limit_threads(cpus: int) -> None:
    """One BLAS thread per CPU of the trial (the worker's environment already says so before NumPy
    loads; torch is told here)."""
    for var in THREAD_VARS:
        os.environ[var] = str(cpus)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(cpus)


def run_trial(config: dict[str, Any]) -> None:
    """The Ray Tune trainable of one trial; ``config["trial"]`` is the job made by the runner
    (:func:`backproplab.sweep.runner.trial_job`)."""
    job = config["trial"]
    log_path = Path(job["log"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                _train(job)
            except BackproplabError as e:
                print(f"error: {e}", flush=True)
                raise TrialError(str(e)) from None
            except Exception:
                traceback.print_exc()
                raise


def _train(job: dict[str, Any]) -> None:
    import ray
    from ray import tune

    from backproplab.cli.main import TRAINERS
    from backproplab.training.loop import on_eval

    run_path = Path(job["run_dir"])
    metric, max_steps = job["metric"], int(job["max_steps"])
    state = trial_state(run_path)
    node = ray.get_runtime_context().get_node_id()
    print(
        f"--- {time.strftime('%F %T')} {job['name']} on {socket.gethostname()} (pid {os.getpid()}, "
        f"Ray node {node}): {state}",
        flush=True,
    )
    if state in ("finished", "partial"):
        done = evaluations(run_path, metric)
        for record in done:  # the scheduler of a resumed sweep sees what this trial reached
            tune.report(reported(record))
        if state == "finished":
            print(f"finished earlier ({len(done)} evaluations reported again)", flush=True)
            return
    module = importlib.import_module(TRAINERS[job["trainer"]][0])
    _limit_threads(int(job["cpus"]))
    print(
        "threads: "
        + " ".join(f"{v}={os.environ.get(v)}" for v in THREAD_VARS)
        + (f" torch={sys.modules['torch'].get_num_threads()}" if "torch" in sys.modules else ""),
        flush=True,
    )
    if state == "partial":
        cfg: Any = module.CONFIG(resume=str(run_path))
    else:
        if state == "stale":
            if is_claimed(run_path):
                raise ConfigError(f"run directory {run_path} is in use by another process")
            shutil.rmtree(run_path)
        cfg = config_from_namespace(module.CONFIG, argparse.Namespace(**job["values"]))

    def report_eval(record: dict[str, Any]) -> None:
        if record["step"] < max_steps and metric in record:
            tune.report(reported(record))

    try:
        with on_eval(report_eval):
            module.run(cfg, progress=False)
    except NonFiniteError as e:  # the run directory says "diverged"; nothing left to report
        print(f"diverged: {e}", flush=True)
        return
    except ConfigError:
        last = evaluations(run_path, metric)[-1:]
        if state != "partial" or not last or last[0]["step"] < max_steps:
            raise
        # Killed after its last checkpoint and before its summary: nothing is left to train.
        records = read_metrics(run_path)
        RunDir(run_path, resume=True).write_summary(
            {**summary_from_metrics(records, "completed"), "run_dir": str(run_path)}
        )
    final = evaluations(run_path, metric)
    if final:
        tune.report(reported(final[-1]))
