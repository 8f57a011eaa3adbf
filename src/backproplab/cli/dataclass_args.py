"""Typed configs: one dataclass per entry point, turned into argparse flags and back.

Each field becomes ``--<field_name>`` with the field's default. ``bool`` fields are switches
(``--flag`` / ``--no-flag``); ``metadata={"help": ..., "choices": (...)}`` supply the help text and
the allowed values. After parsing, the dataclass's ``validate()`` (if any) checks values and
raises :class:`~backproplab.errors.ConfigError`. argparse itself rejects unknown flags. One rule
holds for every config: a ``seed`` field must be a non-negative integer (NumPy's ``SeedSequence``
refuses negative seeds deep inside the run otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

from backproplab.errors import ConfigError

T = TypeVar("T")


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional?) for int, float, str, bool and their ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported config field type {tp}")
        return args[0], True
    return tp, False


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of the dataclass ``cls`` to ``parser``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli") is False:
            continue
        tp, optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        help_text = f.metadata.get("help", "")
        if "default" not in help_text:  # a help text that explains its default says it once
            help_text = f"{help_text} (default: {default!r})" if help_text else f"default: {default!r}"
        flag = f"--{f.name}"
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        conv = _converter(tp, optional, f.name)
        parser.add_argument(
            flag, type=conv, default=default, choices=f.metadata.get("choices"), help=help_text, metavar=None
        )


def _converter(tp: type, optional: bool, name: str) -> Any:
    def conv(text: str) -> Any:
        if optional and text.lower() in ("", "none"):
            return None
        try:
            return tp(text)
        except ValueError:
            article = "an" if tp.__name__[0] in "aeiou" else "a"
            raise argparse.ArgumentTypeError(f"expects {article} {tp.__name__}, got {text!r}") from None

    conv.__name__ = tp.__name__
    return conv


def config_from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    """Build and validate the dataclass ``cls`` from parsed arguments."""
    names = {f.name for f in dataclasses.fields(cls) if f.init and f.metadata.get("cli") is not False}  # type: ignore[arg-type]
    cfg = cls(**{k: v for k, v in vars(ns).items() if k in names})
    seed = getattr(cfg, "seed", None)
    if isinstance(seed, int) and not isinstance(seed, bool) and seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed}")
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` with the project's error promise: one ``error: ...`` line and exit 2, no usage
    block; abbreviations of long flags are not accepted (``--learn`` is no ``--learning_rate``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n")


#: Spellings that other tools (and this project's speedrun, before it shared the trainers' names) use
#: for a flag of ours: an unknown flag that is one of them is pointed to our name first.
OTHER_SPELLINGS = {
    "lr": "learning_rate",
    "epochs": "max_steps",
    "steps": "max_steps",
    "eval_every": "eval_freq",
    "n_train": "train_subset",
    "n_test": "test_subset",
    "dtype": "amp",
    "hidden": "dnn_hidden_units",
}


def unknown_flag_error(parser: argparse.ArgumentParser, extra: list[str]) -> ConfigError:
    """The one-line error for arguments ``parser`` does not know, with the closest flag it has."""
    import difflib

    first = extra[0]
    flags = [
        o for a in parser._actions for o in a.option_strings
        if o.startswith("--") and o != "--help" and not o.startswith("--no-")
    ]  # fmt: skip
    if not first.startswith("-"):
        return ConfigError(f"{parser.prog}: unexpected argument {first!r} (see {parser.prog} --help)")
    given = first.split("=", 1)[0]
    stem = given.lstrip("-").replace("-", "_")
    # --lr for --learning_rate (initials), --learn for --learning_rate (a prefix), then spelling
    close = [f"--{OTHER_SPELLINGS[stem]}"] if f"--{OTHER_SPELLINGS.get(stem)}" in flags else []
    close += [f for f in flags if "".join(w[:1] for w in f[2:].split("_")) == stem or f[2:].startswith(stem)]
    close = close[:1] or difflib.get_close_matches(given, flags, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else f" (see {parser.prog} --help)"
    return ConfigError(f"{parser.prog}: unknown flag {first}{hint}")


def field_like(cls: type, name: str, **overrides: Any) -> Any:
    """A dataclass field with the default and help of the field ``name`` of the dataclass ``cls``
    (``default=`` and metadata entries may be overridden): a tool that takes a trainer's flag
    declares it once, with the trainer's meaning."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return dataclasses.field(
        default=overrides.pop("default", f.default), metadata={**f.metadata, **overrides}
    )
