"""``backproplab sweep SWEEP.toml``: a hyperparameter search of a trainer, run on Ray Tune.

The sweep file names the trainer, its fixed flags, a search per flag, the metric (on a validation
split, never the test split) and optional ASHA early stopping (:mod:`backproplab.sweep.spec`).
Every trial's flags are drawn and checked before any trial starts; each trial is an ordinary run
directory under the sweep directory; the sweep prints a progress line, then the results table
(sorted, the varied flags only; also ``results.csv``), writes ``results.png`` and reports the chosen
trial's test accuracy once. ``--resume SWEEP_DIR`` continues a stopped or crashed sweep: finished
trials are kept as they are, interrupted ones continue from their checkpoint. Exit codes: 0 done,
2 a bad input (or no trial could finish), 130 interrupted (resume it).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

from backproplab.cli.dataclass_args import add_dataclass_args
from backproplab.errors import ConfigError, NonFiniteError

EXIT_INTERRUPTED = 130


@dataclass
class SweepConfig:
    """Flags of ``backproplab sweep`` (the sweep file itself holds the search)."""

    spec: str | None = field(default=None, metadata={"cli": False})
    overrides: list[str] = field(default_factory=list, metadata={"cli": False})
    out: str | None = field(
        default=None, metadata={"help": "sweep directory (default: runs/sweep-<file name>-<time>)"}
    )
    resume: str | None = field(
        default=None, metadata={"help": "continue the sweep in this directory (finished trials are kept)"}
    )
    address: str | None = field(
        default=None,
        metadata={
            "help": "attach to this Ray cluster (HOST:PORT, or auto); default: an embedded Ray on this machine"
        },
    )
    max_concurrent: int | None = field(
        default=None, metadata={"help": "run at most this many trials at once (default: one per CPU)"}
    )
    cpus_per_trial: int = field(default=1, metadata={"help": "CPU cores (and BLAS threads) of each trial"})
    data_dir: str | None = field(
        default=None, metadata={"help": "the trials' --data_dir (same as --set data_dir=PATH)"}
    )
    dry_run: bool = field(
        default=False, metadata={"help": "check the sweep file and list its trials; run nothing"}
    )

    def validate(self) -> None:
        if (self.spec is None) == (self.resume is None):
            raise ConfigError(
                "backproplab sweep takes a sweep file (SWEEP.toml) or --resume SWEEP_DIR, "
                f"got {'both' if self.spec else 'neither'}"
            )
        if self.resume is not None:
            given = [
                f
                for f, v in (("--out", self.out), ("--data_dir", self.data_dir), ("--dry_run", self.dry_run))
                if v
            ]
            if given or self.overrides:
                raise ConfigError(
                    f"--resume takes the trials from {self.resume}/sweep.json; only --address, --max_concurrent "
                    f"and --cpus_per_trial may be given with it, got {' '.join(given) or '--set'}"
                )
        for name in ("max_concurrent", "cpus_per_trial"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", default=None, metavar="SWEEP.toml", help="the sweep file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="fix a trainer flag for every trial, over the file's [fixed] (repeatable)",
    )
    add_dataclass_args(parser, SweepConfig)


def _print_trials(plan: Any) -> None:
    print(f"{len(plan.trials)} trials of train {plan.trainer}, selecting on {plan.metric} ({plan.mode}):")
    for trial in plan.trials:
        print(f"  {trial.name}  {plan.describe(trial)}")


def main(args: argparse.Namespace) -> int:
    from backproplab.sweep import report
    from backproplab.sweep.plan import check_data, load_plan, make_plan, save_plan
    from backproplab.sweep.runner import prepare_ray_env, require_ray, run_sweep
    from backproplab.sweep.spec import load_spec
    from backproplab.sweep.sweep_dir import SweepDir
    from backproplab.sweep.trial import trial_state
    from backproplab.utils.atomic import atomic_write_text

    cfg = SweepConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SweepConfig)})
    cfg.validate()
    if cfg.resume is not None:
        prepare_ray_env(cfg.address)
        require_ray()
        sweep = SweepDir.open(cfg.resume)
        plan = load_plan(sweep.plan_path)
        check_data(plan)
        states = [trial_state(sweep.run_dir(t.name)) for t in plan.trials]
        print(
            f"resuming sweep {plan.name} in {sweep.path}: {states.count('finished')} of {len(states)} trials "
            f"finished, {states.count('partial')} continue from their checkpoint, "
            f"{states.count('new') + states.count('stale')} start"
        )
    else:
        assert cfg.spec is not None
        overrides = list(cfg.overrides) + ([f"data_dir={cfg.data_dir}"] if cfg.data_dir else [])
        spec = load_spec(cfg.spec, overrides)  # the file's errors come before Ray is imported
        prepare_ray_env(cfg.address)
        require_ray()
        plan = make_plan(spec)
        check_data(plan)
        if cfg.dry_run:
            _print_trials(plan)
            return 0
        sweep = SweepDir.create(cfg.out, spec.name)
        atomic_write_text(sweep.spec_copy_path, spec.text)
        save_plan(plan, sweep.plan_path)
    with sweep:
        try:
            outcome = run_sweep(
                plan,
                sweep,
                address=cfg.address,
                max_concurrent=cfg.max_concurrent,
                cpus_per_trial=cfg.cpus_per_trial,
            )
        except KeyboardInterrupt:
            print(
                f"interrupted: continue the sweep with backproplab sweep --resume {sweep.path}",
                file=sys.stderr,
            )
            raise
        results = report.collect(plan, sweep, outcome.failed)
        chosen = report.choose(results, plan.mode)
        print()
        print(report.format_table(plan, results))
        report.write_csv(sweep.results_csv, plan, results)
        report.plot_results(sweep.picture, plan, results, chosen)
        report.write_summary(sweep.summary_path, plan, results, chosen)
        print(f"results: {sweep.results_csv}\npicture: {sweep.picture}\ntrials:  {sweep.trials_dir}")
        unfinished = [r for r in results if r.status in ("unfinished", "pending")]
        if unfinished:
            print(
                f"interrupted: {len(results) - len(unfinished)} of {len(results)} trials finished, all kept; "
                f"continue with: backproplab sweep --resume {sweep.path}",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        failed = [r for r in results if r.status == "failed"]
        if failed:
            print(
                f"{len(failed)} trials failed (see {sweep.logs_dir}); backproplab sweep --resume {sweep.path} runs them again"
            )
        if chosen is None:
            if all(r.status == "diverged" for r in results):
                raise NonFiniteError(f"every trial of the sweep diverged (see {sweep.trials_dir})")
            first = failed[0].error if failed else "no trial reached an evaluation"
            raise ConfigError(f"no trial of the sweep finished: {first}")
        acc = "unknown" if chosen.test_acc is None else f"{chosen.test_acc:.4f}"
        print(
            f"chosen: {chosen.trial.name} ({plan.describe(chosen.trial)}): {plan.metric} {chosen.value:.4f} "
            f"at step {chosen.steps}; its test accuracy (reported once, not used to choose): {acc}"
        )
        print(f"train it alone: {report.command(plan, chosen.trial)}")
    return 0
