"""The sweep file: a TOML document naming a trainer, its fixed flags and a search space per flag.

.. code-block:: toml

    trainer = "mlp-torch"      # a trainer of `backproplab train`
    metric = "val_acc"         # val_acc (maximised) or val_loss (minimised): the validation split
    num_samples = 2            # the grid is repeated this many times, random ranges drawn anew each time
    seed = 0                   # seed of those draws: the same file gives the same trials

    [fixed]                    # flags of every trial, as on the command line (without the dashes)
    dataset = "digits"
    validation_size = 300      # required: the trials select on a split carved from the training set
    max_steps = 200

    [space]                    # one search per flag
    optimizer = { choice = ["sgd", "adam"] }
    dnn_hidden_units = { grid = ["100", "200,100"] }
    learning_rate = { loguniform = [1e-4, 1e-2] }
    lr_gamma = { uniform = [0.3, 0.9] }     # a range over an integer flag draws integers, ends included

    [early_stopping]           # optional: ASHA stops poor trials at steps grace_period * reduction_factor**k
    grace_period = 100
    reduction_factor = 3

The flags are the trainer's own: each value is converted and checked as the command line would
(types, choices), an unknown flag gets the command line's "did you mean" error, and every trial's
whole config is checked by the trainer's ``validate()`` before any trial starts
(:mod:`backproplab.sweep.plan`). Every error is one :class:`~backproplab.errors.ConfigError` line
naming the file, the section, the flag, and the expected and actual value. This module never
imports Ray.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import math
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backproplab.cli.dataclass_args import OneLineParser, _base_type, add_dataclass_args, unknown_flag_error
from backproplab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  (Python 3.10: the tomli backport, in the sweep extra)
    import tomli as tomllib

#: The keys of a sweep file.
TOP_KEYS = ("trainer", "metric", "num_samples", "seed", "fixed", "space", "early_stopping")
#: The searches of a flag in ``[space]``.
KINDS = ("grid", "choice", "uniform", "loguniform")
#: The metrics a sweep selects on, and whether larger is better ("max") or smaller ("min").
METRICS = {"val_acc": "max", "val_loss": "min"}
#: The keys of ``[early_stopping]`` (ASHA) and their defaults (None: required).
EARLY_STOPPING_KEYS: dict[str, float | None] = {"grace_period": None, "reduction_factor": 3.0}
#: Flags the sweep sets itself, with what to do instead.
SWEEP_SETS = {
    "out": "the sweep gives every trial its own run directory under the sweep directory",
    "resume": "continue a stopped sweep with backproplab sweep --resume SWEEP_DIR",
}
#: More trials than this is a mistake (a grid product that exploded), not a sweep.
MAX_TRIALS = 10_000


class _RaisingParser(OneLineParser):
    """The trainer's flags as a parser whose errors are ConfigErrors (not an exit)."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


@dataclass(frozen=True)
class Dimension:
    """The search of one flag: ``kind`` is ``grid`` or ``choice`` (``values`` are the flag's values)
    or ``uniform`` / ``loguniform`` (``values`` is (low, high); integers, ends included, when the
    flag is an integer: ``integer``)."""

    flag: str
    kind: str
    values: tuple[Any, ...]
    integer: bool = False

    def describe(self) -> str:
        """``optimizer: choice of sgd, adam``, ``learning_rate: loguniform in [0.0001, 0.01]``."""
        if self.kind in ("grid", "choice"):
            return f"{self.flag}: {self.kind} of {', '.join(map(str, self.values))}"
        return f"{self.flag}: {self.kind} in [{self.values[0]:g}, {self.values[1]:g}]"

    @property
    def grid_size(self) -> int:
        """How many trials this dimension multiplies the grid by (1 for a random dimension)."""
        return len(self.values) if self.kind == "grid" else 1


@dataclass(frozen=True)
class EarlyStopping:
    """ASHA: at steps ``grace_period * reduction_factor**k`` a trial continues only if its metric is
    in the best ``1 / reduction_factor`` of the trials that reached that step."""

    grace_period: int
    reduction_factor: float = 3.0


@dataclass
class SweepSpec:
    """A checked sweep file (see the module docstring)."""

    path: str
    trainer: str
    fixed: dict[str, Any]
    space: dict[str, Dimension]
    num_samples: int = 1
    metric: str = "val_acc"
    seed: int = 0
    early_stopping: EarlyStopping | None = None
    text: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        """The file's stem (``report-mlp`` for ``sweeps/report-mlp.toml``)."""
        return Path(self.path).stem

    @property
    def mode(self) -> str:
        """``max`` for an accuracy, ``min`` for a loss."""
        return METRICS[self.metric]

    @property
    def n_trials(self) -> int:
        """The grid's size times ``num_samples``."""
        return math.prod(d.grid_size for d in self.space.values()) * self.num_samples


