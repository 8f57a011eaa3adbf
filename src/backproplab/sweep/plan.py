"""The trials of a sweep: their flags, checked by the trainer's config before any trial starts.

A :class:`SweepPlan` is made once, when a sweep starts (:func:`make_plan`), and kept in the sweep
directory's ``sweep.json``; ``--resume`` reads it back, so a resumed sweep runs exactly the trials
of the first start, whatever the sweep file says by then. Every trial's config (fixed flags plus
its drawn values) goes through the trainer's own checks (the ``seed`` rule and ``validate()``, as
``backproplab train`` would) and the data set is loaded once to check that the validation split
and a batch fit in its training set, so an impossible value is one clear error before any trial
starts. This module never imports Ray itself (:func:`make_plan` draws the trials with Ray Tune's
variant generator, :mod:`backproplab.sweep.space`).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backproplab.cli.dataclass_args import config_from_namespace
from backproplab.errors import BackproplabError, ConfigError, DataError
from backproplab.sweep.spec import EarlyStopping, SweepSpec, TrainerFlags

#: Version of the ``sweep.json`` layout.
PLAN_VERSION = 1
#: Flags whose values are paths, made absolute when the plan is made (trials run in other
#: working directories).
PATH_FLAGS = ("data_dir",)


@dataclass
class Trial:
    """One trial: its index (from 0), its name (the run directory's) and its searched flags."""

    index: int
    name: str
    flags: dict[str, Any]


@dataclass
class SweepPlan:
    """Everything a sweep runs, as kept in ``sweep.json``."""

    name: str
    spec_path: str
    trainer: str
    metric: str
    mode: str
    fixed: dict[str, Any]
    searched: list[str]
    trials: list[Trial]
    early_stopping: EarlyStopping | None = None
    seed: int = 0
    num_samples: int = 1
    #: The flags searched on a log scale (``loguniform``): their picture's axis is logarithmic.
    log_scale: list[str] = field(default_factory=list)
    version: int = PLAN_VERSION
    #: Each trial's resolved flags (fixed and searched), filled in by :meth:`check`.
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ flags
    def values(self, trial: Trial) -> dict[str, Any]:
        """The trial's flags as given: the fixed ones and its drawn ones."""
        return {**self.fixed, **trial.flags}

    @property
    def varied(self) -> list[str]:
        """The searched flags whose values differ between trials (the results table's columns)."""
        return [
            f for f in self.searched if len({json.dumps(t.flags.get(f)) for t in self.trials}) > 1
        ] or list(self.searched)

    def describe(self, trial: Trial) -> str:
        """``optimizer=adam learning_rate=0.0012`` (its varied flags)."""
        return " ".join(f"{f}={trial.flags[f]}" for f in self.varied if f in trial.flags)

    def check(self) -> list[Any]:
        """Build and check every trial's config with the trainer's own rules; return the configs
        (``out`` unset). An invalid trial is a ConfigError naming it and its values."""
        flags = TrainerFlags(self.trainer)
        configs: list[Any] = []
        for trial in self.trials:
            try:
                cfg: Any = config_from_namespace(flags.config_cls, argparse.Namespace(**self.values(trial)))
            except ConfigError as e:
                raise ConfigError(
                    f"{self.spec_path}: trial {trial.index + 1} of {len(self.trials)} "
                    f"({self.describe(trial) or 'fixed flags only'}): {e}"
                ) from None
            configs.append(cfg)
            self.resolved[trial.name] = dict(vars(cfg))
        longest = max(self.max_steps(t) for t in self.trials)
        if self.early_stopping is not None and self.early_stopping.grace_period >= longest:
            raise ConfigError(
                f"{self.spec_path} [early_stopping]: grace_period must be smaller than the longest "
                f"trial's --max_steps {longest}, got {self.early_stopping.grace_period}"
            )
        return configs

    def max_steps(self, trial: Trial) -> int:
        """The steps the trial trains for (after :meth:`check`)."""
        return int(self.resolved[trial.name]["max_steps"])

    # ------------------------------------------------------------------ the file
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("resolved")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> SweepPlan:
        """The plan of a ``sweep.json`` (a DataError for one that is not)."""
        try:
            if data.get("version") != PLAN_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {PLAN_VERSION}")
            early = data.get("early_stopping")
            return cls(
                **{
                    **data,
                    "trials": [Trial(**t) for t in data["trials"]],
                    "early_stopping": None if early is None else EarlyStopping(**early),
                }
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{where} is not a sweep plan of this backproplab: {e}") from None


def trial_names(n: int) -> list[str]:
    """``trial-00``, ``trial-01``, ... (zero-padded to the same width, at least 2 digits)."""
    width = max(2, len(str(n - 1)))
    return [f"trial-{i:0{width}d}" for i in range(n)]


def _absolute(fixed: dict[str, Any]) -> dict[str, Any]:
    out = dict(fixed)
    for flag in PATH_FLAGS:
        if isinstance(out.get(flag), str) and out[flag]:
            out[flag] = os.path.abspath(os.path.expanduser(out[flag]))
    return out


def make_plan(spec: SweepSpec) -> SweepPlan:
    """Draw the trials of ``spec`` (with Ray Tune, :func:`~backproplab.sweep.space.sample_trials`)
    and check each of them; see the module docstring."""
    from backproplab.sweep.space import sample_trials

    drawn = sample_trials(spec)
    plan = SweepPlan(
        name=spec.name,
        spec_path=spec.path,
        trainer=spec.trainer,
        metric=spec.metric,
        mode=spec.mode,
        fixed=_absolute(spec.fixed),
        searched=list(spec.space),
        trials=[
            Trial(i, name, flags)
            for i, (name, flags) in enumerate(zip(trial_names(len(drawn)), drawn, strict=True))
        ],
        early_stopping=spec.early_stopping,
        seed=spec.seed,
        num_samples=spec.num_samples,
        log_scale=[flag for flag, dim in spec.space.items() if dim.kind == "loguniform"],
    )
    plan.check()
    return plan


def check_data(plan: SweepPlan) -> None:
    """Load each data set the trials use once (which also fills the cache the trials read) and
    check that every trial's validation split and batch fit in its training set."""
    from backproplab.data import load_dataset

    sizes: dict[tuple[str, str | None], int] = {}
    for trial in plan.trials:
        cfg = plan.resolved[trial.name]
        key = (cfg["dataset"], cfg.get("data_dir"))
        if key not in sizes:
            try:
                sizes[key] = load_dataset(*key).n_train
            except BackproplabError as e:
                raise type(e)(f"{plan.spec_path}: {e}") from None
        n = sizes[key]
        if cfg.get("train_subset"):
            n = min(n, int(cfg["train_subset"]))
        where = f"{plan.spec_path}: trial {trial.index + 1} ({plan.describe(trial) or 'fixed flags only'})"
        val = int(cfg["validation_size"])
        if not 0 < val < n:
            raise ConfigError(
                f"{where}: --validation_size must be smaller than the {n} training examples of "
                f"{cfg['dataset']}, got {val}"
            )
        if int(cfg["batch_size"]) > n - val:
            raise ConfigError(
                f"{where}: --batch_size must be at most the {n - val} training examples left after "
                f"--validation_size {val}, got {cfg['batch_size']}"
            )


def save_plan(plan: SweepPlan, path: Path) -> None:
    """Write ``sweep.json`` atomically."""
    from backproplab.utils.atomic import atomic_write_json

    atomic_write_json(path, plan.to_json())


def load_plan(path: Path) -> SweepPlan:
    """Read ``sweep.json`` (a DataError when it is missing or not a plan) and check its trials."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path.parent} is not a sweep directory (no {path.name})") from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a sweep plan of this backproplab")
    plan = SweepPlan.from_json(data, str(path))
    plan.check()
    return plan
