"""Running a sweep's trials on Ray Tune: an embedded local Ray, or an existing cluster.

By default the sweep starts its own Ray on this machine (``ray.init(address="local")``: never a
cluster that happens to run here) with one CPU per trial, so it runs one trial per core; each
trial's worker gets ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` equal to
its CPUs (inherited from the sweep's process by the embedded Ray, through Ray's ``runtime_env`` on a
cluster). Token authentication stays on (Ray 2.60's default for a new
cluster); when no token is configured the embedded Ray gets one made for this sweep
(``RAY_AUTH_TOKEN`` in this process and its children), so nothing is written to ``~/.ray``.
``--address HOST:PORT`` attaches to a running cluster instead (started with ``ray start``; give the
driver the cluster's token as for any Ray client: ``RAY_AUTH_MODE=token`` and
``~/.ray/auth_token``, ``RAY_AUTH_TOKEN_PATH`` or ``RAY_AUTH_TOKEN``); the sweep directory must
then be on a file system that every node sees at the same path, as Ray Tune itself requires.

All trials go to one ``Tuner`` as a grid over the plan's trials (:mod:`backproplab.sweep.plan`
drew them). ``[early_stopping]`` is ASHA on ``step`` with the sweep's metric; the trials it stops
are recorded and their run directories finished with status ``stopped``
(:func:`~backproplab.sweep.trial.finish_stopped_run`). Ray Tune's own console output is off; the
sweep prints its progress line (:mod:`backproplab.sweep.progress`) and one line per failed trial.
Ray Tune's records of each session go to ``SWEEP_DIR/tune/``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from backproplab.errors import ConfigError
from backproplab.sweep.plan import SweepPlan, Trial
from backproplab.sweep.progress import SweepProgress
from backproplab.sweep.sweep_dir import SweepDir
from backproplab.sweep.trial import THREAD_VARS, finish_stopped_run, read_summary, run_trial, trial_state

#: How to install Ray Tune, for the error when it is missing.
INSTALL_HINT = "pip install -e '.[sweep]' (ray[tune]==2.60.0)"
#: Environment variables passed on to every trial's worker when set here.
PASSED_ENV = ("BACKPROPLAB_CACHE",)
#: Ray Tune's loggers of "Trial task failed" (a traceback per failed trial), "Trials did not
#: complete" and the Ctrl-C advice to call Tuner.restore: the sweep says these in its own lines.
QUIET_LOGGERS = ("ray.tune.execution.tune_controller", "ray.tune.tune")


def require_ray() -> None:
    """ConfigError unless Ray Tune is installed (without importing Ray: it reads its environment
    once, see :func:`prepare_ray_env`)."""
    spec = importlib.util.find_spec("ray")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not any((Path(p) / "tune" / "__init__.py").is_file() for p in locations):
        raise ConfigError(f"backproplab sweep runs on Ray Tune, which is not installed: {INSTALL_HINT}")


@dataclass
class SweepOutcome:
    """What a session of the sweep saw: the trials ASHA stopped (name -> step) and the failed ones
    (name -> their error line)."""

    stopped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (not Linux)
        return os.cpu_count() or 1


def worker_env(cpus_per_trial: int) -> dict[str, str]:
    """The environment of every trial's worker: the thread counts, and what :data:`PASSED_ENV` names."""
    env = {var: str(cpus_per_trial) for var in THREAD_VARS}
    env.update({k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)})
    return env


