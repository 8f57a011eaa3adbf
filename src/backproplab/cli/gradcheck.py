"""``backproplab gradcheck [--module NAME] [--seed S] [--json]``: check every backward pass.

Runs the registry of :mod:`backproplab.verify.registry` (every built-in module, or the cases of
one), comparing each backward pass with float64 central differences, and prints a table: module,
tensor (the input and each parameter), max relative error, verdict. Exit code 0 when nothing is
"wrong", 1 otherwise; an unknown module name is a one-line error (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

from backproplab.cli.dataclass_args import add_dataclass_args, config_from_namespace
from backproplab.errors import ConfigError
from backproplab.verify import registry
from backproplab.verify.gradcheck import (
    DEFAULT_EPS,
    GOOD_MAX_REL_ERROR,
    REL_ERROR_FLOOR,
    SUSPECT_MEANING,
    WRONG,
    WRONG_MIN_REL_ERROR,
    format_table,
)
from backproplab.verify.registry import run_case, select_cases


@dataclass
class GradcheckConfig:
    """Flags of ``backproplab gradcheck``."""

    module: str | None = field(
        default=None, metadata={"help": "check only this module class (e.g. Linear); default: all"}
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the random parameters, inputs and upstream gradients"}
    )
    eps: float = field(default=DEFAULT_EPS, metadata={"help": "step of the central differences"})
    json: bool = field(default=False, metadata={"help": "print the reports as JSON instead of a table"})

    def validate(self) -> None:
        if not 0 < self.eps < 1:
            raise ConfigError(f"--eps must lie in (0, 1), got {self.eps}")
        select_cases(self.module)  # an unknown name is a ConfigError that lists the valid ones


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_args(parser, GradcheckConfig)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_namespace(GradcheckConfig, args)
    reports = [run_case(case, cfg.seed, cfg.eps) for case in select_cases(cfg.module)]
    failed = sorted({r.name for r in reports if r.verdict == WRONG})
    if cfg.json:
        out = {"config": dataclasses.asdict(cfg), "ok": not failed, "reports": [r.to_dict() for r in reports]}
        print(json.dumps(out, indent=2, allow_nan=False))
        return 1 if failed else 0
    print(format_table(reports))
    print()
    print(
        f"rel error = |a - n| / max(|a| + |n|, {REL_ERROR_FLOOR:g}) per element (a: backward, "
        f"n: central differences, eps={cfg.eps:g}, float64); good < {GOOD_MAX_REL_ERROR:g}, "
        f"wrong > {WRONG_MIN_REL_ERROR:g}."
    )
    if any(r.verdict == "suspect" for r in reports):
        print(SUSPECT_MEANING)
    n_tensors = sum(len(r.checks) for r in reports)
    if failed:
        print(f"WRONG gradients in {len(failed)} of {len(reports)} cases: {', '.join(failed)}")
        return 1
    print(f"all {n_tensors} gradients of {len(reports)} cases agree (seed {cfg.seed})")
    if cfg.module is None:
        slow = sorted({c.module for c in registry.CASES if c.slow})
        if slow:
            print(f"not run by default (slow): {', '.join(slow)}; check with --module NAME")
    return 0
