"""Starting or resuming a run of any trainer (NumPy or PyTorch): config resolution and the flow.

Torch-free, so the NumPy trainers use it without importing torch. A new run gets a fresh run
directory. ``--resume RUN_DIR`` reopens one: every flag comes from ``RUN_DIR/config.json`` except
``--max_steps`` (to train further) and, for the trainers that have it, ``--device``; any other flag
given with ``--resume`` is a :class:`~backproplab.errors.ConfigError`. The trainer's checkpoint
restores the task (model, optimizer, schedule, batches, generators); metrics logged after the
checkpoint's step are dropped and training continues from that step, so the metrics equal those of
a run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from backproplab.errors import ConfigError
from backproplab.training.interrupt import InterruptFlag, deferred_interrupts
from backproplab.training.loop import TrainTask, train_loop
from backproplab.training.run_dir import RunDir, default_run_dir

C = TypeVar("C")

#: Flags that may be given together with --resume (``device`` only where the trainer has it).
RESUME_FLAGS = ("max_steps", "device", "resume")
#: Of those, the ones whose new value replaces the saved one.
RESUME_OVERRIDES = ("max_steps", "device")


class ResumableTask(TrainTask, Protocol):
    """A :class:`TrainTask` that can load its own checkpoint."""

    def restore(self, ckpt: Any, path: str) -> int:
        """Load ``ckpt`` (read from ``path``) into the task; return the step it was saved at."""


def resolve_resume_config(cls: type[C], cfg: C, trainer: str) -> tuple[C, RunDir]:
    """The config to resume with (saved flags plus --max_steps / --device) and the reopened run."""
    path = getattr(cfg, "resume")  # noqa: B009
    run_dir = RunDir(path, resume=True)
    saved = run_dir.load_config()
    if saved.get("trainer") != trainer:
        raise ConfigError(f"cannot resume {path} with train {trainer}: it is a {saved.get('trainer')!r} run")
    defaults = cls()
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    overrides = [name for name in RESUME_OVERRIDES if name in fields]
    extra = [
        f"--{name}"
        for name in fields
        if name not in RESUME_FLAGS
        and getattr(cfg, name) != getattr(defaults, name)
        and not (name == "out" and getattr(cfg, name) in (path, saved.get("out")))
    ]
    if extra:
        allowed = " and ".join(f"--{name}" for name in overrides)
        raise ConfigError(
            f"--resume takes its flags from {run_dir.config_path}; only {allowed} may be "
            f"given with it, got {' '.join(extra)}"
        )
    values = {name: saved[name] for name in fields if name in saved}
    for name in overrides:
        if getattr(cfg, name) != getattr(defaults, name):
            values[name] = getattr(cfg, name)
    values["resume"] = str(path)
    try:
        resolved = cls(**values)
    except TypeError as e:
        raise ConfigError(f"{run_dir.config_path} does not hold a valid {trainer} config: {e}") from None
    validate = getattr(resolved, "validate", None)
    if validate is not None:
        validate()
    return resolved, run_dir


def run_resumable(
    trainer: str,
    cfg: Any,
    setup: Callable[[Any, InterruptFlag], tuple[ResumableTask, str, str]],
    *,
    checkpoint_name: str,
    load_checkpoint: Callable[[Path, str], Any],
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or with ``cfg.resume``, continue) a trainer; return the summary (also in summary.json).

    ``setup(cfg, interrupts)`` loads the data and builds the task; it returns the task, the data
    source (for config.json) and the plot title. ``load_checkpoint(path, trainer)`` reads the
    checkpoint ``RUN_DIR/<checkpoint_name>`` (before the slow data loading, so a bad one fails at
    once). Ctrl-C finishes the current step, saves a checkpoint and raises KeyboardInterrupt (the
    CLI exits 130). The run directory is released when the run ends, however it ends (see
    :meth:`RunDir.release <backproplab.training.run_dir.RunDir.release>` and ``abandon``).
    """
    resuming = cfg.resume is not None
    if resuming:
        cfg, run_dir = resolve_resume_config(type(cfg), cfg, trainer)
    else:
        validate = getattr(cfg, "validate", None)
        if validate is not None:  # run(cfg) from Python is checked as the command line is
            validate()
        run_dir = RunDir(cfg.out or default_run_dir(trainer))
    ckpt_path = run_dir.path / checkpoint_name
    try:
        ckpt = load_checkpoint(ckpt_path, trainer) if resuming else None
        with deferred_interrupts() as interrupts:
            task, source, title = setup(cfg, interrupts)
            start = 0
            if ckpt is not None:
                start = task.restore(ckpt, str(ckpt_path))
                del ckpt
                if start >= cfg.max_steps:
                    raise ConfigError(
                        f"{run_dir.path} has already trained for {start} steps; "
                        f"pass --max_steps larger than {start} to train further"
                    )
                if run_dir.metrics_path.is_file():
                    run_dir.truncate_metrics(start)
            run_dir.save_config(cfg, trainer=trainer, data_source=source)
            summary = train_loop(
                task,
                run_dir,
                max_steps=cfg.max_steps,
                eval_freq=cfg.eval_freq,
                start_step=start,
                title=title,
                progress=progress,
            )
    except BaseException:
        # Let go of the directory at once (a resume in this process may follow), removing it when
        # it holds nothing of this run yet; metrics, checkpoints and summaries are kept.
        run_dir.abandon()
        raise
    run_dir.release()
    summary["run_dir"] = str(run_dir.path)
    if resuming:
        summary["resumed_from_step"] = start
    return summary