class TrainerFlags:
    """The command-line flags of one trainer (its ``CONFIG`` dataclass), for checking sweep values.

    Values are converted as ``backproplab train TRAINER --flag VALUE`` would convert them, with
    the same choices and the same "did you mean" for an unknown flag.
    """

    def __init__(self, trainer: str) -> None:
        from backproplab.cli.main import TRAINERS

        if trainer not in TRAINERS:
            raise ConfigError(f"unknown trainer {trainer!r}; expected one of {', '.join(TRAINERS)}")
        self.trainer = trainer
        self.config_cls: type = importlib.import_module(TRAINERS[trainer][0]).CONFIG
        hints = typing.get_type_hints(self.config_cls)
        self.types: dict[str, tuple[type, bool]] = {
            f.name: _base_type(hints[f.name])
            for f in dataclasses.fields(self.config_cls)
            if f.init and f.metadata.get("cli") is not False
        }
        self.parser = _RaisingParser(prog=f"backproplab train {trainer}")
        add_dataclass_args(self.parser, self.config_cls)
        self._actions = {a.dest: a for a in self.parser._actions if a.dest in self.types}

    def check_flag(self, flag: str, where: str) -> None:
        """ConfigError unless ``flag`` is one of the trainer's flags that a sweep may set."""
        if flag not in self.types:
            self.parser.prog = where
            raise unknown_flag_error(self.parser, [f"--{flag}"])
        if flag in SWEEP_SETS:
            raise ConfigError(f"{where}: --{flag} cannot be set in a sweep: {SWEEP_SETS[flag]}")

    def is_number(self, flag: str) -> bool:
        return self.types[flag][0] in (int, float)

    def is_int(self, flag: str) -> bool:
        return self.types[flag][0] is int

    def convert(self, flag: str, raw: Any, where: str) -> Any:
        """The value of ``--flag`` for the TOML value (or ``--set`` text) ``raw``."""
        self.check_flag(flag, where)
        tp, _optional = self.types[flag]
        action = self._actions[flag]
        if isinstance(raw, (list, dict)):
            raise ConfigError(
                f"{where} {flag}: expects one value, got {type(raw).__name__} {raw!r} "
                "(a search of several values goes in [space])"
            )
        if tp is bool:
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                raw = raw.lower() == "true"
            if not isinstance(raw, bool):
                raise ConfigError(f"{where} {flag}: expects true or false, got {raw!r}")
            return raw
        if isinstance(raw, bool):
            raise ConfigError(f"{where} {flag}: expects {_article(tp.__name__)}, got {raw!r}")
        try:
            convert: Any = action.type
            value = convert(str(raw)) if convert is not None else raw
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"{where} {flag}: {e}") from None
        if action.choices is not None and value not in action.choices:
            raise ConfigError(
                f"{where} {flag}: expects one of {', '.join(map(str, action.choices))}, got {raw!r}"
            )
        return value


def _article(type_name: str) -> str:
    return f"{'an' if type_name[0] in 'aeiou' else 'a'} {type_name}"