def prepare_ray_env(address: str | None) -> None:
    """Set this process's environment for Ray before Ray is first imported (Ray reads it once):
    Tune's classic console reporter (silent at ``verbose=0``), and for an embedded Ray
    (``address`` None) token authentication with a token of this sweep unless one is configured;
    see the module docstring."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Every report of a trial holds the metric; a trial stopped (Ctrl-C) before its first evaluation
    # ends with an empty result, which Tune's strict check would turn into an error of the sweep.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if address is not None:
        return
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    has_token = any(os.environ.get(k) for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"))
    if (
        os.environ["RAY_AUTH_MODE"] == "token"
        and not has_token
        and not (Path.home() / ".ray" / "auth_token").is_file()
    ):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


@contextmanager
def ray_session(address: str | None, cpus_per_trial: int) -> Iterator[int]:
    """Start an embedded Ray (``address`` None) or attach to ``address``; yield the cluster's CPUs;
    shut down (or detach) at the end. Call :func:`prepare_ray_env` before Ray is first imported."""
    import ray

    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:
            # The embedded Ray's processes inherit this environment, so the workers it starts at
            # once already have the thread counts (a runtime_env would make Ray start new ones).
            os.environ.update(worker_env(cpus_per_trial))
            ray.init(address="local", num_cpus=available_cpus(), include_dashboard=False, **common)
        else:
            ray.init(address=address, runtime_env={"env_vars": worker_env(cpus_per_trial)}, **common)
    except Exception as e:  # ConnectionError, AuthenticationError, ...: one line
        where = "start Ray on this machine" if address is None else f"attach to the Ray cluster at {address}"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"cannot {where}: {first}") from None
    try:
        # The sweep prints its own lines: one per failed trial (its traceback is in the trial's log
        # and Tune's error.txt), and what to do after an interruption.
        logging.getLogger("ray.tune").setLevel(logging.ERROR)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < cpus_per_trial:
            raise ConfigError(f"--cpus_per_trial {cpus_per_trial}: the Ray cluster has only {cpus} CPUs")
        yield cpus
    finally:
        ray.shutdown()


def trial_job(plan: SweepPlan, trial: Trial, sweep: SweepDir, cpus: int) -> dict[str, Any]:
    """What :func:`~backproplab.sweep.trial.run_trial` needs to run ``trial`` (Tune's config of it)."""
    run_dir = sweep.run_dir(trial.name)
    return {
        "index": trial.index,
        "name": trial.name,
        "trainer": plan.trainer,
        "values": {**plan.values(trial), "out": str(run_dir)},
        "run_dir": str(run_dir),
        "log": str(sweep.log_path(trial.name)),
        "metric": plan.metric,
        "max_steps": plan.max_steps(trial),
        "cpus": cpus,
    }


def error_line(log_path: Path) -> str:
    """The failed trial's one line: its last ``error: `` line, else its log's last line."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "failed (no log)"
    lines = [ln for ln in lines if ln]
    errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
    return errors[-1] if errors else (lines[-1] if lines else "failed (empty log)")


def _job(trial: Any) -> dict[str, Any]:
    job: dict[str, Any] = trial.config["trial"]
    return job


def _tune_parts(
    plan: SweepPlan, sweep: SweepDir, outcome: SweepOutcome, progress: SweepProgress
) -> tuple[Any, Any]:
    """The scheduler (ASHA that records what it stops, or None) and the progress callback."""
    from ray.tune.progress_reporter import TrialProgressCallback
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        """ASHA that records the trials it stops before their last step."""

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision: str = super().on_trial_result(tune_controller, trial, result)
            job = _job(trial)
            if decision == TrialScheduler.STOP and result.get("step", 0) < job["max_steps"]:
                outcome.stopped.setdefault(job["name"], int(result["step"]))
            return decision

    class Progress(TrialProgressCallback):
        """The sweep's progress line, in place of Tune's own trial lines (which it replaces)."""

        def __init__(self) -> None:
            super().__init__(metric=plan.metric)

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            progress.started(_job(trial)["name"])

        def on_trial_result(
            self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            if plan.metric in result:
                progress.result(_job(trial)["name"], float(result[plan.metric]))

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            name = _job(trial)["name"]
            summary = read_summary(sweep.run_dir(name)) or {}
            stopped = name in outcome.stopped and summary.get("status") not in ("completed", "diverged")
            progress.finished(name, "stopped" if stopped else "done")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            name = _job(trial)["name"]
            outcome.failed[name] = error_line(sweep.log_path(name))
            print(
                f"{name} failed: {outcome.failed[name]} (log: {sweep.log_path(name)})",
                file=progress.file,
                flush=True,
            )
            progress.finished(name, "failed")

        def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
            progress.tick()

    scheduler = None
    if plan.early_stopping is not None:
        scheduler = RecordingASHA(
            time_attr="step",
            max_t=max(plan.max_steps(t) for t in plan.trials),
            grace_period=plan.early_stopping.grace_period,
            reduction_factor=plan.early_stopping.reduction_factor,
            stop_last_trials=False,
        )
    return scheduler, Progress()


def run_sweep(
    plan: SweepPlan,
    sweep: SweepDir,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    cpus_per_trial: int = 1,
    file: IO[str] | None = None,
) -> SweepOutcome:
    """Run (or continue) every trial of ``plan`` in ``sweep``; see the module docstring. Trials that
    finished before are not trained again (:mod:`backproplab.sweep.trial`)."""
    outcome = SweepOutcome()
    t0 = time.monotonic()
    progress = SweepProgress(plan.name, len(plan.trials), plan.metric, plan.mode, file=file)
    try:
        _fit(plan, sweep, outcome, progress, address, max_concurrent, cpus_per_trial)
    finally:
        outcome.seconds = time.monotonic() - t0
        # The workers are gone: finish the run directories of the trials ASHA stopped.
        for name, step in outcome.stopped.items():
            if trial_state(sweep.run_dir(name)) != "finished":
                finish_stopped_run(sweep.run_dir(name), step)
    return outcome


def _fit(
    plan: SweepPlan,
    sweep: SweepDir,
    outcome: SweepOutcome,
    progress: SweepProgress,
    address: str | None,
    max_concurrent: int | None,
    cpus_per_trial: int,
) -> None:
    with ray_session(address, cpus_per_trial) as cpus:
        from ray import tune

        where = "this machine" if address is None else f"the Ray cluster at {address}"
        slots = (
            cpus // cpus_per_trial if max_concurrent is None else min(max_concurrent, cpus // cpus_per_trial)
        )
        print(
            f"sweep {plan.name}: {len(plan.trials)} trials of train {plan.trainer} on {where} "
            f"({cpus} CPUs, {cpus_per_trial} per trial, up to {slots} at a time); "
            f"selecting on {plan.metric} ({plan.mode}); directory {sweep.path}",
            file=progress.file,
            flush=True,
        )
        scheduler, callback = _tune_parts(plan, sweep, outcome, progress)
        jobs = [trial_job(plan, t, sweep, cpus_per_trial) for t in plan.trials]

        def trial_name(trial: Any) -> str:
            return str(_job(trial)["name"])

        tuner = tune.Tuner(
            tune.with_resources(run_trial, {"cpu": cpus_per_trial}),
            param_space={"trial": tune.grid_search(jobs)},
            tune_config=tune.TuneConfig(
                metric=plan.metric,
                mode=plan.mode,
                scheduler=scheduler,
                max_concurrent_trials=max_concurrent,
                reuse_actors=True,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=f"session-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(sweep.tune_dir),
                verbose=0,
                callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        tuner.fit()
