"""Starting or resuming a PyTorch training run: config resolution, checkpoint restore, the loop.

A new run gets a fresh run directory. ``--resume RUN_DIR`` reopens one: every flag comes from
``RUN_DIR/config.json`` except ``--max_steps`` (to train further) and ``--device``; any other flag
given with ``--resume`` is a :class:`~backproplab.errors.ConfigError`. The model, optimizer,
schedule, batch sampler and generator states come from ``RUN_DIR/checkpoint.pt``; metrics logged
after the checkpoint's step are dropped, and training continues from that step, so the
metrics equal those of a run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from backproplab.errors import ConfigError
from backproplab.training.checkpoint import load_checkpoint
from backproplab.training.interrupt import InterruptFlag, deferred_interrupts
from backproplab.training.loop import train_loop
from backproplab.training.run_dir import RunDir, default_run_dir
from backproplab.training.torch_task import TorchTrainTask

C = TypeVar("C")

#: Flags that may be given together with --resume.
RESUME_FLAGS = ("max_steps", "device", "resume")


def derive_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit seeds derived from the run's ``--seed`` (NumPy's SeedSequence)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64) >> np.uint64(1)]


def resolve_resume_config(cls: type[C], cfg: C, trainer: str) -> tuple[C, RunDir]:
    """The config to resume with (saved flags plus --max_steps / --device) and the reopened run."""
    path = getattr(cfg, "resume")  # noqa: B009
    run_dir = RunDir(path, resume=True)
    saved = run_dir.load_config()
    if saved.get("trainer") != trainer:
        raise ConfigError(f"cannot resume {path} with train {trainer}: it is a {saved.get('trainer')!r} run")
    defaults = cls()
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    extra = [
        f"--{name}"
        for name in fields
        if name not in RESUME_FLAGS
        and getattr(cfg, name) != getattr(defaults, name)
        and not (name == "out" and getattr(cfg, name) in (path, saved.get("out")))
    ]
    if extra:
        raise ConfigError(
            f"--resume takes its flags from {run_dir.config_path}; only --max_steps and --device may be "
            f"given with it, got {' '.join(extra)}"
        )
    values = {name: saved[name] for name in fields if name in saved}
    for name in ("max_steps", "device"):
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


def run_torch_trainer(
    trainer: str,
    cfg: Any,
    setup: Callable[[Any, InterruptFlag], tuple[TorchTrainTask, str, str]],
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) a PyTorch trainer; return the summary (also in ``<run>/summary.json``).

    ``setup(cfg, interrupts)`` loads the data and builds the task; it returns the task, the data
    source (for config.json) and the plot title. Ctrl-C finishes the current step, saves a
    checkpoint and raises KeyboardInterrupt (the CLI exits 130).
    """
    resuming = cfg.resume is not None
    if resuming:
        cfg, run_dir = resolve_resume_config(type(cfg), cfg, trainer)
    else:
        run_dir = RunDir(cfg.out or default_run_dir(trainer))
    # Read the checkpoint before the (slow) data loading, so a bad one fails at once.
    ckpt = load_checkpoint(run_dir.checkpoint_path, trainer) if resuming else None
    with deferred_interrupts() as interrupts:
        task, source, title = setup(cfg, interrupts)
        start = 0
        if ckpt is not None:
            start = task.restore(ckpt, str(run_dir.checkpoint_path))
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
    summary["run_dir"] = str(run_dir.path)
    if resuming:
        summary["resumed_from_step"] = start
    return summary