def _close(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f" (expected one of {', '.join(options)})"


def _integer(where: str, name: str, raw: Any, low: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < low:
        raise ConfigError(f"{where}: {name} must be an integer >= {low}, got {raw!r}")
    return raw


def _dimension(flags: TrainerFlags, flag: str, raw: Any, where: str) -> Dimension:
    here = f"{where} {flag}"
    flags.check_flag(flag, where)
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in KINDS:
        hint = " (fixed values go in [fixed])" if not isinstance(raw, dict) else ""
        raise ConfigError(
            f"{here}: expects a table with one of {', '.join(KINDS)}, like {{ grid = [...] }}, "
            f"got {raw!r}{hint}"
        )
    kind, values = next(iter(raw.items()))
    if kind in ("grid", "choice"):
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{here}: {kind} expects a non-empty list of values, got {values!r}")
        converted = [flags.convert(flag, v, where) for v in values]
        for i, v in enumerate(converted):
            if v in converted[:i]:
                raise ConfigError(f"{here}: {kind} lists {v!r} twice")
        return Dimension(flag, kind, tuple(converted))
    if not flags.is_number(flag):
        raise ConfigError(
            f"{here}: {kind} expects a number flag, but --{flag} takes {flags.types[flag][0].__name__} "
            "values; use grid or choice"
        )
    integer = flags.is_int(flag)
    numbers = values if isinstance(values, list) else None
    if (
        numbers is None
        or len(numbers) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers)
        or (integer and any(not isinstance(v, int) for v in numbers))
    ):
        what = "integers" if integer else "numbers"
        raise ConfigError(f"{here}: {kind} expects [low, high], two {what}, got {values!r}")
    low, high = numbers
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ConfigError(f"{here}: {kind} expects low < high, got [{low}, {high}]")
    if kind == "loguniform" and not low > 0:
        raise ConfigError(f"{here}: loguniform expects 0 < low < high, got [{low}, {high}]")
    for v in numbers:  # the ends must be values the flag takes
        flags.convert(flag, v, where)
    return Dimension(flag, kind, (low, high), integer=integer)


def _early_stopping(raw: Any, where: str) -> EarlyStopping:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expects a table with grace_period (and reduction_factor), got {raw!r}")
    for key in raw:
        if key not in EARLY_STOPPING_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{_close(key, list(EARLY_STOPPING_KEYS))}")
    if "grace_period" not in raw:
        raise ConfigError(
            f"{where}: needs grace_period, the steps every trial trains before it can be stopped"
        )
    grace = _integer(where, "grace_period", raw["grace_period"], 1)
    factor = raw.get("reduction_factor", EARLY_STOPPING_KEYS["reduction_factor"])
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
        raise ConfigError(f"{where}: reduction_factor must be a number > 1, got {factor!r}")
    return EarlyStopping(grace, float(factor))


def parse_spec(text: str, path: str, overrides: Sequence[str] = ()) -> SweepSpec:
    """Check the sweep file ``text`` (read from ``path``); ``overrides`` are ``FLAG=VALUE`` texts
    that set fixed flags (``backproplab sweep --set``)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not a valid TOML file: {e}") from None
    for key in doc:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}{_close(key, TOP_KEYS)}")
    if "trainer" not in doc:
        raise ConfigError(f"{path}: needs trainer = NAME, the trainer of `backproplab train NAME`")
    trainer = doc["trainer"]
    if not isinstance(trainer, str):
        raise ConfigError(f"{path}: trainer must be a string, got {trainer!r}")
    try:
        flags = TrainerFlags(trainer)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    metric = doc.get("metric", "val_acc")
    if metric not in METRICS:
        why = (
            ": a sweep selects on the validation split, never on the test split"
            if isinstance(metric, str) and metric.startswith("test")
            else ""
        )
        raise ConfigError(f"{path}: metric must be one of {', '.join(METRICS)}, got {metric!r}{why}")
    num_samples = _integer(path, "num_samples", doc.get("num_samples", 1), 1)
    seed = _integer(path, "seed", doc.get("seed", 0), 0)
    for section in ("fixed", "space"):
        if not isinstance(doc.get(section, {}), dict):
            raise ConfigError(f"{path}: [{section}] must be a table of flags, got {doc[section]!r}")
    fixed = {flag: flags.convert(flag, raw, f"{path} [fixed]") for flag, raw in doc.get("fixed", {}).items()}
    space = {
        flag: _dimension(flags, flag, raw, f"{path} [space]") for flag, raw in doc.get("space", {}).items()
    }
    for item in overrides:
        flag, sep, value = item.partition("=")
        flag = flag.strip().removeprefix("--")
        if not sep or not flag:
            raise ConfigError(f"--set expects FLAG=VALUE, like max_steps=100, got {item!r}")
        if flag in space:
            raise ConfigError(f"--set {flag}: {path} searches --{flag} in [space]; it cannot also be fixed")
        fixed[flag] = flags.convert(flag, value, "--set")
    if not space:
        raise ConfigError(f"{path}: [space] is empty; name at least one flag to search, like {KINDS[0]}")
    both = sorted(set(fixed) & set(space))
    if both:
        raise ConfigError(f"{path}: --{both[0]} is both in [fixed] and in [space]; keep one")
    if "validation_size" not in flags.types:
        raise ConfigError(
            f"{path}: train {trainer} has no --validation_size, so a sweep cannot select on a "
            "validation split"
        )
    if "validation_size" in space:
        raise ConfigError(
            f"{path}: validation_size cannot be searched: every trial is selected on the same split"
        )
    if not fixed.get("validation_size"):
        raise ConfigError(
            f"{path}: the sweep selects on {metric} of a validation split carved from the training set, "
            "never on the test split: set validation_size = N in [fixed] (e.g. 5000 of CIFAR-10's "
            f"50000 training images), got {fixed.get('validation_size', 'none')}"
        )
    early = doc.get("early_stopping")
    spec = SweepSpec(
        path=path,
        trainer=trainer,
        fixed=fixed,
        space=space,
        num_samples=num_samples,
        metric=metric,
        seed=seed,
        early_stopping=None if early is None else _early_stopping(early, f"{path} [early_stopping]"),
        text=text,
    )
    if spec.n_trials > MAX_TRIALS:
        raise ConfigError(
            f"{path}: the grid times num_samples makes {spec.n_trials} trials, more than {MAX_TRIALS}; "
            "use choice instead of grid for some flags, or fewer values"
        )
    return spec


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and check the sweep file at ``path`` (see :func:`parse_spec`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"sweep file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the sweep file {p}: {e}") from None
    return parse_spec(text, str(path), overrides)
